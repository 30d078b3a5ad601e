"""The console's pages (GET), over the services the JSON API uses (``ApiContext``):

==============================  ======================================================
``/``                           jobs the viewer may see: schedule, next fire, last run
``/jobs/{name}``                definition (masked, as everywhere), Run
                                now / Pause / Resume for admins, chart, history (paged)
``/runs/{run_id}``              attempts, events, live progress; ``?part=live`` is the
                                fragment the page polls while the run is under way
``/collections``                collections the viewer's ACL covers
``/collections/{name}``         type, count, versions, records (paged), API URL
``/static/{file}``              the vendored stylesheet and script
==============================  ======================================================

Visibility is the API's: jobs through ``job_visible``/``visible_job`` (a job a
reader may not see is "not found"), collections through the user's read ACL (403).
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response

from api.console import views
from api.console.render import ConsoleRoute, error_page, page, root_path, static_files
from api.console.sessions import Viewer, ViewerDep
from api.context import ApiContext, get_context
from api.errors import NotFound, PermissionDenied
from api.routes.runs import job_visible, visible_job
from contracts.base import utcnow
from contracts.masking import masked_definition
from storage.events import EventLog
from storage.jobs import JobRecord
from storage.versions import Versions

__all__ = ["NOTICES", "job_page", "router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Context = Annotated[ApiContext, Depends(get_context)]
PageNumber = Annotated[int, Query(ge=1, le=10_000)]
#: Runs per page of a job's history, runs in its chart, records per collection page.
HISTORY_PAGE = 20
CHART_RUNS = 50
RECORDS_PAGE = 50
#: Messages after a successful action (by the ``done`` query parameter).
NOTICES = {
    "paused": "Paused: no scheduled runs until it is resumed (manual runs still work).",
    "resumed": "Resumed: the next scheduled slot will run (missed slots are not caught up).",
    "cancel-requested": "Cancel requested: the run stops at its next check (a queued run "
    "is skipped); nothing it wrote stays.",
    "cancel-committing": "Not cancelled: the run is committing, and a commit is never "
    "interrupted; it completes.",
    "cancel-done": "Not cancelled: the run has succeeded already.",
    "ended": "Not cancelled: the run has ended already.",
    "restore": "Restored: the version is live again, as a new version.",
    "restore-previous": "Restored: the previous data is live again; the replaced data can "
    "be restored the same way during its grace time.",
    "pin": "Pinned: pruning keeps this version.",
    "unpin": "Unpinned: the next commit prunes it if it is older than keep_versions.",
}


def _last_runs(context: ApiContext, names: list[str]) -> dict[str, dict[str, Any]]:
    last = {}
    for name in names:
        runs = context.history.last_runs(name, limit=1)
        if runs:
            last[name] = runs[0]
    return last


@router.get("/")
def jobs_page(request: Request, viewer: ViewerDep, context: Context, q: str = "") -> Response:
    """Every job the viewer may see, with a filter."""
    records = [r for r in context.jobs.list() if job_visible(viewer.user, r)]
    last = _last_runs(context, [r.name for r in records])
    now = utcnow()
    rows = [views.job_row(record, last.get(record.name), now) for record in records]
    needle = q.strip().lower()[:200]
    shown = [row for row in rows if needle in row.search_text] if needle else rows
    return page(
        request, "jobs.html",
        {"rows": shown, "total": len(rows), "q": q[:200], "nav": "jobs",
         "failing": sum(r.failing for r in rows), "paused": sum(r.paused for r in rows)},
    )  # fmt: skip


def shown_definition(record: JobRecord, viewer: Viewer) -> dict[str, Any]:
    """The definition as every view shows it: ``contracts.masking.masked_definition``
    (the JSON API's job routes use the same), the reader's form for readers."""
    return masked_definition(record.definition, reader=not viewer.admin)


def job_page(
    request: Request,
    viewer: Viewer,
    context: ApiContext,
    record: JobRecord,
    page_number: int = 1,
    *,
    notice: str | None = None,
    error: str | None = None,
    params_text: str = "",
    status_code: int = 200,
) -> Response:
    """The job page (also re-rendered by a failed action, with its message)."""
    name = record.name
    wanted = max(CHART_RUNS, page_number * HISTORY_PAGE + 1)
    runs = context.history.last_runs(name, limit=wanted)
    start = (page_number - 1) * HISTORY_PAGE
    root = root_path(request)
    definition = shown_definition(record, viewer)
    return page(
        request, "job.html",
        {
            "job": views.job_row(record, runs[0] if runs else None, utcnow()),
            "record": record,
            "definition_yaml": yaml.safe_dump(definition, sort_keys=False, allow_unicode=True),
            "runs": runs[start : start + HISTORY_PAGE],
            "chart_runs": runs[:CHART_RUNS],
            "run_url": lambda run_id: f"{root}/runs/{views.path_segment(run_id)}",
            "page_number": page_number,
            "has_next": len(runs) > start + HISTORY_PAGE,
            "notice": notice,
            "error": error,
            "params_text": params_text,
            "nav": "jobs",
        },
        status_code=status_code,
    )  # fmt: skip


@router.get("/jobs/{name}")
def job_detail(
    request: Request,
    name: str,
    viewer: ViewerDep,
    context: Context,
    page_number: Annotated[PageNumber, Query(alias="page")] = 1,
    done: str = "",
) -> Response:
    """One job: definition, actions, chart and history."""
    record = visible_job(context, viewer.user, name)
    return job_page(request, viewer, context, record, page_number, notice=NOTICES.get(done))


def _run_view(context: ApiContext, viewer: Viewer, run_id: str, job_hint: str) -> dict[str, Any]:
    """Everything the run page shows; ``NotFound`` for a run the viewer may not see."""
    doc = context.history.get(run_id)
    events = EventLog(context.store).for_run(run_id)
    job_name = str(doc["job"]) if doc else (events[0].job if events else job_hint)
    record = context.jobs.get(job_name) if job_name else None
    known = doc is not None or bool(events)
    if not job_name or not job_visible(viewer.user, record) or (not known and record is None):
        raise NotFound(
            f"no run {run_id!r} in the history (a queued run appears once a worker starts it)"
        )
    status = str((doc or {}).get("status") or ("running" if events else "queued"))
    counts: dict[str, int] = {}
    queue = context.run_queue()
    if queue is not None and status in views.ACTIVE:
        counts = queue.progress(run_id)
    sources, other = views.progress_rows(counts)
    zone = record.definition.schedule.timezone if record and record.definition.schedule else None
    collection = record.definition.collection.name if record else None
    return {
        "run_id": run_id,
        "job_name": job_name,
        "job_exists": record is not None,
        "doc": doc or {},
        "status": status,
        "active": status in views.ACTIVE,
        "attempts": views.attempts(events, doc),
        "events": views.event_rows(events),
        "sources": sources,
        "other_counts": other,
        "items_fetched": sum(s["items"] for s in sources),
        "scheduled_for": views.instant((doc or {}).get("scheduled_for"), zone),
        "requested_at": views.instant((doc or {}).get("requested_at")),
        "started_at": views.instant((doc or {}).get("started_at")),
        "finished_at": views.instant((doc or {}).get("finished_at")),
        "collection": collection,
        "may_read_collection": collection is not None and viewer.user.may_read(collection),
    }  # fmt: skip


@router.get("/runs/{run_id:path}")
def run_detail(
    request: Request,
    run_id: str,
    viewer: ViewerDep,
    context: Context,
    job: str = "",
    part: str = "",
    done: str = "",
) -> Response:
    """One run; ``?part=live`` answers only the part that refreshes."""
    view = _run_view(context, viewer, run_id, job[:100])
    view["notice"] = NOTICES.get(done) if part != "live" else None
    live_url = f"{root_path(request)}/runs/{views.path_segment(run_id)}?part=live" + (
        f"&job={views.path_segment(job)}" if job else ""
    )
    template = "run_live.html" if part == "live" else "run.html"
    return page(request, template, {**view, "live_url": live_url, "nav": "jobs"})


@router.get("/collections")
def collections_page(request: Request, viewer: ViewerDep, context: Context) -> Response:
    """The collections the viewer may read."""
    entries = []
    for name in context.reader.names():
        if viewer.user.may_read(name):
            entry = context.reader.catalog.get(name)
            if entry is not None:
                entries.append(entry)
    return page(request, "collections.html", {"entries": entries, "nav": "collections"})


@router.get("/collections/{name:path}")
def collection_page(
    request: Request,
    name: str,
    viewer: ViewerDep,
    context: Context,
    version: Annotated[int | None, Query(ge=1, le=2**53)] = None,
    page_number: Annotated[PageNumber, Query(alias="page")] = 1,
    done: str = "",
) -> Response:
    """One collection: its versions (restore and pin them), its restorable previous
    data (normal), and a page of its records (live or a version)."""
    if not viewer.user.may_read(name):
        raise PermissionDenied()
    reader = context.reader
    entry = reader.entry(name)
    if version is not None and not entry.type.versioned:
        return error_page(
            request, 404, f"collection {name!r} is of type '{entry.type}', which keeps no versions"
        )
    total = reader.count(name, None, version)
    skip = (page_number - 1) * RECORDS_PAGE
    records = list(reader.find(name, None, version, skip=skip, limit=RECORDS_PAGE))
    columns, rows = views.record_table(records)
    base = str(request.base_url).rstrip("/")
    api_path = f"/api/collections/{views.path_segment(name)}" + (
        f"/versions/{version}" if version is not None else ""
    )
    jobs = [
        r.name
        for r in context.jobs.list()
        if r.definition.collection.name == name and job_visible(viewer.user, r)
    ]
    return page(
        request, "collection.html",
        {
            "entry": entry,
            "version": version,
            "versions": list(reversed(entry.versions)),
            "total": total,
            "columns": columns,
            "rows": rows,
            "page_number": page_number,
            "last_page": max(1, -(-total // RECORDS_PAGE)),
            "first_index": skip + 1,
            "api_url": base + api_path,
            "jobs": jobs,
            "grace_copies": Versions(context.store).restorable(name),
            "notice": NOTICES.get(done),
            "nav": "collections",
        },
    )  # fmt: skip


@router.get("/static/{file_name}")
def static(file_name: str) -> Response:
    """A vendored file (long-cached: its URL carries a content hash)."""
    found = static_files().get(file_name)
    if found is None:
        return Response("Not found.", 404, media_type="text/plain")
    data, media_type, _ = found
    return Response(
        data,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
