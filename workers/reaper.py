"""Resolving history entries that say ``running`` although no worker runs them.

A worker that dies mid-run (SIGKILL, out of memory, host lost) reports nothing: its
run's history entry stays ``running``. Dramatiq redelivers the message once the
worker's heartbeat times out, and the redelivered start supersedes the entry, but a
message can also be gone for good (a consumer that lost it, a flushed Redis) or wait
behind a long queue. The ``Reaper`` makes the history honest either way: a run that
has been ``running`` for longer than the lease TTL while its job's lease is not held
*by that run* has no live worker (a live one renews its lease every ttl/3), so it is
recorded as ``JobAbandoned``. The event id is derived from (run, attempt, delivery),
so any number of reapers (one per worker process) record it once; a later start of
the attempt, or the attempt's own late end, supersedes it in the history.

Cost of one pass: one indexed history query (status, started_at) plus one Redis
``GET`` per stranded run.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

from contracts.base import utcnow
from contracts.events import JobAbandoned
from storage.history import History, attempt_key, step_of
from workers.coordination import Coordination
from workers.events import EventSink

__all__ = ["REAP_INTERVAL_S", "Reaper"]

logger = logging.getLogger(__name__)

#: How often each worker process looks for stranded runs.
REAP_INTERVAL_S = 30.0
_NAMESPACE = uuid.UUID("0b6f3d52-3c1e-5a43-9e55-7b1f0f4b2a10")


class Reaper:
    def __init__(
        self,
        history: History,
        coordination: Coordination,
        events: EventSink,
        grace_s: float,
    ) -> None:
        """``grace_s``: how long a run may say ``running`` without holding its job's
        lease before it counts as abandoned (at least the lease TTL)."""
        self.history = history
        self.coord = coordination
        self.events = events
        self.grace_s = grace_s

    def reap(self) -> int:
        """One pass; returns how many runs were recorded as abandoned."""
        cutoff = utcnow() - timedelta(seconds=self.grace_s)
        abandoned = 0
        for doc in self.history.stranded(started_before=cutoff):
            run_id, job = str(doc["_id"]), str(doc.get("job", ""))
            if self.coord.lease_run(job) == run_id:
                continue  # its worker is alive and renewing
            attempt, delivery = step_of(int(doc.get("order") or 1011))
            entry = (doc.get("attempt_log") or {}).get(attempt_key(attempt, delivery)) or {}
            key = f"{run_id}:{attempt}:{delivery}:abandoned"
            reason = (
                f"worker {entry.get('worker') or '?'} stopped reporting: attempt {attempt} "
                f"holds no lease {self.grace_s:g} s after it started (the worker died or "
                "lost Redis); a redelivered message starts it again"
            )
            try:
                self.events.publish(
                    JobAbandoned(
                        event_id=str(uuid.uuid5(_NAMESPACE, key)),
                        run_id=run_id,
                        job=job,
                        attempt=attempt,
                        delivery=delivery,
                        reason=reason,
                    )
                )
            except Exception:
                logger.exception("recording run %s as abandoned failed", run_id)
                continue
            logger.warning("run %s of job %r: %s", run_id, job, reason)
            abandoned += 1
        return abandoned

    def run_every(self, interval_s: float, stop: threading.Event) -> None:
        """Reap every ``interval_s`` until ``stop`` is set; never raises."""
        while not stop.wait(interval_s):
            try:
                self.reap()
            except Exception:
                logger.exception("looking for abandoned runs failed; trying again later")
