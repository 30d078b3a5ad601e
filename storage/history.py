"""The execution history: one document per run in ``slurp_history``, a projection of
the event log.

``apply(event)`` folds one event into its run's document. It is idempotent (applying
an event twice changes nothing) and order-independent (a success applied before its
start gives the same document), because every field is written either by a
commutative operator (``$min``/``$max``/``$setOnInsert``), by a ``$set`` that only
one event of a run writes (the per-attempt log), or by a conditional update that
only a later lifecycle step may win. The step order of an event is
``(attempt * 100 + delivery) * 10 + rank`` with rank started=1 < abandoned=2 <
failed-will-retry=3 < final (succeeded, failed, rejected)=4: a redelivered start of
an abandoned attempt, a retry, and an attempt's own late end each supersede what
came before. ``rebuild`` recomputes the whole history from the event log.

Document::

    {_id: run_id, job, trigger, scheduled_for, status, attempts, first_at,
     started_at, finished_at, duration_s, records_read, records_written,
     inserted, updated, version, error: {type, message} | null, order,
     attempt_log: {"<attempt>:<delivery>": {attempt, delivery, started_at, worker,
                   ended_at, outcome, will_retry, error, abandoned_at}}}

``status``: running | retrying | succeeded | failed | rejected | abandoned.
``attempt_log`` has one entry per start of an attempt (``delivery`` > 1: the message
came back after its worker died); ``outcome`` (succeeded | failed | rejected) is set
by the attempt's end, ``abandoned_at`` when it was found without a live worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from contracts.base import utcnow
from contracts.events import (
    Event,
    JobAbandoned,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)
from storage.events import EventLog
from storage.store import Doc, Store

__all__ = [
    "HISTORY_COLLECTION",
    "History",
    "RetentionReport",
    "attempt_key",
    "step_of",
    "step_order",
]

HISTORY_COLLECTION = "slurp_history"
#: Deliveries of one attempt beyond this share the last slot of the order.
_MAX_DELIVERY = 99


def step_order(event: Event) -> int:
    """Where ``event`` stands in its run's lifecycle; later steps win."""
    if isinstance(event, JobStarted):
        rank = 1
    elif isinstance(event, JobAbandoned):
        rank = 2
    elif isinstance(event, JobFailed) and event.will_retry:
        rank = 3
    else:
        rank = 4
    return (event.attempt * 100 + min(event.delivery, _MAX_DELIVERY)) * 10 + rank


def step_of(order: int) -> tuple[int, int]:
    """(attempt, delivery) of the lifecycle step ``order`` (``step_order``'s inverse)."""
    return order // 1000, order // 10 % 100


def attempt_key(attempt: int, delivery: int) -> str:
    """The key of one start of an attempt in a history document's ``attempt_log``."""
    return f"{attempt}:{delivery}"


def _attempt_fields(event: Event) -> Doc:
    """What ``event`` says about its own start of its attempt (``$set`` paths)."""
    prefix = f"attempt_log.{attempt_key(event.attempt, event.delivery)}"
    fields: Doc = {f"{prefix}.attempt": event.attempt, f"{prefix}.delivery": event.delivery}
    if isinstance(event, JobStarted):
        fields[f"{prefix}.started_at"] = event.at
        fields[f"{prefix}.worker"] = event.worker
    elif isinstance(event, JobAbandoned):
        fields[f"{prefix}.abandoned_at"] = event.at
        fields[f"{prefix}.abandoned_reason"] = event.reason
    elif isinstance(event, JobSucceeded):
        fields[f"{prefix}.ended_at"] = event.at
        fields[f"{prefix}.outcome"] = "succeeded"
        fields[f"{prefix}.records_written"] = event.records_written
    elif isinstance(event, JobFailed):
        fields[f"{prefix}.ended_at"] = event.at
        fields[f"{prefix}.outcome"] = "failed"
        fields[f"{prefix}.will_retry"] = event.will_retry
        fields[f"{prefix}.error"] = {"type": event.error_type, "message": event.message}
    else:
        assert isinstance(event, JobRejected)
        fields[f"{prefix}.ended_at"] = event.at
        fields[f"{prefix}.outcome"] = "rejected"
        fields[f"{prefix}.error"] = {"type": "rejected", "message": event.reason}
    return fields


