"""``GET /api/collections[/{name}[/versions[/{number}]]]``: the live records, the kept
versions and their records, with pagination and equality filters (``api.pagination``).
Admins restore (``POST .../versions/{number}/restore``, normal collections ``POST
.../previous/{index}/restore``) and pin (``POST``/``DELETE .../versions/{number}/pin``)
versions (``storage.versions``).

A read resolves the catalog once and reads one physical collection, so a run that
is filling a staging collection is invisible: the answer is the complete previous
data until the run commits, then the complete new data. A ``$with_meta`` page
counts and reads the same state (re-read if a commit slipped in between).

Paths work with and without a trailing slash (``api.slashes``). A filter
on ``limit``, ``page`` or ``with_meta`` (pagination without its ``$``) that matches no
record is answered 400 with a hint rather than an empty list (``_misspelt_paging``).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.auth import Admin, CurrentUser
from api.context import ApiContext, get_context
from api.errors import BadRequest, Conflict, NotFound, PermissionDenied, error_responses
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
from storage.catalog import CatalogEntry, VersionInfo
from storage.reader import CollectionReader
from storage.versions import NotRestorable, Restored, Versions

__all__ = ["CollectionOut", "GraceCopyOut", "PageOut", "RestoredOut", "VersionOut", "router"]

router = APIRouter(prefix="/api/collections", tags=["collections"])

#: How often a ``$with_meta`` read is retried when a commit changed the data under it.
MAX_READ_ATTEMPTS = 3
#: Parameters that are pagination written without its ``$`` (a filter, unless it matches).
BARE_PAGING = ("limit", "page", "with_meta")
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
    pinned: bool = Field(default=False, description="Kept whatever keep_versions says.")
    restored_from: int | None = Field(
        default=None, description="The version this one restores (run_id is 'restore:...')."
    )
    restored_by: str = ""

    @classmethod
    def from_info(cls, v: VersionInfo) -> VersionOut:
        return cls(
            number=v.number,
            run_id=v.run_id,
            created_at=v.created_at,
            records=v.records,
            pinned=v.pinned,
            restored_from=v.restored_from,
            restored_by=v.restored_by,
        )


class GraceCopyOut(BaseModel):
    """Data a commit of a normal collection replaced, restorable until ``expires_at``."""

    index: int = Field(description="1: the data the last commit replaced.")
    retired_at: datetime
    expires_at: datetime
    records: int | None


class RestoredOut(BaseModel):
    collection: str
    records: int = Field(description="Records live now.")
    version: int | None = Field(description="The new version (versioned types).")
    restored_from: int | None = None

    @classmethod
    def of(cls, done: Restored) -> RestoredOut:
        return cls(
            collection=done.collection,
            records=done.records,
            version=done.version,
            restored_from=done.restored_from,
        )


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


def _misspelt_paging(request: Request) -> BadRequest | None:
    """The hint for ``?limit=``/``?page=``/``?with_meta=``, if the query has one: such
    a parameter is an equality filter like any other (a record may have a field of
    that name), but one that matched nothing was most likely meant as pagination."""
    bare = [key for key in BARE_PAGING if key in request.query_params]
    if not bare:
        return None
    given = ", ".join(f"'{key}'" for key in bare)
    return BadRequest(
        f"no record matches the filter on {given}: parameters without '$' filter on "
        "fields; pagination is $limit, $page and $with_meta (e.g. ?$limit=10&$page=2)"
    )


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
    hint = _misspelt_paging(request)
    if paging is None:
        # ``find`` resolves the catalog now (404 before the answer starts), and the
        # first record is fetched now: the query's first batch, where a filter's scan
        # happens, fails (time limit, database down) before the answer starts. The
        # cursor is then streamed in chunks.
        records = reader.find(name, where, version)
        head = list(itertools.islice(records, 1))
        if hint is not None and not head:
            raise hint
        return StreamingResponse(stream_json_array(records, head), media_type=JSON)
    if paging.with_meta:
        meta = _meta_page(reader, name, where, version, paging)
        if hint is not None and meta["count"] == 0:
            raise hint
        return Response(encode_records(meta), media_type=JSON)
    items = list(reader.find(name, where, version, skip=paging.skip, limit=paging.limit))
    if hint is not None and not items:
        anywhere = next(reader.find(name, where, version, limit=1), None)  # an earlier page?
        if anywhere is None:
            raise hint
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
    return [VersionOut.from_info(v) for v in entry.versions]


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


def _versions(context: ApiContext) -> Versions:
    return Versions(context.store)


@router.post("/{name}/versions/{number}/restore", responses=error_responses(401, 403, 404, 409))
def restore_version(name: str, number: VersionNumber, user: Admin, context: Context) -> RestoredOut:
    """Make version ``number`` the live data again, as a new version (the versions in
    between stay listed); atomic for readers. 409 if the collection changed meanwhile
    (retry) or the version is live already."""
    try:
        return RestoredOut.of(_versions(context).restore(name, number, by=f"api:{user.username}"))
    except NotRestorable as exc:
        raise Conflict(str(exc)) from None


@router.post("/{name}/versions/{number}/pin", responses=error_responses(401, 403, 404))
def pin_version(name: str, number: VersionNumber, user: Admin, context: Context) -> VersionOut:
    """Pin a version: pruning (``keep_versions``) keeps it."""
    return VersionOut.from_info(_versions(context).pin(name, number, True))


@router.delete("/{name}/versions/{number}/pin", responses=error_responses(401, 403, 404))
def unpin_version(name: str, number: VersionNumber, user: Admin, context: Context) -> VersionOut:
    """Unpin a version: the next commit prunes it if it is older than ``keep_versions``."""
    return VersionOut.from_info(_versions(context).pin(name, number, False))


@router.get("/{name}/previous", responses=error_responses(401, 403, 404))
def list_previous(name: str, user: CurrentUser, context: Context) -> list[GraceCopyOut]:
    """The grace copies of a normal collection (data its last commits replaced, kept
    for the retire grace) that may be restored now, newest first."""
    _check_acl(user, name)
    return [
        GraceCopyOut(
            index=c.index, retired_at=c.retired_at, expires_at=c.expires_at, records=c.records
        )
        for c in _versions(context).restorable(name)
    ]


@router.post("/{name}/previous/{index}/restore", responses=error_responses(401, 403, 404, 409))
def restore_previous(
    name: str, index: Annotated[int, Path(ge=1, le=1000)], user: Admin, context: Context
) -> RestoredOut:
    """Make a grace copy of a normal collection live again (1: the data the last
    commit replaced); the live data becomes a grace copy in turn. 409 when there is
    none (past its grace) or the collection changed meanwhile."""
    try:
        done = _versions(context).restore_previous(name, by=f"api:{user.username}", which=index)
    except NotRestorable as exc:
        raise Conflict(str(exc)) from None
    return RestoredOut.of(done)
