"""Where runs send their lifecycle events.

A run never writes the event log itself: it hands each event to an ``EventSink``.
In a worker the sink is ``QueueSink``: the event travels through Redis as a dramatiq
message to the ``record_event`` actor (the event consumer), which appends it to the
event log and updates the history and the metrics (``EventRecorder``). If MongoDB is
briefly down, events wait in Redis and the consumer's retries deliver them later.
``DirectSink`` records in-process (tests, one-off manual runs).
"""

from __future__ import annotations

from typing import Any, Protocol

import dramatiq

from contracts.events import Event
from workers.recorder import EventRecorder

__all__ = ["EVENT_ACTOR", "DirectSink", "EventSink", "QueueSink", "events_queue"]

#: The actor consuming events.
EVENT_ACTOR = "record_event"


def events_queue(queue_name: str) -> str:
    """The queue carrying the events of runs from ``queue_name``."""
    return f"{queue_name}-events"


class EventSink(Protocol):
    def publish(self, event: Event, collection_type: str = "") -> None:
        """Deliver ``event`` (raises if it cannot be handed over)."""


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


class DirectSink:
    """Records events right away in this process."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder

    def publish(self, event: Event, collection_type: str = "") -> None:
        self.recorder.record(event, collection_type)
