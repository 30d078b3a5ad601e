"""Checking and normalising records before they are stored.

A record is a JSON object: a mapping with string keys whose values are JSON values.
Rules (documented in the README, "Records"):

- field names must be non-empty, must not start with ``$`` and must not contain ``.``
  or NUL (MongoDB refuses or cannot address them); ``_id`` is reserved by slurp;
- values: ``str``, ``int`` (64-bit), ``float`` (finite), ``bool``, ``None``, lists and
  objects of those; ``datetime`` becomes an ISO-8601 string in UTC (naive = UTC),
  ``date`` ``YYYY-MM-DD``, ``Decimal`` an ``int`` when integral else a ``float``;
  anything else fails the run, naming the record's position and the field.
- upsert keys: a top-level field or a dotted path (``a.b``) whose value is a string or
  an integer (or a finite float); the key is stored as the record's ``_id``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from storage.errors import BadRecordError

__all__ = ["MISSING", "Record", "get_path", "key_of", "normalise"]

Record = dict[str, Any]

#: What ``get_path`` returns for a path a document does not have (``None`` is a value).
MISSING: Any = object()

_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, bool, type(None))


def normalise(record: object, position: int) -> Record:
    """A stored copy of ``record``, or ``BadRecordError`` naming what is wrong."""
    if not isinstance(record, Mapping):
        raise BadRecordError(
            position, f"must be a JSON object (a dict), got {type(record).__name__}"
        )
    out: Record = {}
    for key, value in record.items():
        # Fast path for the common case: a plain field name and a scalar value.
        if type(key) is not str or not key or key[0] in "$_" or "." in key or "\x00" in key:
            if key == "_id":
                raise BadRecordError(position, "field '_id' is reserved by slurp; rename it")
            key = _field(key, position, "")
        kind = type(value)
        if kind is str or kind is bool or value is None:
            out[key] = value
        else:
            out[key] = _value(value, position, key)
    return out


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """The value at the dotted ``path`` of ``doc`` (through nested objects), or
    ``MISSING``."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def key_of(record: Mapping[str, Any], path: str, position: int) -> str | int | float:
    """The upsert key of ``record`` at ``path`` (dotted for nested objects)."""
    value = get_path(record, path)
    if value is MISSING:
        raise BadRecordError(position, f"upsert key {path!r} is missing")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRecordError(
            position,
            f"upsert key {path!r} must be a string or a number, got {type(value).__name__}",
        )
    key: str | int | float = value
    return key


def _field(key: object, position: int, parent: str) -> str:
    if not isinstance(key, str):
        raise BadRecordError(
            position, f"field names must be strings, got {key!r} in {parent or 'record'}"
        )
    if not key or key[0] == "$" or "." in key or "\x00" in key:
        where = f"{parent}.{key}" if parent else key
        raise BadRecordError(
            position,
            f"field name {where!r} is not storable: names must be non-empty and contain no "
            "'.', no NUL and not start with '$'",
        )
    return key


def _value(value: Any, position: int, path: str) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise BadRecordError(position, f"field {path!r}: integer {value} exceeds 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRecordError(position, f"field {path!r}: {value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        return {
            _field(k, position, path): _value(v, position, f"{path}.{k}") for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_value(v, position, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BadRecordError(position, f"field {path!r}: {value} is not a JSON number")
        return int(value) if value == value.to_integral_value() else float(value)
    raise BadRecordError(position, f"field {path!r}: {type(value).__name__} is not a JSON value")
