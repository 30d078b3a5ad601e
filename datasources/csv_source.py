"""``csv``: a CSV file, streamed row by row; each row becomes an object.

Dialect: the first row is the header (its names are the fields, in order; they must be
unique and non-empty); ``delimiter`` (default ``,``) and ``quotechar`` (default ``"``)
are configurable; quotes are doubled inside quoted fields (RFC 4180), a quoted field
may span lines, blank lines are skipped, line endings may be ``\\n`` or ``\\r\\n``;
``encoding`` defaults to UTF-8 (a byte-order mark is skipped). A row whose number of
fields differs from the header's, or broken quoting, fails the run naming the line.

Typing: every value is a string unless ``types`` names its column:

- ``int``: optional sign and digits, surrounding blanks ignored (``" 42"`` -> 42);
- ``float``: a decimal or exponent number (``1.5``, ``-2e3``); ``nan``/``inf`` refused;
- ``bool``: ``true/false``, ``yes/no``, ``y/n``, ``t/f``, ``on/off``, ``1/0``
  (any case);
- ``str``: as is;
- an empty (or blank) value in a typed column other than ``str`` becomes ``null``.

Anything else fails the run with the line, column and value. ``types`` naming a column
the header lacks is a ``ConfigError``.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from contracts.datasources import CsvSource
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ConfigError, ResponseFormatError
from datasources.files import open_binary
from datasources.progress import SourceProgress

__all__ = ["CONVERTERS", "CsvItems"]

_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_RE = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_TRUE = frozenset({"true", "yes", "y", "t", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "f", "off", "0"})


def _to_int(text: str) -> int:
    if not _INT_RE.match(text):
        raise ValueError("not an integer")
    return int(text)


def _to_float(text: str) -> float:
    if not _FLOAT_RE.match(text):
        raise ValueError("not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("out of range")
    return value


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("not a boolean (true/false, yes/no, 1/0, ...)")


CONVERTERS: dict[str, Callable[[str], Any]] = {"int": _to_int, "float": _to_float, "bool": _to_bool}


class CsvItems(Source[CsvSource]):
    type = "csv"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        config = self.config
        encoding = config.encoding
        try:
            if codecs.lookup(encoding).name == "utf-8":
                encoding = "utf-8-sig"
        except LookupError:
            raise ConfigError(f"unknown encoding {config.encoding!r}") from None
        with open_binary(config, ctx, self.runtime) as binary:
            text = io.TextIOWrapper(binary, encoding=encoding, newline="")
            reader = csv.reader(
                text, delimiter=config.delimiter, quotechar=config.quotechar, strict=True
            )
            try:
                yield from self._rows(reader)
            except csv.Error as exc:
                raise ResponseFormatError(f"line {reader.line_num}: bad CSV: {exc}") from None
            except UnicodeDecodeError as exc:
                raise ResponseFormatError(
                    f"after line {reader.line_num}: not {config.encoding} text ({exc.reason}); "
                    "set 'encoding'"
                ) from None

    def _rows(self, reader: Any) -> Iterator[Item]:
        header = next((row for row in reader if row), None)
        if header is None:
            return
        names = [name.strip() for name in header]
        self._check_header(names)
        converters = [
            (i, names[i], CONVERTERS[kind])
            for i, kind in ((names.index(col), kind) for col, kind in self.config.types.items())
            if kind != "str"
        ]
        width = len(names)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue
            if len(row) != width:
                raise ResponseFormatError(
                    f"line {reader.line_num}: {len(row)} fields, the header has {width}"
                )
            record: dict[str, Any] = dict(zip(names, row, strict=True))
            for index, name, convert in converters:
                value = row[index].strip()
                if not value:
                    record[name] = None
                    continue
                try:
                    record[name] = convert(value)
                except ValueError as exc:
                    raise ResponseFormatError(
                        f"line {reader.line_num}, column {name!r}: {value[:50]!r} is {exc}"
                    ) from None
            yield record

    def _check_header(self, names: list[str]) -> None:
        empty = [str(i + 1) for i, name in enumerate(names) if not name]
        if empty:
            raise ResponseFormatError(f"header: column(s) {', '.join(empty)} have no name")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ResponseFormatError(f"header: repeated column name(s): {', '.join(repeated)}")
        unknown = sorted(set(self.config.types) - set(names))
        if unknown:
            raise ConfigError(
                f"types name column(s) the header lacks: {', '.join(unknown)}; "
                f"header: {', '.join(names)}"
            )