def _status_fields(event: Event) -> Doc:
    """The fields the lifecycle step of ``event`` decides."""
    if isinstance(event, JobStarted):
        return {
            "status": "running",
            "finished_at": None,
            "duration_s": None,
            "error": None,
        }
    if isinstance(event, JobAbandoned):
        return {
            "status": "abandoned",
            "finished_at": event.at,
            "error": {"type": "abandoned", "message": event.reason},
        }
    if isinstance(event, JobSucceeded):
        return {
            "status": "succeeded",
            "finished_at": event.at,
            "duration_s": event.duration_s,
            "records_read": event.records_read,
            "records_written": event.records_written,
            "inserted": event.inserted,
            "updated": event.updated,
            "version": event.version,
            "error": None,
        }
    if isinstance(event, JobFailed):
        return {
            "status": "retrying" if event.will_retry else "failed",
            "finished_at": None if event.will_retry else event.at,
            "duration_s": event.duration_s,
            "error": {"type": event.error_type, "message": event.message},
        }
    assert isinstance(event, JobRejected)
    return {
        "status": "rejected",
        "finished_at": event.at,
        "error": {"type": "rejected", "message": event.reason},
    }


@dataclass(frozen=True)
class RetentionReport:
    by_age: int
    by_count: int


class History:
    """Read and maintain the execution history."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.docs = store.db[HISTORY_COLLECTION]

    def ensure_indexes(self) -> None:
        self.docs.create_index([("job", ASCENDING), ("first_at", DESCENDING)])
        self.docs.create_index([("first_at", ASCENDING)])
        self.docs.create_index([("status", ASCENDING), ("first_at", DESCENDING)])

    def apply(self, event: Event) -> None:
        """Fold ``event`` into its run's document (idempotent, order-independent)."""
        first: Doc = {
            "$setOnInsert": {"job": event.job},
            "$max": {"attempts": event.attempt},
            "$min": {"first_at": event.at},
        }
        first["$set"] = _attempt_fields(event)
        if isinstance(event, JobStarted):
            first["$min"]["started_at"] = event.at
            first["$set"].update(trigger=event.trigger, scheduled_for=event.scheduled_for)
        try:
            self.docs.update_one({"_id": event.run_id}, first, upsert=True)
        except DuplicateKeyError:  # two first events of one run raced; retry as update
            self.docs.update_one({"_id": event.run_id}, first)
        order = step_order(event)
        # ``$not $gte`` also matches a missing order; one predicate beside ``_id``.
        self.docs.update_one(
            {"_id": event.run_id, "order": {"$not": {"$gte": order}}},
            {"$set": {"order": order, **_status_fields(event)}},
        )

    def stranded(self, started_before: datetime, limit: int = 1000) -> list[Doc]:
        """Runs still ``running`` that started before ``started_before``."""
        return list(
            self.docs.find(
                {"status": "running", "started_at": {"$lt": started_before}},
                {"job": 1, "order": 1, "attempt_log": 1, "started_at": 1},
                limit=limit,
            )
        )

    def get(self, run_id: str) -> Doc | None:
        return self.docs.find_one({"_id": run_id})

    def last_runs(self, job: str | None = None, limit: int = 20) -> list[Doc]:
        """The newest runs (of ``job``), newest first."""
        query: Doc = {"job": job} if job else {}
        return list(self.docs.find(query, sort=[("first_at", DESCENDING)], limit=limit))

    def last_success(self, job: str) -> Doc | None:
        return self.docs.find_one(
            {"job": job, "status": "succeeded"}, sort=[("first_at", DESCENDING)]
        )

    def rebuild(self, events: EventLog) -> int:
        """Recompute the history from the event log; return the number of events read."""
        self.docs.drop()
        self.ensure_indexes()
        applied = 0
        for event in events.replay():
            self.apply(event)
            applied += 1
        return applied

    def prune(
        self, max_age: timedelta, max_runs_per_job: int, now: datetime | None = None
    ) -> RetentionReport:
        """Delete runs older than ``max_age`` and all but the newest ``max_runs_per_job``
        runs of every job."""
        cutoff = (now or utcnow()) - max_age
        by_age = self.docs.delete_many({"first_at": {"$lt": cutoff}}).deleted_count
        by_count = 0
        for job in self.docs.distinct("job"):
            newest: list[Any] = list(
                self.docs.find(
                    {"job": job},
                    {"first_at": 1},
                    sort=[("first_at", DESCENDING)],
                    skip=max_runs_per_job - 1,
                    limit=1,
                )
            )
            if newest:
                by_count += self.docs.delete_many(
                    {"job": job, "first_at": {"$lt": newest[0]["first_at"]}}
                ).deleted_count
        return RetentionReport(by_age=by_age, by_count=by_count)
