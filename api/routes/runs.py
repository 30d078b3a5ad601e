"""``GET /api/jobs/{name}/runs`` and ``GET /api/runs/{run_id}``: the execution history
(status, timing, counts and change statistics, error), newest first;
``POST /api/runs/{run_id}/cancel`` (admins) cancels a queued or running run.

A run appears once a worker has started it; a run that is only queued is not yet in
the history (404 until then).

Cancel: a running run stops at its next check (every record and batch; a slow HTTP
request or SQL query is interrupted), nothing it wrote stays, and it is recorded
``cancelled``, never retried; a queued (or retrying) run is skipped when its message is
taken. A run whose commit has begun is not cancelled: the commit completes (409), and
so is a run that already ended (409).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import Admin, CurrentUser
from api.config import UserSpec
from api.context import ApiContext, get_context
from api.errors import Conflict, NotFound, error_responses
from api.runqueue import cancel_run
from storage.errors import InvalidJobRecordError
from storage.jobs import JobRecord

__all__ = ["CancelOut", "RunError", "RunOut", "job_visible", "router"]

router = APIRouter(tags=["runs"])

Context = Annotated[ApiContext, Depends(get_context)]
#: Largest ``$limit`` of a job's run list.
MAX_RUNS = 1000


#: Statuses of runs that ended: nothing left to cancel.
ENDED = frozenset({"succeeded", "failed", "rejected", "cancelled"})


class RunError(BaseModel):
    type: str
    message: str
    guard: dict[str, Any] | None = Field(
        default=None,
        description="When a guard failed the run: {name, figures, violations: [{position, "
        "problem}]}.",
    )


class RunOut(BaseModel):
    """One run as the history knows it."""

    run_id: str
    job: str
    status: str | None = Field(
        default=None,
        description="running | retrying | succeeded | failed | rejected | abandoned | cancelled",
    )
    trigger: str | None = None
    scheduled_for: datetime | None = None
    requested_at: datetime | None = None
    requested_by: str | None = None
    params: dict[str, Any] | None = None
    attempts: int | None = None
    first_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    records_read: int | None = None
    records_written: int | None = None
    inserted: int | None = Field(default=None, description="New records (by key or content).")
    updated: int | None = Field(default=None, description="Keyed records whose content changed.")
    unchanged: int | None = Field(
        default=None, description="Records written that were stored with the same content."
    )
    removed: int | None = Field(
        default=None, description="Records of the previous data absent now."
    )
    total: int | None = Field(default=None, description="Records live after the commit.")
    force: bool | None = Field(default=None, description="Guards were not checked.")
    version: int | None = None
    error: RunError | None = None
    attempt_log: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each start of each attempt, oldest first: attempt, delivery (> 1: "
        "the message came back after its worker died), started_at, worker, ended_at, "
        "outcome, will_retry, error, abandoned_at.",
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RunOut:
        fields = {key: doc.get(key) for key in cls.model_fields if key != "run_id"}
        log = doc.get("attempt_log") or {}
        fields["attempt_log"] = sorted(
            log.values(), key=lambda entry: (entry.get("attempt", 0), entry.get("delivery", 0))
        )
        return cls.model_validate({**fields, "run_id": str(doc["_id"]), "job": str(doc["job"])})


def job_visible(user: UserSpec, record: JobRecord | None) -> bool:
    """Admins see every job; readers those writing a collection their ACL covers.
    Runs of jobs that no longer exist: admins and readers of every collection."""
    if user.role == "admin":
        return True
    if record is None:
        return "*" in user.collections
    return user.may_read(record.definition.collection.name)


def visible_job(context: ApiContext, user: UserSpec, name: str) -> JobRecord:
    """The job ``name`` if it exists and ``user`` may see it; 404 otherwise (a reader
    cannot tell a job it may not see from one that does not exist). A stored job that
    no longer validates: ``InvalidJobRecordError`` (409) for admins, 404 for readers."""
    try:
        record = context.jobs.get(name)
    except InvalidJobRecordError:
        if user.role == "admin":
            raise
        raise NotFound(f"no job named {name!r}") from None
    if record is None or not job_visible(user, record):
        raise NotFound(f"no job named {name!r}")
    return record


def _stored_job(context: ApiContext, name: str) -> tuple[JobRecord | None, bool]:
    """The job ``name`` (None if missing or invalid), and whether it is invalid."""
    try:
        return context.jobs.get(name), False
    except InvalidJobRecordError:
        return None, True


@router.get("/api/jobs/{name}/runs", responses=error_responses(401, 404))
def job_runs(
    name: str,
    user: CurrentUser,
    context: Context,
    limit: Annotated[int, Query(alias="$limit", ge=1, le=MAX_RUNS)] = 20,
) -> list[RunOut]:
    """The newest runs of a job, newest first."""
    record, invalid = _stored_job(context, name)
    # an invalid stored job: its runs are shown as those of a deleted job
    if (record is None and not invalid) or not job_visible(user, record):
        raise NotFound(f"no job named {name!r}")
    return [RunOut.from_doc(doc) for doc in context.history.last_runs(name, limit=limit)]


@router.get("/api/runs/{run_id}", responses=error_responses(401, 404))
def get_run(run_id: str, user: CurrentUser, context: Context) -> RunOut:
    """One run by id."""
    doc = context.history.get(run_id)
    if doc is None or not job_visible(user, _stored_job(context, str(doc.get("job")))[0]):
        raise NotFound(
            f"no run {run_id!r} in the history (a queued run appears once a worker starts it)"
        )
    return RunOut.from_doc(doc)


class CancelOut(BaseModel):
    run_id: str
    status: str = Field(
        description="'cancelling': the run stops at its next check; 'queued': it is "
        "skipped when its message is taken."
    )
    detail: str


@router.post(
    "/api/runs/{run_id}/cancel", status_code=202, responses=error_responses(401, 403, 404, 409)
)
def cancel(run_id: str, user: Admin, context: Context) -> CancelOut:
    """Cancel a queued or running run; ``GET /api/runs/{run_id}`` then shows
    ``cancelled``. 409 when it ended already or its commit has begun."""
    doc = context.history.get(run_id)
    status = str(doc.get("status")) if doc else None
    if status in ENDED:
        raise Conflict(f"run {run_id!r} has ended already ({status}); nothing to cancel")
    answer = cancel_run(context, run_id, f"api:{user.username}")
    if answer == "committing":
        raise Conflict(
            f"run {run_id!r} is committing; a commit is never interrupted, so it completes"
        )
    if answer == "done":
        raise Conflict(f"run {run_id!r} has succeeded already; nothing to cancel")
    if status in ("running", "abandoned"):
        return CancelOut(
            run_id=run_id,
            status="cancelling",
            detail="the run stops at its next check; nothing it wrote stays",
        )
    return CancelOut(
        run_id=run_id,
        status="queued",
        detail="the run is skipped when a worker takes its message, and recorded cancelled",
    )
