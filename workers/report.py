"""``AttemptReport``: the lifecycle events of one attempt, handed to the event sink.

A run's ``JobStarted`` is what makes it visible as ``running`` (history, console,
metrics). Recording it is worth its two database round trips for a run anyone could
watch, not for one that ends a few milliseconds later: so the start is held back for
``delay_s`` and recorded then by a timer if the attempt is still going; an attempt
that ends first records its start and its end together, in one batch. Either way the
event log ends up with both events, the start carrying its own time. Progress is
published only once the start is (``visible``; ``on_visible`` then publishes what
was made so far). A start whose recording fails in the timer is kept and recorded
with the end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from contracts.events import Event
from workers.events import EventSink, publish_all
from workers.timers import Timer, process_timers

__all__ = ["DEFAULT_START_REPORT_DELAY_S", "AttemptReport"]

logger = logging.getLogger(__name__)

#: How long an attempt runs before its start is recorded on its own.
DEFAULT_START_REPORT_DELAY_S = 0.5


class AttemptReport:
    def __init__(
        self,
        sink: EventSink,
        collection_type: str,
        delay_s: float,
        on_visible: Callable[[], None] | None = None,
    ) -> None:
        """``on_visible`` is called once the start is recorded on its own (e.g. to
        publish the progress made so far); it must not raise."""
        self.on_visible = on_visible
        self.sink = sink
        self.collection_type = collection_type
        self.delay_s = delay_s
        #: Set once the start is recorded (progress may be published from then on).
        self.visible = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._timer: Timer | None = None

    def start(self, event: Event) -> None:
        """Hold ``event`` (the attempt's ``JobStarted``) back for ``delay_s``."""
        self._pending = [event]
        if self.delay_s <= 0:
            self.flush()
            return
        self._timer = process_timers().after(self.delay_s, self._flush_in_background)

    def flush(self) -> None:
        """Record what is held back now (raises if the sink does)."""
        with self._lock:
            if self._pending:
                publish_all(self.sink, self._pending, self.collection_type)
                self._pending = []
            if self.visible.is_set():
                return
            self.visible.set()
        if self.on_visible is not None:
            self.on_visible()

    def end(self, event: Event) -> None:
        """Record the attempt's last event, with its start if that is still held."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            events, self._pending = [*self._pending, event], []
            publish_all(self.sink, events, self.collection_type)

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        except Exception:  # kept: recorded with the end
            logger.exception("recording the start of a run failed; it is recorded at its end")
