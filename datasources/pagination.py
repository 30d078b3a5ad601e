"""How a REST source walks pages: page number, offset/limit, cursor, ``Link`` header.

A ``Paginator`` turns the answer to one page into the request for the next, or
``None`` at the end. Page parameters are added to the query string (also for POST).

=========== =============================================================================
style       next request, and when it stops
=========== =============================================================================
(none)      one request
``page``    ``param`` = start (default 1), +1 per page; ``size_param=size`` if given.
            Stops after a page with no items, or with fewer than ``size``.
``offset``  ``param`` = start (default 0), + the items received; ``size_param=size``.
            Stops after a page with no items or fewer than ``size``.
``cursor``  first request without ``param``; then ``param`` = the value at
            ``cursor_path`` of the answer (dotted). Stops when that is missing, null
            or empty, or a page has no items; a cursor repeating the last one fails.
``link``    follows the ``Link: <url>; rel="next"`` header (relative URLs resolved);
            the next URL carries its own query. Stops when there is no such link.
=========== =============================================================================

``param`` defaults to the style's name (``page``, ``offset``, ``cursor``). Every style
stops after the source's ``max_pages`` (see ``datasources.rest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.datasources import Pagination
from datasources.errors import ResponseFormatError

__all__ = ["PageAnswer", "PageRequest", "Paginator", "lookup"]


@dataclass(frozen=True)
class PageRequest:
    url: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PageAnswer:
    request: PageRequest
    body: Any
    items: int
    next_link: str | None = None


_MISSING = object()


def lookup(document: Any, path: str) -> Any:
    """The value at dotted ``path`` of ``document``, or None when absent."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is _MISSING:
            return None
    return value


class Paginator:
    """The page requests of one fetch."""

    def __init__(self, config: Pagination | None, url: str, params: dict[str, str]) -> None:
        self.config = config
        self.url = url
        self.params = params
        self._cursor: str | None = None
        self.param = ""
        if config is not None:
            given = "param" in config.model_fields_set
            self.param = config.param if given or config.style == "link" else config.style

    def first(self) -> PageRequest:
        config = self.config
        if config is None or config.style in ("cursor", "link"):
            return PageRequest(self.url, dict(self.params))
        start = config.start if config.start is not None else (1 if config.style == "page" else 0)
        return self._numbered(start)

    def next(self, answer: PageAnswer) -> PageRequest | None:
        config = self.config
        if config is None:
            return None
        if config.style == "link":
            return PageRequest(answer.next_link) if answer.next_link else None
        if answer.items == 0:
            return None
        if config.style == "cursor":
            assert config.cursor_path is not None
            cursor = lookup(answer.body, config.cursor_path)
            if cursor is None or cursor == "" or isinstance(cursor, dict | list):
                return None
            text = str(cursor).lower() if isinstance(cursor, bool) else str(cursor)
            if text == self._cursor:
                raise ResponseFormatError(
                    f"cursor at {config.cursor_path!r} repeats the previous one ({text!r})"
                )
            self._cursor = text
            return PageRequest(self.url, {**self.params, self.param: text})
        if config.size is not None and answer.items < config.size:
            return None
        current = int(answer.request.params[self.param])
        step = 1 if config.style == "page" else answer.items
        return self._numbered(current + step)

    def _numbered(self, value: int) -> PageRequest:
        config = self.config
        assert config is not None
        params = {**self.params, self.param: str(value)}
        if config.size_param is not None and config.size is not None:
            params[config.size_param] = str(config.size)
        return PageRequest(self.url, params)
