"""Where runs send their lifecycle events.

A run never writes the event log itself: it hands its events to an ``EventSink``
(``publish_all`` hands several at once to sinks that can batch them).

- ``InlineSink`` (workers): records right away in the worker's process (event log,
  history, metrics: ``EventRecorder``), two database round trips for a batch; if
  that fails (MongoDB briefly down), it hands the events to ``QueueSink`` instead;
- ``QueueSink``: each event travels through Redis as a dramatiq message to the
  ``record_event`` actor (the event consumer), whose retries deliver it once the
  database is back; recording is idempotent by ``event_id``, so an event recorded
  inline and again from the queue counts once;
- ``DirectSink`` records in-process and raises on failure (tests, one-off runs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import dramatiq

from contracts.events import Event
from workers.recorder import EventRecorder

__all__ = [
    "EVENT_ACTOR",
    "DirectSink",
    "EventSink",
    "InlineSink",
    "QueueSink",
    "events_queue",
    "publish_all",
]

logger = logging.getLogger(__name__)

#: The actor consuming events.
EVENT_ACTOR = "record_event"


def events_queue(queue_name: str) -> str:
    """The queue carrying the events of runs from ``queue_name``."""
    return f"{queue_name}-events"


class EventSink(Protocol):
    def publish(self, event: Event, collection_type: str = "") -> None:
        """Deliver ``event`` (raises if it cannot be handed over)."""


def publish_all(sink: EventSink, events: Sequence[Event], collection_type: str = "") -> None:
    """Deliver ``events`` (of one run) in order: in one batch if ``sink`` has a
    ``publish_many``, else one by one."""
    many = getattr(sink, "publish_many", None)
    if many is not None:
        many(events, collection_type)
        return
    for event in events:
        sink.publish(event, collection_type)


class QueueSink:
    """Enqueues events for the ``record_event`` actor."""

    def __init__(self, broker: dramatiq.Broker, queue_name: str) -> None:
        self.broker = broker
        self.queue_name = events_queue(queue_name)

    def publish(self, event: Event, collection_type: str = "") -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=EVENT_ACTOR,
            args=(event.model_dump(mode="json"), collection_type),
            kwargs={},
            options={},
        )
        self.broker.enqueue(message)


class InlineSink:
    """Records events in this process; through ``fallback`` when that fails."""

    def __init__(self, recorder: EventRecorder, fallback: EventSink) -> None:
        self.recorder = recorder
        self.fallback = fallback

    def publish(self, event: Event, collection_type: str = "") -> None:
        self.publish_many([event], collection_type)

    def publish_many(self, events: Sequence[Event], collection_type: str = "") -> None:
        try:
            self.recorder.record_many(events, collection_type)
        except Exception as exc:
            logger.warning(
                "recording %d event(s) of run %s failed (%s); queueing them for the event "
                "consumer", len(events), events[0].run_id, exc,
            )  # fmt: skip
            publish_all(self.fallback, events, collection_type)


class DirectSink:
    """Records events right away in this process."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder

    def publish(self, event: Event, collection_type: str = "") -> None:
        self.recorder.record(event, collection_type)

    def publish_many(self, events: Sequence[Event], collection_type: str = "") -> None:
        self.recorder.record_many(events, collection_type)
