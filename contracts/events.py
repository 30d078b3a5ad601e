"""Lifecycle events of a run. The event log of these is the source of truth from
which the execution history and the metrics are built."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field

from contracts.base import Contract, JobName, UtcDatetime, utcnow
from contracts.messages import Trigger

__all__ = ["Event", "JobAbandoned", "JobFailed", "JobRejected", "JobStarted", "JobSucceeded"]


class _Event(Contract):
    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    run_id: str = Field(min_length=1, max_length=128)
    job: str = Field(description="Job name as sent (may be unknown for rejected messages).")
    attempt: int = Field(default=1, ge=1)
    delivery: int = Field(
        default=1,
        ge=1,
        description="Which start of the attempt this is: more than 1 when the worker "
        "running the attempt died and the message was delivered again.",
    )
    at: UtcDatetime = Field(default_factory=utcnow)


class JobStarted(_Event):
    kind: Literal["started"] = "started"
    job: JobName
    trigger: Trigger = "manual"
    scheduled_for: UtcDatetime | None = None
    worker: str = ""


class JobSucceeded(_Event):
    kind: Literal["succeeded"] = "succeeded"
    job: JobName
    records_read: int = Field(default=0, ge=0)
    records_written: int = Field(default=0, ge=0)
    inserted: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    version: int | None = Field(default=None, description="Version created (versioned types).")
    duration_s: float = Field(default=0.0, ge=0)


class JobFailed(_Event):
    kind: Literal["failed"] = "failed"
    error_type: str
    message: str
    will_retry: bool = False
    duration_s: float = Field(default=0.0, ge=0)


class JobAbandoned(_Event):
    """A started attempt whose worker is gone: it holds no lease and reported no end.
    A later start of the attempt (its redelivered message) or its own late end
    supersedes this in the history."""

    kind: Literal["abandoned"] = "abandoned"
    job: JobName
    reason: str


class JobRejected(_Event):
    """A message that could not be run at all (malformed, unknown job, duplicate)."""

    kind: Literal["rejected"] = "rejected"
    reason: str


Event = Annotated[
    JobStarted | JobSucceeded | JobFailed | JobAbandoned | JobRejected,
    Field(discriminator="kind"),
]
