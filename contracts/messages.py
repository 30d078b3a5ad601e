"""``RunJob``: the message that asks a worker to run a job once; ``RunJobMessage``: the
Dramatiq message that carries it on the wire (docs/wire-format.md).

Both have committed JSON Schemas (``contracts.schema``) stating what a worker accepts:
the cross-field rule of ``RunJob`` (``scheduled_for`` when ``trigger`` is
``schedule``) appears there as an ``if``/``then``, and the job name as its pattern.
What no JSON Schema can say (the 1 MiB size and 64-level nesting bounds of
``workers.decoding``, timezone-aware datetimes) is in the descriptions.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.base import _JOB_NAME_RE, Contract, JobName, UtcDatetime, utcnow

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_DEPTH",
    "RUN_ID_NAMESPACE",
    "RunJob",
    "RunJobMessage",
    "RunJobOptions",
    "Trigger",
    "scheduled_run_id",
]

#: uuid5 namespace of scheduled run ids: the same (job, slot) always gets the same id.
RUN_ID_NAMESPACE = uuid.UUID("6f1c2a7e-3d0b-5c9e-8a41-51a2d0c0ffee")

Trigger = Literal["schedule", "manual", "api"]
#: Largest message a worker decodes, in bytes, and deepest JSON nesting (the values of
#: ``workers.decoding.DEFAULT_MAX_MESSAGE_BYTES`` / ``DEFAULT_MAX_DEPTH``; a test keeps
#: them equal).
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_MESSAGE_DEPTH = 64


def _run_job_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of ``RunJob``: the rules its validators check, where a schema can."""
    job = schema["properties"]["job"]
    job.update(pattern=_JOB_NAME_RE.pattern, minLength=1, maxLength=100)
    job["description"] = "A registered job's name: letters, digits, '_', '.', '-'."
    for name in ("requested_at", "scheduled_for"):
        schema["properties"][name]["description"] = (
            schema["properties"][name].get("description", "")
            + " An RFC 3339 date-time with a UTC offset ('Z' or '+01:00'); a time without"
            " one is refused."
        ).strip()
    schema["if"] = {"properties": {"trigger": {"const": "schedule"}}, "required": ["trigger"]}
    schema["then"] = {
        "properties": {"scheduled_for": {"type": "string", "format": "date-time"}},
        "required": ["scheduled_for"],
    }


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

    model_config = ConfigDict(json_schema_extra=_run_job_schema)

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
    force: bool = Field(
        default=False,
        description="Commit even if the job's guards fail (an operator's override of this "
        "one run; recorded in the history).",
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


class RunJobOptions(BaseModel):
    """Dramatiq's ``options`` of a message. A publisher sets ``redis_message_id`` (a
    fresh UUID4); a worker keeps only what Dramatiq itself writes (``retries``,
    ``traceback``, ``requeue_timestamp``) and ignores the rest."""

    model_config = ConfigDict(extra="allow", frozen=True)

    redis_message_id: str | None = Field(
        default=None,
        description="The id the message is stored under in Redis (a fresh UUID4). The "
        "worker uses the id it fetched the message under, whatever this says.",
    )
    retries: int = Field(default=0, ge=0, description="Set by Dramatiq's retries middleware.")


class RunJobMessage(BaseModel):
    """The Dramatiq message a publisher writes to Redis to run a job
    (docs/wire-format.md). At most 1 MiB of UTF-8 JSON nested at most 64 levels deep;
    a worker rejects anything else, and every field not listed here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_name: str = Field(
        min_length=1, description="The queue written to (default 'slurp'; SLURP_QUEUE_NAME)."
    )
    actor_name: Literal["run_job"]
    args: tuple[RunJob] = Field(description="Exactly one element: the RunJob.")
    kwargs: dict[str, Any] = Field(max_length=0, description="Always {}.")
    options: RunJobOptions
    message_id: str = Field(min_length=1, description="A fresh UUID4: Dramatiq's message id.")
    message_timestamp: int = Field(
        default=0, ge=0, description="Unix time of publication in integer milliseconds."
    )
