"""The execution history: one document per run in ``slurp_history``, a projection of
the event log.

``apply_many(events)`` folds events into their runs' documents, with one update per
run addressed by ``_id`` alone (an aggregation-pipeline update, upserting: its cost
does not grow with the history). It is idempotent (applying an event twice changes
nothing) and order-independent (a success applied before its start gives the same
document), because every field is written either commutatively (``$min``/``$max``/
``$ifNull``), by a ``$set`` that only one event of a run writes (the per-attempt
log), or under a ``$cond`` that only a later lifecycle step wins. A batch holding a run's
first start (attempt 1, delivery 1) or a rejection usually finds no document yet:
it is folded in Python by the same stages (``fold``, an evaluator of exactly the
operators the stages use) and inserted, a plain insert costing about half the
pipeline update on the embedded server; if the document exists after all, the insert
fails on its ``_id`` and the pipeline update applies the batch as usual. The step order of an
event is ``(attempt * 100 + delivery) * 10 + rank`` with rank started=1 < abandoned=2 <
failed-will-retry=3 < final (succeeded, failed, rejected, cancelled)=4: a redelivered
start of an abandoned attempt, a retry, and an attempt's own late end each supersede
what came before. ``rebuild`` recomputes the whole history from the event log.

Document::

    {_id: run_id, job, trigger, scheduled_for, requested_at, requested_by, params,
     status, attempts, first_at, force,
     started_at, finished_at, duration_s, records_read, records_written,
     inserted, updated, unchanged, removed, total, version,
     error: {type, message, guard?: {name, figures, violations}} | null, order,
     attempt_log: {"<attempt>:<delivery>": {attempt, delivery, started_at, worker,
                   ended_at, outcome, will_retry, error, abandoned_at}}}

``status``: running | retrying | succeeded | failed | rejected | abandoned | cancelled.
``attempt_log`` has one entry per start of an attempt (``delivery`` > 1: the message
came back after its worker died); ``outcome`` (succeeded | failed | rejected |
cancelled) is set by the attempt's end, ``abandoned_at`` when it was found without a live worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError
from pymongo.operations import InsertOne, UpdateOne

from contracts.base import utcnow
from contracts.events import (
    Event,
    JobAbandoned,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)
from storage.events import EventLog
from storage.records import MISSING, get_path
from storage.store import Doc, Store

__all__ = [
    "HISTORY_COLLECTION",
    "History",
    "RetentionReport",
    "RunWrite",
    "attempt_key",
    "fold",
    "plan",
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
        fields[f"{prefix}.error"] = _error(event)
    elif isinstance(event, JobCancelled):
        fields[f"{prefix}.ended_at"] = event.at
        fields[f"{prefix}.outcome"] = "cancelled"
        fields[f"{prefix}.error"] = _cancel_error(event)
    else:
        assert isinstance(event, JobRejected)
        fields[f"{prefix}.ended_at"] = event.at
        fields[f"{prefix}.outcome"] = "rejected"
        fields[f"{prefix}.error"] = {"type": "rejected", "message": event.reason}
    return fields


def _stage(event: Event) -> Doc:
    """The pipeline stage folding ``event`` into its run's document.

    Commutative fields use ``$min``/``$max``/``$ifNull``; the attempt log's fields of
    this event are written as they are; the lifecycle fields (``order``, ``status``,
    ...) only if the event is a later step than the one recorded (every ``$cond`` of
    one stage sees the document as it was before the stage)."""
    order = step_order(event)
    later: Doc = {"$lt": [{"$ifNull": ["$order", -1]}, order]}
    fields: Doc = {
        "job": {"$ifNull": ["$job", {"$literal": event.job}]},
        "attempts": {"$max": ["$attempts", event.attempt]},
        "first_at": {"$min": ["$first_at", {"$literal": event.at}]},
    }
    fields.update((path, {"$literal": value}) for path, value in _attempt_fields(event).items())
    if isinstance(event, JobStarted):
        fields["started_at"] = {"$min": ["$started_at", {"$literal": event.at}]}
        fields["trigger"] = {"$literal": event.trigger}
        fields["scheduled_for"] = {"$literal": event.scheduled_for}
        fields["requested_at"] = {"$literal": event.requested_at}
        fields["requested_by"] = {"$literal": event.requested_by}
        fields["params"] = {"$literal": event.params}
        fields["force"] = {"$literal": event.force}
    for name, value in {"order": order, **_status_fields(event)}.items():
        fields[name] = {"$cond": [later, {"$literal": value}, f"${name}"]}
    return {"$set": fields}


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
            "unchanged": event.unchanged,
            "removed": event.removed,
            "total": event.total,
            "version": event.version,
            "error": None,
        }
    if isinstance(event, JobFailed):
        return {
            "status": "retrying" if event.will_retry else "failed",
            "finished_at": None if event.will_retry else event.at,
            "duration_s": event.duration_s,
            "error": _error(event),
        }
    if isinstance(event, JobCancelled):
        return {
            "status": "cancelled",
            "finished_at": event.at,
            "duration_s": event.duration_s,
            "error": _cancel_error(event),
        }
    assert isinstance(event, JobRejected)
    return {
        "status": "rejected",
        "finished_at": event.at,
        "error": {"type": "rejected", "message": event.reason},
    }


def _error(event: JobFailed) -> Doc:
    """The ``error`` of a failed attempt; with ``guard`` (name, figures, violations)
    when a guard failed it."""
    error: Doc = {"type": event.error_type, "message": event.message}
    if event.guard is not None:
        error["guard"] = event.guard.model_dump(mode="json")
    return error


def _cancel_error(event: JobCancelled) -> Doc:
    who = f" by {event.requested_by}" if event.requested_by else ""
    when = "before it started" if event.stage == "queued" else "while it ran; nothing was committed"
    return {"type": "cancelled", "message": f"cancelled{who} {when}"}


def fold(run_id: str, stages: Sequence[Doc]) -> Doc:
    """The document the pipeline ``stages`` make of a run without one (what
    ``update_one({_id: run_id}, stages, upsert=True)`` would store): each stage's
    expressions evaluated against the document as it was before the stage, with
    MongoDB's semantics of the operators ``_stage`` uses (``$literal``, ``$ifNull``,
    ``$min``/``$max`` ignoring null and missing, ``$lt``, ``$cond``, field paths);
    any other operator raises ``ValueError``."""
    doc: Doc = {"_id": run_id}
    for stage in stages:
        (op, fields), *rest = stage.items()
        if op != "$set" or rest:
            raise ValueError(f"fold handles $set stages only, not {list(stage)}")
        values = [(path, _evaluate(expr, doc)) for path, expr in fields.items()]
        for path, value in values:
            if value is not MISSING:
                _set_path(doc, path, value)
    return doc


def _evaluate(expr: Any, doc: Doc) -> Any:
    if isinstance(expr, str) and expr.startswith("$"):
        return get_path(doc, expr[1:])
    if not isinstance(expr, dict):
        return expr
    if len(expr) != 1 or not next(iter(expr)).startswith("$"):
        return {key: _evaluate(value, doc) for key, value in expr.items()}
    ((op, arg),) = expr.items()
    if op == "$literal":
        return arg
    args = [_evaluate(item, doc) for item in arg]
    if op == "$ifNull":
        return next((a for a in args[:-1] if a is not MISSING and a is not None), args[-1])
    if op in ("$min", "$max"):
        present = [a for a in args if a is not MISSING and a is not None]
        return (min if op == "$min" else max)(present) if present else None
    if op == "$lt":
        return args[0] < args[1]
    if op == "$cond":
        return args[1] if args[0] else args[2]
    raise ValueError(f"fold does not evaluate {op}")


def _set_path(doc: Doc, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = doc.get(part)
        if not isinstance(child, dict):
            child = doc[part] = {}
        doc = child
    doc[last] = value


def _opens_run(events: Sequence[Event]) -> bool:
    """Does this batch hold the first event a run can have (no document yet, as a
    rule)?"""
    return any(
        isinstance(e, JobRejected) or (isinstance(e, JobStarted) and e.attempt == e.delivery == 1)
        for e in events
    )


@dataclass(frozen=True)
class RunWrite:
    """The write folding a batch of one run's events into its document: an insert of
    ``document`` (the batch folded in Python) when the batch opens the run, a plain
    insert costing about half the pipeline update on the embedded server; else, or if
    that insert finds the document there after all (duplicate ``_id``), the pipeline
    update of ``stages`` (``History.update``)."""

    run_id: str
    stages: list[Doc]
    document: Doc | None

    def first_op(self, namespace: str) -> InsertOne[Doc] | UpdateOne:
        """The first write to try, for a multi-collection bulk write."""
        if self.document is not None:
            return InsertOne(self.document, namespace=namespace)
        return UpdateOne({"_id": self.run_id}, self.stages, upsert=True, namespace=namespace)


def plan(events: Sequence[Event]) -> list[RunWrite]:
    """One ``RunWrite`` per run of ``events``, in order of first appearance."""
    by_run: dict[str, list[Event]] = {}
    for event in events:
        by_run.setdefault(event.run_id, []).append(event)
    writes = []
    for run_id, run_events in by_run.items():
        stages = [_stage(event) for event in run_events]
        document = fold(run_id, stages) if _opens_run(run_events) else None
        writes.append(RunWrite(run_id, stages, document))
    return writes


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
        self.apply_many([event])

    def apply_many(self, events: Sequence[Event]) -> None:
        """Fold ``events`` into their runs' documents: one write per run, addressed by
        ``_id`` alone, so its cost does not grow with the history (``RunWrite``)."""
        self.apply_writes(plan(events))

    def apply_writes(self, writes: Sequence[RunWrite]) -> None:
        """``apply_many`` of the writes ``plan`` made of a batch."""
        for write in writes:
            if write.document is not None:
                try:
                    self.docs.insert_one(write.document)
                    continue
                except DuplicateKeyError:  # the run has a document: update it
                    pass
            self.update(write)

    def update(self, write: RunWrite) -> None:
        """``write``'s pipeline update (upserting): after its insert found the run's
        document there, or for a batch that does not open its run."""
        try:
            self.docs.update_one({"_id": write.run_id}, write.stages, upsert=True)
        except DuplicateKeyError:  # two first events of one run raced; retry as update
            self.docs.update_one({"_id": write.run_id}, write.stages)

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
