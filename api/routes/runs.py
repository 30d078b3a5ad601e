"""``GET /api/jobs/{name}/runs`` and ``GET /api/runs/{run_id}``: the execution history
(status, timing, counts, error), newest first.

A run appears once a worker has started it; a run that is only queued is not yet in
the history (404 until then).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import CurrentUser
from api.config import UserSpec
from api.context import ApiContext, get_context
from api.errors import NotFound, error_responses
from storage.jobs import JobRecord

__all__ = ["RunError", "RunOut", "job_visible", "router"]

router = APIRouter(tags=["runs"])

Context = Annotated[ApiContext, Depends(get_context)]
#: Largest ``$limit`` of a job's run list.
MAX_RUNS = 1000


class RunError(BaseModel):
    type: str
    message: str


class RunOut(BaseModel):
    """One run as the history knows it."""

    run_id: str
    job: str
    status: str | None = Field(
        default=None, description="running | retrying | succeeded | failed | rejected"
    )
    trigger: str | None = None
    scheduled_for: datetime | None = None
    attempts: int | None = None
    first_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    records_read: int | None = None
    records_written: int | None = None
    inserted: int | None = None
    updated: int | None = None
    version: int | None = None
    error: RunError | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RunOut:
        fields = {key: doc.get(key) for key in cls.model_fields if key != "run_id"}
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
    cannot tell a job it may not see from one that does not exist)."""
    record = context.jobs.get(name)
    if record is None or not job_visible(user, record):
        raise NotFound(f"no job named {name!r}")
    return record


@router.get("/api/jobs/{name}/runs", responses=error_responses(401, 404))
def job_runs(
    name: str,
    user: CurrentUser,
    context: Context,
    limit: Annotated[int, Query(alias="$limit", ge=1, le=MAX_RUNS)] = 20,
) -> list[RunOut]:
    """The newest runs of a job, newest first."""
    visible_job(context, user, name)
    return [RunOut.from_doc(doc) for doc in context.history.last_runs(name, limit=limit)]


@router.get("/api/runs/{run_id}", responses=error_responses(401, 404))
def get_run(run_id: str, user: CurrentUser, context: Context) -> RunOut:
    """One run by id."""
    doc = context.history.get(run_id)
    if doc is None or not job_visible(user, context.jobs.get(str(doc.get("job")))):
        raise NotFound(
            f"no run {run_id!r} in the history (a queued run appears once a worker starts it)"
        )
    return RunOut.from_doc(doc)
