"""The event log: every lifecycle event of every run, append-only, in ``slurp_events``.

It is the source of truth the execution history (``storage.history``) and the metrics
are built from. ``append`` is idempotent: an event's ``event_id`` is its ``_id``, so a
retried append (e.g. after a lost acknowledgement) stores it once. Events are never
updated; retention removes whole old events only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from contracts.events import EVENT_ADAPTER, Event
from storage.store import Doc, Store

__all__ = ["DUPLICATE_KEY", "EVENTS_COLLECTION", "EventLog", "as_doc"]

EVENTS_COLLECTION = "slurp_events"
#: MongoDB's error code of a duplicate key (here: an event appended again).
DUPLICATE_KEY = 11000


def as_doc(event: Event) -> Doc:
    """``event`` as stored: its ``event_id`` is the ``_id``."""
    return {"_id": event.event_id, **event.model_dump(exclude={"event_id"})}


class EventLog:
    """Append and read run events."""

    def __init__(self, store: Store) -> None:
        # The source of truth: an acknowledged event is in the journal of a majority of
        # the replica set, so no failover rolls it back (Store.durable).
        self.docs = store.durable(EVENTS_COLLECTION)

    def ensure_indexes(self) -> None:
        self.docs.create_index([("run_id", ASCENDING), ("at", ASCENDING)])
        self.docs.create_index([("at", ASCENDING)])

    def append(self, event: Event) -> bool:
        """Store ``event``; False if it was stored already (same ``event_id``)."""
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[Event]) -> list[bool]:
        """Store ``events`` in one round trip; for each, False if it was stored already
        (same ``event_id``). Raises on any other failure."""
        docs = [as_doc(event) for event in events]
        try:
            self.docs.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            stored = {int(error["index"]) for error in errors}
            return [index not in stored for index in range(len(docs))]
        return [True] * len(docs)

    def for_run(self, run_id: str) -> list[Event]:
        return [self._decode(doc) for doc in self.docs.find({"run_id": run_id}, sort=[("at", 1)])]

    def replay(self, since: datetime | None = None) -> Iterator[Event]:
        """Every event (newer than ``since``), oldest first, streamed."""
        query: Doc = {"at": {"$gte": since}} if since else {}
        for doc in self.docs.find(query, sort=[("at", 1), ("_id", 1)], batch_size=1000):
            yield self._decode(doc)

    def count(self) -> int:
        return self.docs.estimated_document_count()

    def delete_before(self, cutoff: datetime) -> int:
        """Retention: remove events older than ``cutoff``; return how many."""
        return self.docs.delete_many({"at": {"$lt": cutoff}}).deleted_count

    @staticmethod
    def _decode(doc: Doc) -> Event:
        doc = dict(doc)
        doc["event_id"] = doc.pop("_id")
        return EVENT_ADAPTER.validate_python(doc)
