"""Recording a run's lifecycle: event log first, then its projections.

The event log is the source of truth; the history and the metrics are projections.
``record`` appends the event (idempotent by ``event_id``), folds it into the history,
then tells the metrics. A failing projection is logged and does not break the run:
``slurp history rebuild`` recomputes the history from the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from contracts.events import Event
from storage.events import EventLog
from storage.history import History
from storage.store import Store
from workers.metrics import RunMetrics

__all__ = ["EventRecorder"]

logger = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, store: Store, metrics: RunMetrics | None = None) -> None:
        self.log = EventLog(store)
        self.history = History(store)
        self.metrics = metrics

    def ensure_indexes(self) -> None:
        self.log.ensure_indexes()
        self.history.ensure_indexes()

    def record(self, event: Event, collection_type: str = "") -> None:
        """Append ``event`` to the log (raises if the database is unreachable), then
        update the history and metrics (never raises)."""
        self.record_many([event], collection_type)

    def record_many(self, events: Sequence[Event], collection_type: str = "") -> None:
        """``record`` for several events in two round trips (one per run beyond the
        first): the log append, then one history update."""
        fresh = self.log.append_many(events)
        try:
            self.history.apply_many(events)
        except Exception:
            logger.exception("history update for run %s failed; rebuild it", events[0].run_id)
        for event, new in zip(events, fresh, strict=True):
            if new and self.metrics is not None:  # a re-appended event was counted already
                self.metrics.observe(event, collection_type)
            logger.info(
                "run %s of job %r: %s (attempt %d)",
                event.run_id, event.job, event.kind, event.attempt,
            )  # fmt: skip
