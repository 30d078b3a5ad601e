"""Lifecycle events of a run. The event log of these is the source of truth from
which the execution history and the metrics are built."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.base import Contract, JobName, UtcDatetime, utcnow
from contracts.messages import Trigger

__all__ = [
    "EVENT_ADAPTER",
    "Event",
    "GuardReport",
    "GuardViolation",
    "JobAbandoned",
    "JobCancelled",
    "JobFailed",
    "JobRejected",
    "JobStarted",
    "JobSucceeded",
]


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
    requested_at: UtcDatetime | None = Field(default=None, description="As in the RunJob.")
    requested_by: str = Field(default="", max_length=200, description="As in the RunJob.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The RunJob's params (overrides for this run)."
    )
    force: bool = Field(default=False, description="As in the RunJob: guards are not checked.")


class JobSucceeded(_Event):
    kind: Literal["succeeded"] = "succeeded"
    job: JobName
    records_read: int = Field(default=0, ge=0)
    records_written: int = Field(default=0, ge=0)
    inserted: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    version: int | None = Field(default=None, description="Version created (versioned types).")
    duration_s: float = Field(default=0.0, ge=0)
    unchanged: int | None = Field(
        default=None, ge=0, description="Records written that were stored with the same content."
    )
    removed: int | None = Field(
        default=None,
        ge=0,
        description="Records of the previous data absent now (normal and versioned types).",
    )
    total: int | None = Field(default=None, ge=0, description="Records live after the commit.")


class GuardViolation(BaseModel):
    """One record that broke a guard: its 0-based position in the run's output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    position: int = Field(ge=0)
    problem: str = Field(max_length=500)


class GuardReport(BaseModel):
    """Which guard failed a run, with its figures (counts, limits, percentages) and
    the first offending records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=50, description="min_records, max_drop_pct, unique, ...")
    figures: dict[str, bool | int | float | str | None] = Field(default_factory=dict)
    violations: list[GuardViolation] = Field(default_factory=list, max_length=1000)


class JobFailed(_Event):
    kind: Literal["failed"] = "failed"
    error_type: str
    message: str
    will_retry: bool = False
    duration_s: float = Field(default=0.0, ge=0)
    guard: GuardReport | None = Field(default=None, description="Set when a guard failed.")


class JobCancelled(_Event):
    """An operator cancelled the run: nothing of it was committed, it is not retried.
    ``stage`` ``queued``: stopped before it started (no ``JobStarted``)."""

    kind: Literal["cancelled"] = "cancelled"
    job: JobName
    stage: Literal["queued", "running"] = "running"
    requested_by: str = Field(default="", max_length=200)
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
    JobStarted | JobSucceeded | JobFailed | JobAbandoned | JobRejected | JobCancelled,
    Field(discriminator="kind"),
]

#: Validates any event (a dict from the event log or a message) into its model.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
