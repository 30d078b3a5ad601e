"""Recording a run's lifecycle: event log first, then its projections.

The event log is the source of truth; the history and the metrics are projections.
``record`` appends the event (idempotent by ``event_id``) and folds it into the
history (``storage.runlog``: one round trip), then tells the metrics. A failing
projection is logged and does not break the run: ``slurp history rebuild``
recomputes the history from the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from contracts.events import Event
from storage.runlog import RunLog
from storage.store import Store
from workers.metrics import RunMetrics

__all__ = ["EventRecorder"]

logger = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, store: Store, metrics: RunMetrics | None = None) -> None:
        self.log = RunLog(store)
        self.metrics = metrics

    def ensure_indexes(self) -> None:
        self.log.ensure_indexes()

    def record(self, event: Event, collection_type: str = "") -> None:
        """Append ``event`` to the log (raises if the database is unreachable), then
        update the history and metrics (never raises)."""
        self.record_many([event], collection_type)

    def record_many(self, events: Sequence[Event], collection_type: str = "") -> None:
        """``record`` for several events: one round trip on MongoDB 8.0+ (``RunLog``)."""
        fresh = self.log.record(events)
        for event, new in zip(events, fresh, strict=True):
            if new and self.metrics is not None:  # a re-appended event was counted already
                self.metrics.observe(event, collection_type)
            logger.info(
                "run %s of job %r: %s (attempt %d)",
                event.run_id, event.job, event.kind, event.attempt,
            )  # fmt: skip
