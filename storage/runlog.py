"""Recording a batch of lifecycle events: the event log and the history together.

``RunLog.record`` appends the events (``storage.events``) and folds them into their
runs' history documents (``storage.history``): on MongoDB 8.0+ in one round trip, a
client-level ``bulkWrite`` holding the events' inserts and each run's first history
write (``Store.write_across``: one write command and one journal wait where there
were two); on older servers, and on SecantusDB (``Store.takes_durable_bulk_write``),
the event log's insert, then the history's writes. Either way the semantics are those of the two
steps: an event already in the log is reported as not fresh (it was counted), a
failure to append raises (the caller hands the events to the event queue, which
records them again: both steps are idempotent), and a failing history write is
logged, never raised (``slurp history rebuild`` recomputes the history).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pymongo.errors import ClientBulkWriteException
from pymongo.operations import InsertOne, UpdateOne

from contracts.events import Event
from storage.events import DUPLICATE_KEY, EVENTS_COLLECTION, EventLog, as_doc
from storage.history import HISTORY_COLLECTION, History, RunWrite, plan
from storage.store import Doc, Store

__all__ = ["RunLog"]

logger = logging.getLogger(__name__)


class RunLog:
    """The event log and the history, written together."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = EventLog(store)
        self.history = History(store)

    def ensure_indexes(self) -> None:
        self.events.ensure_indexes()
        self.history.ensure_indexes()

    def record(self, events: Sequence[Event]) -> list[bool]:
        """Append ``events`` and fold them into the history; for each event, False if
        the log had it already. Raises if the events could not be appended."""
        writes = plan(events)
        if not self.store.takes_durable_bulk_write():
            return self._in_two_steps(events, writes)
        ops: list[InsertOne[Doc] | UpdateOne] = [
            InsertOne(as_doc(event), namespace=self.store.namespace(EVENTS_COLLECTION))
            for event in events
        ]
        history = self.store.namespace(HISTORY_COLLECTION)
        ops += [write.first_op(history) for write in writes]
        try:
            self.store.write_across(ops)
        except ClientBulkWriteException as exc:
            return self._after_errors(exc, len(events), writes)
        return [True] * len(events)

    def _in_two_steps(self, events: Sequence[Event], writes: list[RunWrite]) -> list[bool]:
        fresh = self.events.append_many(events)
        try:
            self.history.apply_writes(writes)
        except Exception:
            logger.exception("history update for run %s failed; rebuild it", events[0].run_id)
        return fresh

    def _after_errors(
        self, exc: ClientBulkWriteException, appended: int, writes: list[RunWrite]
    ) -> list[bool]:
        """The ops of a ``record`` that failed: duplicate events are not fresh, any
        other failure to append raises; a history write that found the run's document
        there (its insert, or an upsert racing another) is redone as the update, any
        other failing history write is logged."""
        if exc.error is not None or exc.write_concern_errors:
            raise exc
        # Typed as WriteError, given as the server's documents ({idx, code, errmsg}).
        errors: list[Any] = list(exc.write_errors or [])
        failed = {int(error["idx"]): error for error in errors}
        for index in range(appended):
            error = failed.get(index)
            if error is not None and error.get("code") != DUPLICATE_KEY:
                raise exc
        for offset, write in enumerate(writes):
            error = failed.get(appended + offset)
            if error is None:
                continue
            try:
                if error.get("code") != DUPLICATE_KEY:
                    raise RuntimeError(f"history write failed: {error.get('errmsg', error)}")
                self.history.update(write)  # the run had a document already (or just got one)
            except Exception:
                logger.exception("history update for run %s failed; rebuild it", write.run_id)
        return [index not in failed for index in range(appended)]
