"""``/api/jobs``: list, read, create or replace (PUT), delete, pause, resume, and run
now (``POST /api/jobs/{name}/runs`` publishes a ``RunJob`` and returns its run id).

Writes need the admin role. A PUT body is a ``JobDefinition`` (the contract of
``contracts.jobs``); an invalid one is refused with 400 and the contract's field
errors, and so is one the server's job policy refuses (files outside the roots,
variables not allowed, refused hosts, slurpers outside the allow-list). The ``name``
in the body must equal the one in the path.

Every answer shows a definition through ``contracts.masking.masked_definition``:
admins see secret-bearing fields masked, readers see no headers, auth, request params
or bodies, and URLs without query strings.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Admin, CurrentUser
from api.context import ApiContext, get_context
from api.errors import NotFound, error_responses
from api.routes.runs import job_visible, visible_job
from api.runqueue import queue_run
from contracts.jobs import JobDefinition
from contracts.masking import masked_definition
from contracts.messages import RunJob
from storage.errors import InvalidJobRecordError
from storage.jobs import JobRecord

__all__ = ["JobOut", "RunAccepted", "RunRequest", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

Context = Annotated[ApiContext, Depends(get_context)]


class JobOut(BaseModel):
    """A registered job with the registry's bookkeeping."""

    name: str
    paused: bool
    revision: int = Field(description="Grows on every change of the definition.")
    created_at: datetime
    updated_at: datetime
    last_slot: datetime | None = Field(description="Latest cron slot the ticker handled.")
    definition: dict[str, Any] = Field(
        description="The JobDefinition with every secret-bearing field masked ('***'); "
        "for readers without headers, auth, request params and bodies, and URLs without "
        "query strings."
    )

    @classmethod
    def from_record(cls, record: JobRecord, reader: bool = False) -> JobOut:
        return cls(
            name=record.name,
            paused=record.definition.paused,
            revision=record.revision,
            created_at=record.created_at,
            updated_at=record.updated_at,
            last_slot=record.last_slot,
            definition=masked_definition(record.definition, reader=reader),
        )


class RunRequest(BaseModel):
    """Optional body of ``POST /api/jobs/{name}/runs``."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(
        default_factory=dict, description="Merged over the job's params for this run."
    )
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Idempotency key; a new UUID if not given.",
    )
    force: bool = Field(
        default=False,
        description="Commit even if the job's guards fail (this run only; recorded in the "
        "history).",
    )


class RunAccepted(BaseModel):
    job: str
    run_id: str
    message_id: str = Field(description="The Dramatiq message id.")


def _job(context: ApiContext, name: str) -> JobRecord:
    record = context.jobs.get(name)
    if record is None:
        raise NotFound(f"no job named {name!r}")
    return record


@router.get("", responses=error_responses(401))
def list_jobs(user: CurrentUser, context: Context) -> list[JobOut]:
    """The jobs the user may see, by name."""
    reader = user.role != "admin"
    return [JobOut.from_record(r, reader) for r in context.jobs.list() if job_visible(user, r)]


@router.get("/{name}", responses=error_responses(401, 404))
def get_job(name: str, user: CurrentUser, context: Context) -> JobOut:
    """One job."""
    return JobOut.from_record(visible_job(context, user, name), user.role != "admin")


@router.put(
    "/{name}",
    responses={201: {"model": JobOut, "description": "Created"}, **error_responses(401, 403, 409)},
)
def put_job(
    name: str, definition: JobDefinition, response: Response, user: Admin, context: Context
) -> JobOut:
    """Create (201) or replace (200) a job."""
    if definition.name != name:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "name"),
                    "msg": f"must equal the job name in the path ({name!r})",
                    "type": "value_error",
                }
            ]
        )
    policy = context.jobs.policy
    problems = policy.check(definition) if policy is not None else []
    if problems:
        raise RequestValidationError(
            [{"loc": ("body", *p.loc), "msg": p.message, "type": "value_error"} for p in problems]
        )
    try:
        created = context.jobs.get(name) is None
    except InvalidJobRecordError:  # a stored definition that no longer validates: replaced
        created = False
    record = context.jobs.put(definition)
    if created:
        response.status_code = 201
    return JobOut.from_record(record)


@router.delete(
    "/{name}", status_code=204, response_class=Response, responses=error_responses(401, 403, 404)
)
def delete_job(name: str, user: Admin, context: Context) -> None:
    """Remove a job (its collection and history stay)."""
    if not context.jobs.delete(name):
        raise NotFound(f"no job named {name!r}")


@router.post("/{name}/pause", responses=error_responses(401, 403, 404))
def pause_job(name: str, user: Admin, context: Context) -> JobOut:
    """Stop scheduled runs (manual runs still work)."""
    _job(context, name)
    return JobOut.from_record(context.jobs.set_paused(name, True))


@router.post("/{name}/resume", responses=error_responses(401, 403, 404))
def resume_job(name: str, user: Admin, context: Context) -> JobOut:
    """Resume scheduled runs (missed slots are not caught up)."""
    _job(context, name)
    return JobOut.from_record(context.jobs.set_paused(name, False))


@router.post("/{name}/runs", status_code=202, responses=error_responses(401, 403, 404))
def run_job(
    name: str, user: Admin, context: Context, body: RunRequest | None = None
) -> RunAccepted:
    """Queue a run now (trigger 'api'); poll GET /api/runs/{run_id} for its outcome."""
    _job(context, name)
    request = body or RunRequest()
    extra = {"run_id": request.run_id} if request.run_id else {}
    run = RunJob(
        job=name,
        trigger="api",
        requested_by=f"api:{user.username}",
        params=request.params,
        force=request.force,
        **extra,
    )
    message_id = queue_run(context, run)  # 503 without a queue, or when it is down
    return RunAccepted(job=name, run_id=run.run_id, message_id=message_id)
