"""Running jobs inside the current process, without Redis (``slurp dev``, ``slurp run``
with no broker configured): same ``Runner``, in-process coordination, events recorded
directly."""

from __future__ import annotations

import os

from datasources.runtime import Runtime
from slurp.settings import Settings
from storage.reader import CollectionReader
from storage.store import Store
from workers.coordination import LocalCoordination
from workers.events import DirectSink, EventSink
from workers.metrics import RunMetrics
from workers.recorder import EventRecorder
from workers.runner import Runner

__all__ = ["local_runner"]


def local_runner(
    settings: Settings,
    store: Store,
    metrics: RunMetrics | None = None,
    events: EventSink | None = None,
    coordination: LocalCoordination | None = None,
    can_retry: bool = True,
) -> Runner:
    """A runner for this process. ``can_retry=False`` for one-off runs (``slurp run``
    without a broker, ``slurp dev --once``): nothing would deliver a retry, so a
    failed attempt ends the run as ``failed``."""
    recorder = EventRecorder(store, metrics)
    recorder.ensure_indexes()
    return Runner(
        settings,
        store,
        coordination or LocalCoordination(),
        events or DirectSink(recorder),
        Runtime.from_settings(settings, collections=CollectionReader(store)),
        f"local:{os.getpid()}",
        can_retry=can_retry,
    )
