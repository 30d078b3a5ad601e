"""The console's actions (POST, admins only, CSRF-checked): Run now (optionally
forced past the job's guards), Pause, Resume, Cancel a run, Restore and (un)pin a
version, Restore a normal collection's previous data.

Each action is the JSON API's own operation: a run is a ``RunJob`` sent through the
app's ``RunQueue`` (``api.runqueue.queue_run``, as ``POST /api/jobs/{name}/runs``;
trigger ``manual``, requested by ``console:<user>``); pause and resume are
``JobRegistry.set_paused`` (as ``POST /api/jobs/{name}/pause|resume``); cancel is
``api.runqueue.cancel_run`` (as ``POST /api/runs/{run_id}/cancel``); restore and pin
are ``storage.versions.Versions`` (as ``POST /api/collections/{name}/versions/...``).

Order of the checks: signed in (else the login page), CSRF token (else 403, nothing
done), job visible (else 404), admin (else 403). A success redirects (303) to the
run's page or back to the job; a failure re-shows the job page with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from api.console.pages import job_page
from api.console.render import ConsoleRoute, error_page, redirect
from api.console.sessions import Form, Viewer, ViewerDep, check_csrf
from api.console.views import path_segment
from api.context import ApiContext, get_context
from api.errors import PermissionDenied, ServiceUnavailable
from api.routes.runs import ENDED, job_visible, visible_job
from api.runqueue import cancel_run, queue_run
from contracts.messages import RunJob
from storage.errors import CommitConflictError, VersionNotFoundError
from storage.jobs import JobRecord
from storage.versions import NotRestorable, Versions

__all__ = ["parse_params", "router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Context = Annotated[ApiContext, Depends(get_context)]
#: Most ``key=value`` lines of a Run now form, and the longest key.
MAX_PARAMS = 50
MAX_KEY = 100


class ParamsError(ValueError):
    """A Run now form's parameters are not ``key=value`` lines."""


def parse_params(text: str) -> dict[str, Any]:
    """``key=value`` per line (blank lines ignored) as ``ctx.params`` overrides; values
    are strings, as with ``slurp run -p KEY=VALUE``."""
    params: dict[str, Any] = {}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_PARAMS:
        raise ParamsError(f"at most {MAX_PARAMS} parameters")
    for number, line in enumerate(lines, start=1):
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamsError(f"line {number} is not key=value: {line[:60]!r}")
        if len(key) > MAX_KEY or key.startswith("$") or "\x00" in key:
            raise ParamsError(f"line {number}: the key is not a plain name")
        params[key] = value.strip()
    return params


def _admin_job(context: ApiContext, viewer: Viewer, name: str, form: dict[str, str]) -> JobRecord:
    check_csrf(viewer.session.csrf, form)
    record = visible_job(context, viewer.user, name)
    if not viewer.admin:
        raise PermissionDenied("Only admins can run, pause or resume jobs.")
    return record


@router.post("/jobs/{name}/run")
def run_now(
    request: Request, name: str, viewer: ViewerDep, form: Form, context: Context
) -> Response:
    """Queue a run now; go to its page."""
    record = _admin_job(context, viewer, name, form)
    text = form.get("params", "")
    try:
        params = parse_params(text)
    except ParamsError as exc:
        return job_page(
            request, viewer, context, record, error=f"Not run: {exc}.", params_text=text,
            status_code=400,
        )  # fmt: skip
    run = RunJob(
        job=name,
        trigger="manual",
        requested_by=f"console:{viewer.user.username}",
        params=params,
        force=form.get("force") == "on",
    )
    try:
        queue_run(context, run)
    except ServiceUnavailable as exc:
        return job_page(
            request, viewer, context, record, error=f"Not run: {exc.detail}", params_text=text,
            status_code=503,
        )  # fmt: skip
    return redirect(request, f"/runs/{run.run_id}?job={name}")


def _set_paused(
    request: Request, name: str, viewer: Viewer, form: dict[str, str], context: ApiContext,
    paused: bool,
) -> Response:  # fmt: skip
    _admin_job(context, viewer, name, form)
    context.jobs.set_paused(name, paused)
    return redirect(request, f"/jobs/{name}?done={'paused' if paused else 'resumed'}")


@router.post("/jobs/{name}/pause")
def pause(request: Request, name: str, viewer: ViewerDep, form: Form, context: Context) -> Response:
    """Stop scheduled runs (manual runs still work)."""
    return _set_paused(request, name, viewer, form, context, True)


@router.post("/jobs/{name}/resume")
def resume(
    request: Request, name: str, viewer: ViewerDep, form: Form, context: Context
) -> Response:
    """Resume scheduled runs."""
    return _set_paused(request, name, viewer, form, context, False)


@router.post("/runs/{run_id:path}/cancel")
def cancel(
    request: Request, run_id: str, viewer: ViewerDep, form: Form, context: Context
) -> Response:
    """Cancel a queued or running run; back to its page."""
    check_csrf(viewer.session.csrf, form)
    doc = context.history.get(run_id)
    job = str(doc["job"]) if doc else form.get("job", "")[:100]
    record = context.jobs.get(job) if job else None
    if (doc is None and record is None) or not job_visible(viewer.user, record):
        return error_page(request, 404, f"no run {run_id!r}")
    if not viewer.admin:
        raise PermissionDenied("Only admins can cancel runs.")
    back = f"/runs/{path_segment(run_id)}?job={path_segment(job)}"
    if doc is not None and doc.get("status") in ENDED:
        return redirect(request, f"{back}&done=ended")
    try:
        answer = cancel_run(context, run_id, f"console:{viewer.user.username}")
    except ServiceUnavailable as exc:
        return error_page(request, 503, f"Not cancelled: {exc.detail}")
    return redirect(request, f"{back}&done={'cancel-' + answer}")


def _admin_collection(viewer: Viewer, name: str, form: dict[str, str]) -> None:
    check_csrf(viewer.session.csrf, form)
    if not viewer.user.may_read(name):
        raise PermissionDenied()
    if not viewer.admin:
        raise PermissionDenied("Only admins can restore or pin versions.")


def _version_action(
    request: Request, name: str, viewer: Viewer, form: dict[str, str], context: ApiContext,
    action: str, number: int,
) -> Response:  # fmt: skip
    _admin_collection(viewer, name, form)
    versions = Versions(context.store)
    try:
        if action == "restore":
            versions.restore(name, number, by=f"console:{viewer.user.username}")
        elif action == "restore-previous":
            versions.restore_previous(name, by=f"console:{viewer.user.username}", which=number)
        else:
            versions.pin(name, number, pinned=action == "pin")
    except (NotRestorable, VersionNotFoundError, CommitConflictError) as exc:
        return error_page(request, 409, f"Not done: {exc}")
    return redirect(request, f"/collections/{path_segment(name)}?done={action}")


@router.post("/collections/{name:path}/versions/{number}/{action}")
def version_action(
    request: Request, name: str, number: int, action: str, viewer: ViewerDep, form: Form,
    context: Context,
) -> Response:  # fmt: skip
    """Restore, pin or unpin a version."""
    if action not in ("restore", "pin", "unpin"):
        return error_page(request, 404, "no such action")
    return _version_action(request, name, viewer, form, context, action, number)


@router.post("/collections/{name:path}/previous/{index}/restore")
def restore_previous(
    request: Request, name: str, index: int, viewer: ViewerDep, form: Form, context: Context
) -> Response:
    """Restore a normal collection's previous data (a grace copy)."""
    return _version_action(request, name, viewer, form, context, "restore-previous", index)
