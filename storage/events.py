"""The event log: every lifecycle event of every run, append-only, in ``slurp_events``.

It is the source of truth the execution history (``storage.history``) and the metrics
are built from. ``append`` is idempotent: an event's ``event_id`` is its ``_id``, so a
retried append (e.g. after a lost acknowledgement) stores it once. Events are never
updated; retention removes whole old events only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pydantic import TypeAdapter
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from contracts.events import Event
from storage.store import DURABLE, Doc, Store

__all__ = ["EVENTS_COLLECTION", "EventLog"]

EVENTS_COLLECTION = "slurp_events"
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


class EventLog:
    """Append and read run events."""

    def __init__(self, store: Store) -> None:
        # The source of truth: an acknowledged event is in the journal.
        self.docs = store.db.get_collection(EVENTS_COLLECTION, write_concern=DURABLE)

    def ensure_indexes(self) -> None:
        self.docs.create_index([("run_id", ASCENDING), ("at", ASCENDING)])
        self.docs.create_index([("at", ASCENDING)])

    def append(self, event: Event) -> bool:
        """Store ``event``; False if it was stored already (same ``event_id``)."""
        doc: Doc = {"_id": event.event_id, **event.model_dump(exclude={"event_id"})}
        try:
            self.docs.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

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
        return _EVENT.validate_python(doc)
