"""``RunContext``: what a slurper (``ctx``) and the datasources know about the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from contracts.jobs import JobDefinition
from contracts.messages import RunJob, Trigger
from datasources.cancel import CancelToken

__all__ = ["RunContext"]


def _frozen(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(params))


@dataclass(frozen=True)
class RunContext:
    """The context of one run of one job. Immutable; ``params`` is read-only.

    - ``job``: the job's name; ``run_id``: the run's idempotency key;
    - ``trigger``: ``schedule``, ``manual`` or ``api``;
    - ``scheduled_for``: the cron slot (UTC) of a scheduled run, else ``None``;
    - ``params``: the job's free-form params, with the message's params merged over them;
    - ``timezone``: the IANA timezone of the job's schedule (``UTC`` without one);
    - ``now``: when the run started (UTC); ``attempt``: 1 for the first delivery;
    - ``collection``: the name of the collection the run stores into (sources with a
      commit remember what they applied per collection), ``None`` outside a run;
    - ``cancel``: the run's ``CancelToken`` (sources check it between pages and let it
      interrupt slow requests), ``None`` where a run cannot be cancelled.

    Templates and date values use :attr:`run_time`: the slot for scheduled runs, else
    ``now``, in the job's timezone.
    """

    job: str
    run_id: str
    trigger: Trigger = "manual"
    scheduled_for: datetime | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    attempt: int = 1
    collection: str | None = None
    cancel: CancelToken | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("scheduled_for", "now"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"RunContext.{name} must be timezone-aware")
        ZoneInfo(self.timezone)  # fail early on an unknown zone
        object.__setattr__(self, "params", _frozen(self.params))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def run_time(self) -> datetime:
        """The slot of a scheduled run, else ``now``; in the job's timezone."""
        return (self.scheduled_for or self.now).astimezone(self.tz)

    @classmethod
    def for_run(
        cls,
        job: JobDefinition,
        message: RunJob,
        now: datetime | None = None,
        attempt: int = 1,
        cancel: CancelToken | None = None,
    ) -> RunContext:
        """The context of running ``job`` as asked by ``message``: the message's params
        are merged over the job's, the timezone is the job's schedule's."""
        return cls(
            job=job.name,
            run_id=message.run_id,
            trigger=message.trigger,
            scheduled_for=message.scheduled_for,
            params={**job.params, **message.params},
            timezone=job.schedule.timezone if job.schedule is not None else "UTC",
            now=now or datetime.now(UTC),
            attempt=attempt,
            collection=job.collection.name,
            cancel=cancel,
        )
