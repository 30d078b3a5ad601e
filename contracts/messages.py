"""``RunJob``: the message that asks a worker to run a job once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from contracts.base import Contract, JobName, UtcDatetime, utcnow

__all__ = ["RUN_ID_NAMESPACE", "RunJob", "Trigger", "scheduled_run_id"]

#: uuid5 namespace of scheduled run ids: the same (job, slot) always gets the same id.
RUN_ID_NAMESPACE = uuid.UUID("6f1c2a7e-3d0b-5c9e-8a41-51a2d0c0ffee")

Trigger = Literal["schedule", "manual", "api"]


def scheduled_run_id(job: str, slot: datetime) -> str:
    """The idempotency key of the run of ``job`` for the cron slot ``slot``.

    ``slot`` must be timezone-aware; the same instant gives the same id whatever the
    offset it is expressed in: ``uuid5(RUN_ID_NAMESPACE, "<job>@<slot UTC ISO-8601>")``.
    """
    if slot.tzinfo is None:
        raise ValueError("slot must be timezone-aware")
    utc = slot.astimezone(UTC).replace(microsecond=0)
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{job}@{utc.isoformat()}"))


class RunJob(Contract):
    """Run job ``job`` once. ``run_id`` is the idempotency key: a run id that already
    succeeded is not run again, however often the message is delivered."""

    job: JobName
    run_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=128)
    trigger: Trigger = "manual"
    scheduled_for: UtcDatetime | None = Field(
        default=None, description="The cron slot (UTC); required when trigger is 'schedule'."
    )
    requested_at: UtcDatetime = Field(default_factory=utcnow)
    requested_by: str = Field(default="unknown", max_length=200)
    params: dict[str, Any] = Field(
        default_factory=dict, description="Overrides merged over the job's params for this run."
    )

    @model_validator(mode="after")
    def _schedule_has_slot(self) -> Self:
        if self.trigger == "schedule" and self.scheduled_for is None:
            raise ValueError("scheduled_for is required when trigger is 'schedule'")
        return self

    @classmethod
    def for_slot(cls, job: str, slot: datetime, requested_by: str = "ticker") -> RunJob:
        """The scheduled run of ``job`` at ``slot``, with its deterministic run id."""
        return cls(
            job=job,
            run_id=scheduled_run_id(job, slot),
            trigger="schedule",
            scheduled_for=slot,
            requested_by=requested_by,
        )
