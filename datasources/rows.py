"""Database rows as items: one JSON object per row, the same types from every database.

Used by the ``sql`` (SQLAlchemy) and ``odbc`` (pyodbc) sources. ``RowConverter`` turns
each row (a sequence of driver values, in column order) into a ``dict`` keyed by column
name; names must be unique (``ResponseFormatError`` otherwise: alias them).

=========================== ===========================================================
driver value                item value (storage then stores it as in docs/datasources.md)
=========================== ===========================================================
``None``                    ``None`` (null)
int, float, bool, str       as they are
``Decimal``                 kept (storage: int when integral, else float), or ``str``
                            with ``decimals="string"`` (exact)
``datetime``, ``date``      kept (storage: ISO-8601 UTC string; naive = taken as UTC;
                            ``YYYY-MM-DD``)
``time``                    ``HH:MM:SS[.ffffff][+HH:MM]``
``timedelta`` (interval)    seconds, a float
bytes, bytearray,           base64 string
memoryview
UUID, IP addresses          string
a LOB (has ``read()``)      read whole: ``str`` (CLOB) or base64 of ``bytes`` (BLOB)
list, tuple, dict           converted item by item (arrays, JSON)
=========================== ===========================================================
"""

from __future__ import annotations

import base64
import ipaddress
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from datasources.errors import ResponseFormatError

__all__ = ["DecimalMode", "RowConverter", "jsonable", "unique_names"]

DecimalMode = Literal["number", "string"]

#: Values kept as they are (storage knows them): checked by exact type first, fast.
_KEPT = frozenset({str, int, float, bool, type(None), datetime, date})
_TO_STRING = (
    uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
    ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface,
)  # fmt: skip


def jsonable(value: Any, decimals: DecimalMode = "number") -> Any:
    """``value`` with the driver types storage does not know converted (see above)."""
    kind = type(value)
    if kind in _KEPT:
        return value
    if isinstance(value, Decimal):
        return str(value) if decimals == "string" else value
    if isinstance(value, str | int | float | datetime | date):
        return value  # subclasses (e.g. a driver's own str)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, _TO_STRING):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v, decimals) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v, decimals) for k, v in value.items()}
    read = getattr(value, "read", None)
    if callable(read):  # a LOB locator (Oracle CLOB/BLOB when not fetched as values)
        return jsonable(read(), decimals)
    return value


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list; ``ResponseFormatError`` naming the repeated ones."""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ResponseFormatError(
            f"the query returns repeated column names: {', '.join(repeated)} (alias them)"
        )
    return list(names)


class RowConverter:
    """Rows of one result to items. ``columns`` may override the conversion of single
    columns (e.g. MySQL ``JSON`` text parsed); the others go through ``jsonable``.

    ``batch(rows)`` converts a fetched batch at once: a column whose values in the batch
    are all of types storage keeps is not touched value by value (a database column
    has one type: usually every column), so the cost is one ``dict(zip(...))`` per row.
    """

    def __init__(
        self,
        names: Sequence[str],
        decimals: DecimalMode = "number",
        columns: dict[int, Callable[[Any], Any]] | None = None,
    ) -> None:
        self.names = unique_names(names)
        self.decimals = decimals
        self.columns = columns or {}
        self._kept = _KEPT | {Decimal} if decimals == "number" else _KEPT

    def __call__(self, row: Sequence[Any]) -> dict[str, Any]:
        decimals, columns = self.decimals, self.columns
        item: dict[str, Any] = {}
        for index, (name, value) in enumerate(zip(self.names, row, strict=True)):
            if value is not None and index in columns:
                value = columns[index](value)
            item[name] = value if type(value) in _KEPT else jsonable(value, decimals)
        return item

    def batch(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """The items of a batch of rows, in order."""
        if not rows:
            return []
        names = self.names
        values = list(zip(*rows, strict=True))
        if len(values) != len(names):
            raise ResponseFormatError(f"rows have {len(values)} values for {len(names)} columns")
        for index, column in enumerate(values):
            parse = self.columns.get(index)
            if parse is None and set(map(type, column)) <= self._kept:
                continue  # every value is stored as it is
            values[index] = tuple(self._convert(value, parse) for value in column)
        # rows rebuilt from the columns are plain tuples: faster to zip than driver rows
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]

    def _convert(self, value: Any, parse: Callable[[Any], Any] | None) -> Any:
        if value is None:
            return None
        if parse is not None:
            value = parse(value)
        return value if type(value) in _KEPT else jsonable(value, self.decimals)
