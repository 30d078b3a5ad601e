"""``GET /api/collections[/{name}[/versions[/{number}]]]``: the live records, the kept
versions and their records, with pagination and equality filters (``api.pagination``).

A read resolves the catalog once and reads one physical collection, so a run that
is filling a staging collection is invisible: the answer is the complete previous
data until the run commits, then the complete new data. A ``$with_meta`` page
counts and reads the same state (re-read if a commit slipped in between).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.auth import CurrentUser
from api.context import ApiContext, get_context
from api.errors import NotFound, PermissionDenied, error_responses
from api.pagination import (
    MAX_LIMIT,
    MAX_PAGE,
    PageRequest,
    encode_records,
    page_meta,
    page_request,
    parse_filters,
    stream_json_array,
)
from storage.catalog import CatalogEntry
from storage.reader import CollectionReader

__all__ = ["CollectionOut", "PageOut", "VersionOut", "router"]

router = APIRouter(prefix="/api/collections", tags=["collections"])

#: How often a ``$with_meta`` read is retried when a commit changed the data under it.
MAX_READ_ATTEMPTS = 3
JSON = "application/json"

Context = Annotated[ApiContext, Depends(get_context)]
Limit = Annotated[
    int | None,
    Query(alias="$limit", ge=1, le=MAX_LIMIT, description="Page size (default 100 if paged)."),
]
Page = Annotated[
    int | None, Query(alias="$page", ge=1, le=MAX_PAGE, description="1-based page number.")
]
WithMeta = Annotated[
    bool,
    Query(alias="$with_meta", description="Wrap the page in {page, next, previous, ...}."),
]
VersionNumber = Annotated[int, Path(ge=1, le=2**53, description="Version number.")]


class CollectionOut(BaseModel):
    name: str
    type: str
    records: int = Field(description="Records in the live data.")
    last_version: int | None = Field(description="Newest version; null if not versioned.")


class VersionOut(BaseModel):
    number: int
    run_id: str
    created_at: datetime
    records: int


class PageOut(BaseModel):
    """A page with ``$with_meta=true``; ``next``/``previous`` are page numbers."""

    page: int
    next: int | None
    previous: int | None
    last: int
    limit: int
    count: int = Field(description="Records matching the filters, on every page.")
    items: list[dict[str, Any]]


_RECORDS_MODEL: Any = list[dict[str, Any]] | PageOut
_RECORDS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Records: a JSON list, or a PageOut with $with_meta=true"},
    **error_responses(401, 403, 404),
}


def _check_acl(user: CurrentUser, name: str) -> None:
    if not user.may_read(name):
        raise PermissionDenied()


def _versioned(entry: CatalogEntry) -> None:
    if not entry.type.versioned:
        raise NotFound(
            f"collection {entry.name!r} is of type '{entry.type}', which keeps no versions"
        )


def _state(entry: CatalogEntry) -> tuple[str | None, int]:
    return entry.live, entry.seq


def _meta_page(
    reader: CollectionReader,
    name: str,
    where: dict[str, Any],
    version: int | None,
    paging: PageRequest,
) -> dict[str, Any]:
    for _ in range(MAX_READ_ATTEMPTS):
        before = reader.entry(name)
        count = reader.count(name, where, version)
        items = list(reader.find(name, where, version, skip=paging.skip, limit=paging.limit))
        if version is not None or _state(reader.entry(name)) == _state(before):
            break
    return page_meta(paging, count, items)


def _records(
    context: ApiContext,
    request: Request,
    name: str,
    version: int | None,
    limit: int | None,
    page: int | None,
    with_meta: bool,
) -> Response:
    where = parse_filters(request.query_params.multi_items())
    paging = page_request(limit, page, with_meta)
    reader = context.reader
    if paging is None:
        # ``find`` resolves the catalog now (404 before the answer starts); the
        # cursor is then streamed in chunks.
        records = reader.find(name, where, version)
        return StreamingResponse(stream_json_array(records), media_type=JSON)
    if paging.with_meta:
        meta = _meta_page(reader, name, where, version, paging)
        return Response(encode_records(meta), media_type=JSON)
    items = list(reader.find(name, where, version, skip=paging.skip, limit=paging.limit))
    return Response(encode_records(items), media_type=JSON)


@router.get("", responses=error_responses(401))
def list_collections(user: CurrentUser, context: Context) -> list[CollectionOut]:
    """The collections the user may read."""
    out = []
    for name in context.reader.names():
        if not user.may_read(name):
            continue
        entry = context.reader.catalog.get(name)
        if entry is not None:
            out.append(
                CollectionOut(
                    name=name,
                    type=entry.type.value,
                    records=entry.records,
                    last_version=entry.last_version if entry.type.versioned else None,
                )
            )
    return out


@router.get("/{name}", response_model=_RECORDS_MODEL, responses=_RECORDS)
def read_collection(
    name: str,
    request: Request,
    user: CurrentUser,
    context: Context,
    limit: Limit = None,
    page: Page = None,
    with_meta: WithMeta = False,
) -> Response:
    """The live records (no internal fields). Other query parameters filter by equality."""
    _check_acl(user, name)
    return _records(context, request, name, None, limit, page, with_meta)


@router.get("/{name}/versions", responses=error_responses(401, 403, 404))
def list_versions(name: str, user: CurrentUser, context: Context) -> list[VersionOut]:
    """The kept versions of a versioned collection, oldest first."""
    _check_acl(user, name)
    entry = context.reader.entry(name)
    _versioned(entry)
    return [
        VersionOut(number=v.number, run_id=v.run_id, created_at=v.created_at, records=v.records)
        for v in entry.versions
    ]


@router.get("/{name}/versions/{number}", response_model=_RECORDS_MODEL, responses=_RECORDS)
def read_version(
    name: str,
    number: VersionNumber,
    request: Request,
    user: CurrentUser,
    context: Context,
    limit: Limit = None,
    page: Page = None,
    with_meta: WithMeta = False,
) -> Response:
    """The records of one kept version; same parameters as the live read."""
    _check_acl(user, name)
    _versioned(context.reader.entry(name))
    return _records(context, request, name, number, limit, page, with_meta)
