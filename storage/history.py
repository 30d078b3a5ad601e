"""The execution history: one document per run in ``slurp_history``, a projection of
the event log.

``apply(event)`` folds one event into its run's document. It is idempotent (applying
an event twice changes nothing) and order-independent (a success applied before its
start gives the same document), because every field is written either by a
commutative operator (``$min``/``$max``/``$setOnInsert``) or by a conditional update
that only a later lifecycle step may win. The step order of an event is
``attempt * 10 + rank`` with rank started=1 < failed-will-retry=2 < final (succeeded,
failed, rejected)=3. ``rebuild`` recomputes the whole history from the event log.

Document::

    {_id: run_id, job, trigger, scheduled_for, status, attempts, first_at,
     started_at, finished_at, duration_s, records_read, records_written, inserted,
     updated, version, error: {type, message} | null, order}

``status``: running | retrying | succeeded | failed | rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from contracts.base import utcnow
from contracts.events import Event, JobFailed, JobRejected, JobStarted, JobSucceeded
from storage.events import EventLog
from storage.store import Doc, Store

__all__ = ["HISTORY_COLLECTION", "History", "RetentionReport", "step_order"]

HISTORY_COLLECTION = "slurp_history"


def step_order(event: Event) -> int:
    """Where ``event`` stands in its run's lifecycle; later steps win."""
    if isinstance(event, JobStarted):
        rank = 1
    elif isinstance(event, JobFailed) and event.will_retry:
        rank = 2
    else:
        rank = 3
    return event.attempt * 10 + rank


def _status_fields(event: Event) -> Doc:
    """The fields the lifecycle step of ``event`` decides."""
    if isinstance(event, JobStarted):
        return {
            "status": "running",
            "finished_at": None,
            "duration_s": None,
            "error": None,
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
        if isinstance(event, JobStarted):
            first["$min"]["started_at"] = event.at
            first["$set"] = {"trigger": event.trigger, "scheduled_for": event.scheduled_for}
        try:
            self.docs.update_one({"_id": event.run_id}, first, upsert=True)
        except DuplicateKeyError:  # two first events of one run raced; retry as update
            self.docs.update_one({"_id": event.run_id}, first)
        order = step_order(event)
        self.docs.update_one(
            {"_id": event.run_id, "$or": [{"order": {"$lt": order}}, {"order": None}]},
            {"$set": {"order": order, **_status_fields(event)}},
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
