"""In-memory counters of one ticker: emissions, lost claims, skipped slots, tick lag.

``TickerStats`` is both the store and the hook point: the ticker calls its
``record_*`` methods; to export metrics, subclass it and extend those methods (call
``super()`` first), or read the attributes / ``snapshot()`` from a collector. Every
method is thread-safe and cheap; none of them does I/O.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Any

__all__ = ["TickerStats"]


class TickerStats:
    """Counters since the ticker started. Lag = emission time - slot time, in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ticks_total = 0
        self.emissions_total = 0
        self.emissions_by_job: Counter[str] = Counter()
        self.claims_lost_total = 0  # due slots another ticker (or an earlier pass) emitted
        self.misfires_skipped_total = 0  # late-slot ranges not fired (see ticker.cron)
        self.errors_total = 0
        self.invalid_jobs = 0  # stored definitions that failed validation at the last reload
        self.jobs_scheduled = 0  # jobs with a schedule, not paused, at the last reload
        self.lag_last_s: float | None = None
        self.lag_max_s = 0.0
        self.lag_sum_s = 0.0
        self.last_tick_at: datetime | None = None

    def record_emission(self, job: str, slot: datetime, lag_s: float) -> None:
        """This ticker enqueued the run of ``job`` for ``slot``, ``lag_s`` after the slot."""
        with self._lock:
            self.emissions_total += 1
            self.emissions_by_job[job] += 1
            self.lag_last_s = lag_s
            self.lag_max_s = max(self.lag_max_s, lag_s)
            self.lag_sum_s += lag_s

    def record_lost_claim(self, job: str, slot: datetime) -> None:
        """The slot was due, but its claim already existed: someone else emitted it."""
        with self._lock:
            self.claims_lost_total += 1

    def record_skipped(self, job: str, first: datetime, last: datetime) -> None:
        """Late slots ``first``..``last`` of ``job`` were not fired (misfire policy)."""
        with self._lock:
            self.misfires_skipped_total += 1

    def record_error(self, job: str | None, error: BaseException) -> None:
        """A pass over ``job`` (None: the whole tick) failed; the loop carries on."""
        with self._lock:
            self.errors_total += 1

    def record_reload(self, jobs_scheduled: int, invalid_jobs: int) -> None:
        """Definitions were re-read from the registry."""
        with self._lock:
            self.jobs_scheduled = jobs_scheduled
            self.invalid_jobs = invalid_jobs

    def record_tick(self, at: datetime) -> None:
        """One pass over every job finished at (clock time) ``at``."""
        with self._lock:
            self.ticks_total += 1
            self.last_tick_at = at

    @property
    def lag_mean_s(self) -> float | None:
        with self._lock:
            return self.lag_sum_s / self.emissions_total if self.emissions_total else None

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (for logs, health checks, collectors)."""
        with self._lock:
            return {
                "ticks_total": self.ticks_total,
                "emissions_total": self.emissions_total,
                "emissions_by_job": dict(self.emissions_by_job),
                "claims_lost_total": self.claims_lost_total,
                "misfires_skipped_total": self.misfires_skipped_total,
                "errors_total": self.errors_total,
                "invalid_jobs": self.invalid_jobs,
                "jobs_scheduled": self.jobs_scheduled,
                "lag_last_s": self.lag_last_s,
                "lag_max_s": self.lag_max_s,
                "lag_sum_s": self.lag_sum_s,
                "last_tick_at": self.last_tick_at,
            }
