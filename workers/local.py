"""Running jobs inside the current process, without Redis (``slurp dev``, ``slurp run``
with no broker configured): same ``Runner``, in-process coordination, events recorded
directly.

- ``local_runner``: a ``Runner`` on in-process coordination;
- ``LocalRunQueue``: the ``api.runqueue.RunQueue`` of ``slurp dev`` without Redis, so
  the API and the console it serves hand runs to its in-process broker and read their
  progress from its coordination;
- ``add_import_paths``: the folders ``slurp dev`` lets slurper modules import from
  (the allow-list, ``SLURP_SLURPER_MODULES``, still decides what may be imported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contracts.messages import RunJob
from datasources.runtime import Runtime
from slurp.settings import Settings
from storage.reader import CollectionReader
from storage.store import Store
from workers.coordination import CancelAnswer, LocalCoordination
from workers.events import DirectSink, EventSink
from workers.metrics import RunMetrics
from workers.recorder import EventRecorder
from workers.runner import Runner

__all__ = ["LocalRunQueue", "add_import_paths", "local_runner"]


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


class LocalRunQueue:
    """Runs go to the ``run_job`` actor of an in-process broker (dramatiq's
    ``StubBroker``); progress is what the runs published to ``coordination``."""

    def __init__(self, actor: Any, coordination: LocalCoordination) -> None:
        self.actor = actor
        self.coordination = coordination

    def send(self, run: RunJob) -> str:
        message = self.actor.send(run.model_dump(mode="json"))
        return str(message.message_id)

    def cancel(self, run_id: str, by: str) -> CancelAnswer:
        return self.coordination.request_cancel(run_id, by)

    def progress(self, run_id: str) -> dict[str, int]:
        with self.coordination.lock:
            published = self.coordination.progress.get(run_id)
        return dict(published[1]) if published is not None else {}


def add_import_paths(folders: Iterable[Path]) -> list[str]:
    """Put ``folders`` (resolved, in order) at the front of ``sys.path`` unless they are
    on it already; return the ones added. A console script's ``sys.path`` holds its
    own bin folder, not the working directory, so without this a slurper module next
    to the job file would need ``PYTHONPATH``."""
    added: list[str] = []
    for folder in folders:
        path = str(folder.resolve())
        if path not in sys.path and path not in added:
            added.append(path)
    sys.path[:0] = added
    return added
