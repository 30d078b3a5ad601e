"""``jsonl`` (JSON Lines) and ``json`` (one document holding a list) files.

- ``jsonl``: one JSON value per line, streamed line by line (a 1 GB file is never
  loaded whole); blank lines are skipped; a bad line fails with its line number.
- ``json``: the items are the list at ``records_path`` (dotted keys, e.g.
  ``data.items``; none = the document is the list). Streamed with ``ijson`` when it is
  installed (memory holds one item at a time); without it the document is loaded
  whole. A document without a list at ``records_path`` is a ``ResponseFormatError``
  (with ``ijson`` this is found by a second read of the file, done only when the
  first read found no items). Numbers: integers stay ``int``, others become ``float``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import IO, Any

from contracts.datasources import JsonlSource, JsonSource
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ResponseFormatError
from datasources.files import open_binary
from datasources.progress import SourceProgress

__all__ = ["JsonItems", "JsonlItems", "find_records"]


class JsonlItems(Source[JsonlSource]):
    type = "jsonl"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        with open_binary(self.config, ctx, self.runtime) as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise ResponseFormatError(f"line {number}: not valid JSON: {exc}") from None


def find_records(document: Any, records_path: str | None, what: str = "the document") -> list[Any]:
    """The list at dotted ``records_path`` of ``document`` (numeric parts index lists),
    or a ``ResponseFormatError`` saying what is there instead."""
    value = document
    walked: list[str] = []
    for part in records_path.split(".") if records_path else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = ".".join(walked) or "the top level"
            keys = (
                f"; keys there: {', '.join(sorted(value)[:20])}" if isinstance(value, dict) else ""
            )
            raise ResponseFormatError(
                f"records_path {records_path!r} not found in {what}: no {part!r} at {where}{keys}"
            )
        walked.append(part)
    if not isinstance(value, list):
        kind = _kind(value)
        hint = f"; keys: {', '.join(sorted(value)[:20])}" if isinstance(value, dict) else ""
        if records_path:
            raise ResponseFormatError(
                f"records_path {records_path!r} in {what} is {kind}, not a list{hint}"
            )
        raise ResponseFormatError(
            f"{what} is {kind}, not a list: set records_path to the list's path{hint}"
        )
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class JsonItems(Source[JsonSource]):
    type = "json"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        ijson = _ijson()
        with open_binary(self.config, ctx, self.runtime) as stream:
            if ijson is None:
                yield from find_records(_load(stream), self.config.records_path)
                return
            path = self.config.records_path
            prefix = f"{path}.item" if path else "item"
            found = 0
            try:
                for item in ijson.items(stream, prefix, use_float=True):
                    found += 1
                    yield item
            except ijson.JSONError as exc:
                raise ResponseFormatError(f"not valid JSON: {exc}") from None
        if not found:
            with open_binary(self.config, ctx, self.runtime) as stream:
                _check_list_at(ijson, stream, path)


def _ijson() -> ModuleType | None:
    try:
        return importlib.import_module("ijson")
    except ImportError:
        return None


def _load(stream: IO[bytes]) -> Any:
    try:
        return json.load(stream)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResponseFormatError(f"not valid JSON: {exc}") from None


def _check_list_at(ijson: ModuleType, stream: IO[bytes], path: str | None) -> None:
    """``ResponseFormatError`` unless the document has a list at ``path``."""
    target = path or ""
    try:
        for prefix, event, _value in ijson.parse(stream):
            if prefix == target and event not in ("map_key", "end_map", "end_array"):
                if event == "start_array":
                    return
                kind = {"start_map": "an object", "string": "a string", "null": "null"}.get(
                    event, "a scalar"
                )
                if path:
                    raise ResponseFormatError(f"records_path {path!r} is {kind}, not a list")
                raise ResponseFormatError(
                    f"the document is {kind}, not a list: set records_path to the list's path"
                )
    except ijson.JSONError as exc:
        raise ResponseFormatError(f"not valid JSON: {exc}") from None
    raise ResponseFormatError(f"records_path {path!r} not found in the document")
