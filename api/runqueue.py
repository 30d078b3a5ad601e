"""Where the API hands the runs it is asked for, and where it reads their live progress.

``RunQueue`` is the small interface the JSON API (``POST /api/jobs/{name}/runs``) and
the console (Run now, the run page's progress) share:

- ``send(run)`` hands a ``RunJob`` to the workers and returns its message id; it
  raises ``QueueUnavailable`` when the queue cannot take it now;
- ``progress(run_id)`` is the run's latest progress counters as its worker published
  them (``<datasource>.items``, ``<datasource>.pages``, ...); empty when unknown.
- ``cancel(run_id, by)`` marks the run cancelled (``workers.coordination``): a queued
  run is skipped when its message is taken, a running one stops at its next check;
  refused (``committing``, ``done``) once its commit has begun or it succeeded.

Implementations: ``RedisRunQueue`` (dramatiq's Redis broker, what ``slurp api`` and
``slurp dev`` with ``SLURP_REDIS_URL`` use: the message is the wire format of
``contracts.publish``, progress is the ``slurp:progress:<run_id>`` hash the workers
write) and ``workers.local.LocalRunQueue`` (``slurp dev`` without Redis: its
in-process broker and coordination). An app without either answers 503 to a run.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Protocol

import redis
from fastapi import FastAPI

from api.errors import ServiceUnavailable
from contracts.messages import RunJob
from contracts.publish import DEFAULT_QUEUE, publish_run_job
from workers.coordination import CancelAnswer, RedisCoordination

if TYPE_CHECKING:
    from api.context import ApiContext

__all__ = [
    "PROGRESS_KEY",
    "QueueUnavailable",
    "RedisRunQueue",
    "RunQueue",
    "attach_queue",
    "cancel_run",
    "queue_run",
]

log = logging.getLogger(__name__)

#: Redis hash of a run's progress counters, written by ``RedisCoordination``.
PROGRESS_KEY = "slurp:progress:{run_id}"
#: Largest number of progress fields read (one per datasource and counter).
MAX_PROGRESS_FIELDS = 1000


class QueueUnavailable(Exception):
    """The queue cannot take a run now (broker down, shutting down)."""


class RunQueue(Protocol):
    def send(self, run: RunJob) -> str:
        """Hand ``run`` to the workers; its message id. ``QueueUnavailable`` if it cannot."""

    def progress(self, run_id: str) -> dict[str, int]:
        """The run's latest progress counters; empty if none were published."""

    def cancel(self, run_id: str, by: str) -> CancelAnswer:
        """Cancel ``run_id`` (see the module docstring); ``QueueUnavailable`` if the
        coordination store cannot be reached."""


class RedisRunQueue:
    """dramatiq's Redis broker: ``contracts.publish`` and the workers' progress hashes."""

    def __init__(self, client: redis.Redis, queue_name: str = DEFAULT_QUEUE) -> None:
        self.client = client
        self.queue_name = queue_name

    def send(self, run: RunJob) -> str:
        try:
            return publish_run_job(self.client, run, self.queue_name)
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc

    def cancel(self, run_id: str, by: str) -> CancelAnswer:
        try:
            return RedisCoordination(self.client).request_cancel(run_id, by)
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc

    def progress(self, run_id: str) -> dict[str, int]:
        try:
            raw = self.client.hgetall(PROGRESS_KEY.format(run_id=run_id))
        except redis.RedisError as exc:
            log.warning("cannot read the progress of run %s: %s", run_id, exc)
            return {}
        counts: dict[str, int] = {}
        for key, value in list(raw.items())[:MAX_PROGRESS_FIELDS]:
            try:
                counts[_text(key)] = int(value)
            except ValueError:
                continue
        return counts


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def queue_run(context: ApiContext, run: RunJob) -> str:
    """Send ``run`` through the app's queue; its message id. ``ServiceUnavailable``
    (503) when the app has no queue or the queue is down."""
    queue = context.run_queue()
    if queue is None:
        raise ServiceUnavailable(
            "runs cannot be queued: this API server has no Redis broker (set SLURP_REDIS_URL)"
        )
    try:
        return queue.send(run)
    except QueueUnavailable as exc:
        log.warning("cannot publish run of %s: %s", run.job, exc)
        raise ServiceUnavailable("the queue is unavailable; try again later") from None


def cancel_run(context: ApiContext, run_id: str, by: str) -> CancelAnswer:
    """Cancel ``run_id`` through the app's queue (``ServiceUnavailable`` as
    ``queue_run``)."""
    queue = context.run_queue()
    if queue is None:
        raise ServiceUnavailable(
            "runs cannot be cancelled: this API server has no Redis broker (set SLURP_REDIS_URL)"
        )
    try:
        return queue.cancel(run_id, by)
    except QueueUnavailable as exc:
        log.warning("cannot cancel run %s: %s", run_id, exc)
        raise ServiceUnavailable("the queue is unavailable; try again later") from None


def attach_queue(app: FastAPI, queue: RunQueue) -> None:
    """Make ``app`` send runs to ``queue`` (``slurp dev``: its in-process broker)."""
    app.state.slurp = dataclasses.replace(app.state.slurp, queue=queue)
