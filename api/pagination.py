"""Query parameters of collection reads: pagination, meta, equality filters; and the
JSON encoding of records.

- No ``$limit``/``$page``/``$with_meta``: every record, streamed as one JSON array
  (the server never holds the whole collection in memory).
- ``$limit`` (1..10000) and/or ``$page`` (1-based, 1..1,000,000): one page; the
  other defaults to ``page=1`` / ``limit=100``. Still a plain JSON list.
- ``$with_meta=true``: the page wrapped as ``{page, next, previous, last, limit,
  count, items}``; ``next``/``previous`` are page numbers (null when none), ``last``
  the last page number (1 for an empty result), ``count`` the matching records.
  Implies pagination (page 1, limit 100 unless given).
- Any other ``$`` parameter is refused (400).
- Any other parameter is an equality filter on a field; dots reach into nested
  objects (``address.city=Zurich``). Values arrive as strings; a record matches if the
  field equals the string *or* the value it reads as: an integer (``7``), a float
  (``1.5``), ``true``/``false``, ``null`` (null also matches a missing field).
  Repeating a parameter matches any of its values; different fields all must match.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from api.errors import BadRequest

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_PAGE",
    "RESERVED",
    "PageRequest",
    "encode_records",
    "page_meta",
    "page_request",
    "parse_filters",
    "stream_json_array",
]

#: Page size when pagination is implied by ``$page`` or ``$with_meta`` alone.
DEFAULT_LIMIT = 100
#: Largest ``$limit``.
MAX_LIMIT = 10_000
#: Largest ``$page``.
MAX_PAGE = 1_000_000
#: The ``$`` parameters collection reads understand.
RESERVED = frozenset({"$limit", "$page", "$with_meta"})
#: Bytes of JSON gathered before a chunk of a streamed answer is sent.
CHUNK_BYTES = 64 * 1024

_INT_RE = re.compile(r"^-?(0|[1-9][0-9]{0,18})$")
_FLOAT_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class PageRequest:
    """One page: 1-based ``page`` of ``limit`` records; ``with_meta`` wraps it."""

    page: int
    limit: int
    with_meta: bool

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.limit


def page_request(limit: int | None, page: int | None, with_meta: bool) -> PageRequest | None:
    """The page asked for, or None for "every record" (validated ranges assumed)."""
    if limit is None and page is None and not with_meta:
        return None
    return PageRequest(page=page or 1, limit=limit or DEFAULT_LIMIT, with_meta=with_meta)


def page_meta(request: PageRequest, count: int, items: list[Any]) -> dict[str, Any]:
    """The ``$with_meta`` envelope."""
    last = max(1, math.ceil(count / request.limit))
    return {
        "page": request.page,
        "next": request.page + 1 if request.page < last else None,
        "previous": min(request.page - 1, last) if request.page > 1 else None,
        "last": last,
        "limit": request.limit,
        "count": count,
        "items": items,
    }


def _coerce(value: str) -> list[Any]:
    """The values a query-string value matches: itself and what it reads as."""
    if value in _LITERALS:
        return [value, _LITERALS[value]]
    if _INT_RE.match(value):
        number = int(value)
        if -(2**63) <= number < 2**63:
            return [value, number]
        return [value]
    if _FLOAT_RE.match(value):
        real = float(value)
        if math.isfinite(real):
            return [value, real]
    return [value]


def _check_field(name: str) -> None:
    if name.startswith("$"):
        raise BadRequest(
            f"unknown parameter {name!r}: the $-parameters are {', '.join(sorted(RESERVED))}"
        )
    parts = name.split(".")
    if any(not part or part.startswith("$") for part in parts) or "\x00" in name:
        raise BadRequest(
            f"invalid filter field {name!r}: path segments must be non-empty "
            "and must not start with '$'"
        )
    if parts[0] == "_id":
        raise BadRequest("filtering on '_id' is not supported (it is an internal field)")


def parse_filters(params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A MongoDB equality query from the query string's non-``$`` parameters.

    ``BadRequest`` for an unknown ``$`` parameter or an unusable field name.
    """
    values: dict[str, list[Any]] = {}
    for name, value in params:
        if name in RESERVED:
            continue
        _check_field(name)
        matches = values.setdefault(name, [])
        for candidate in _coerce(value):
            if not any(type(candidate) is type(m) and candidate == m for m in matches):
                matches.append(candidate)
    return {name: {"$in": matches} for name, matches in values.items()}


def _default(value: object) -> str:
    return str(value)  # BSON types a record should not hold (normalised on write)


def encode_records(records: Any) -> bytes:
    """``records`` (a list, or a meta envelope) as compact UTF-8 JSON."""
    return json.dumps(records, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def stream_json_array(
    records: Iterator[dict[str, Any]], head: Iterable[dict[str, Any]] = ()
) -> Iterator[bytes]:
    """A JSON array of ``head`` then ``records`` in chunks of about ``CHUNK_BYTES``;
    closes ``records`` (a database cursor) when done or when the client goes away.

    ``head``: records already taken from ``records`` (a route takes the first one
    before answering, so that the query's errors, e.g. its time limit, are an error
    answer rather than a cut stream)."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)
    try:
        buffer: list[str] = ["["]
        size = 1
        first = True
        for record in itertools.chain(head, records):
            text = encoder.encode(record)
            if not first:
                buffer.append(",")
            buffer.append(text)
            first = False
            size += len(text) + 1
            if size >= CHUNK_BYTES:
                yield "".join(buffer).encode()
                buffer, size = [], 0
        buffer.append("]")
        yield "".join(buffer).encode()
    finally:
        close = getattr(records, "close", None)
        if callable(close):
            close()
