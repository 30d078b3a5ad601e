"""Prometheus metrics of runs, fed by the same events as the event log.

Inside a dramatiq worker every process writes its samples to the shared
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client multiprocess mode, set up by
dramatiq's Prometheus middleware at process boot); dramatiq's exposition server sums
them on one ``/metrics`` port per host. Across hosts Prometheus sums the instances.
Metrics are created when ``RunMetrics`` is built (after process boot), never at import.

Names follow Prometheus conventions: prefix ``slurp_``, base units, low-cardinality
labels (``slurp_job``, ``status``, ``collection_type``). The job's label is
``slurp_job``, never ``job``: Prometheus gives every scraped series a ``job`` label of
its own (the scrape job), and a default scrape would rename ours ``exported_job``.

Two rules keep the series honest and bounded:

- **Known jobs start at zero.** ``increase()`` cannot see the first increment of a
  series that appears with value 1, so ``slurp_runs_total{slurp_job, status}`` (every
  status in ``STATUSES``) and ``slurp_runs_in_progress`` are created at 0 for every job
  of the registry when ``RunMetrics`` is built (worker boot), when the known names are
  re-read (every ``KNOWN_JOBS_TTL_S`` at most, on the next event) and at a job's first
  ``JobStarted``. A restarted worker's counters restart at 0, which ``increase()``
  reads as a counter reset, so nothing is lost across restarts.
- **Unknown names are one value.** A rejected message carries whatever job name a
  publisher sent; a name the registry does not know is counted as
  ``slurp_job="__unknown__"`` (``UNKNOWN_JOB``), so junk cannot create series.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from contracts.events import (
    Event,
    JobAbandoned,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)
from contracts.jobs import GUARD_NAMES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "DURATION_BUCKETS_S",
    "JOB_LABEL",
    "KNOWN_JOBS_TTL_S",
    "STATUSES",
    "UNKNOWN_JOB",
    "KnownJobs",
    "RunMetrics",
]

logger = logging.getLogger(__name__)

#: Run durations from one second to six hours.
DURATION_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
#: The label carrying a slurp job's name (``job`` is Prometheus' scrape job).
JOB_LABEL = "slurp_job"
#: ``slurp_job`` of rejected messages naming a job the registry does not know.
UNKNOWN_JOB = "__unknown__"
#: Every ``status`` of ``slurp_runs_total``; each starts at 0 for a known job.
STATUSES = ("succeeded", "failed", "retrying", "rejected", "abandoned", "cancelled")
#: How long the registry's job names are trusted before they are read again.
KNOWN_JOBS_TTL_S = 30.0
#: The names are read again at most this often when an unknown name shows up (a flood
#: of junk costs one registry read per second, not one per message).
UNKNOWN_RECHECK_S = 1.0


class KnownJobs:
    """The registry's job names, cached for ``ttl_s``; ``load`` is e.g.
    ``lambda: JobRegistry(store).revisions().keys()`` (one small query)."""

    def __init__(
        self,
        load: Callable[[], Iterable[str]],
        ttl_s: float = KNOWN_JOBS_TTL_S,
        recheck_s: float = UNKNOWN_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self.recheck_s = recheck_s
        self._clock = clock
        self._names: frozenset[str] = frozenset()
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def names(self) -> frozenset[str]:
        """The cached names, read again once they are older than ``ttl_s``."""
        with self._lock:
            if self._read_at is None or self._clock() - self._read_at >= self.ttl_s:
                self._refresh()
            return self._names

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name:
            return False
        if name in self.names():
            return True
        with self._lock:  # maybe a job created since the last read
            if self._read_at is None or self._clock() - self._read_at >= self.recheck_s:
                self._refresh()
            return name in self._names

    def _refresh(self) -> None:
        self._read_at = self._clock()  # also on failure: no retry storm
        try:
            self._names = frozenset(str(name) for name in self._load())
        except Exception:  # an observer never breaks a run; keep the old names
            logger.warning("metrics: cannot read the job names; keeping the last ones")


class RunMetrics:
    """Counts the lifecycle events of runs. ``observe`` never raises.

    ``known_jobs``: the registry's names (``KnownJobs``); without it (tests, a
    registry-less process) nothing is pre-created and every rejected name but the
    empty one is counted as sent.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, known_jobs: KnownJobs | None = None
    ) -> None:
        """Metrics registered in ``registry``; none in multiprocess mode, where the
        exposition reads every process's samples from PROMETHEUS_MULTIPROC_DIR."""
        # Imported here: prometheus-client chooses multiprocess mode at import, which
        # must come after dramatiq's process boot has set PROMETHEUS_MULTIPROC_DIR.
        from prometheus_client import Counter, Gauge, Histogram

        self.known_jobs = known_jobs
        self._initialised: set[str] = set()
        self._names_seen: frozenset[str] | None = None
        self._init_lock = threading.Lock()
        self.runs = Counter(
            "slurp_runs_total",
            "Finished run attempts by outcome "
            "(succeeded, failed, retrying, rejected, abandoned, cancelled).",
            [JOB_LABEL, "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "slurp_run_duration_seconds",
            "Duration of run attempts, successful or not.",
            [JOB_LABEL, "status"],
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.records = Counter(
            "slurp_records_written_total",
            "Records written by successful runs.",
            [JOB_LABEL, "collection_type"],
            registry=registry,
        )
        self.last_success = Gauge(
            "slurp_last_success_timestamp_seconds",
            "Unix time of the job's last successful run.",
            [JOB_LABEL],
            multiprocess_mode="max",
            registry=registry,
        )
        self.in_progress = Gauge(
            "slurp_runs_in_progress",
            "Runs executing right now.",
            [JOB_LABEL],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.guard_failures = Counter(
            "slurp_guard_failures_total",
            "Runs a guard of the job refused before their commit, by guard.",
            [JOB_LABEL, "guard"],
            registry=registry,
        )
        self.changes = Counter(
            "slurp_records_changed_total",
            "Records of committed runs by change: inserted, updated, unchanged, removed.",
            [JOB_LABEL, "collection_type", "change"],
            registry=registry,
        )
        self._initialise_known()

    def initialise(self, jobs: Iterable[str]) -> None:
        """Create the run counters (every status), the guard failure counters (every
        guard) and the in-progress gauge of ``jobs`` at 0, once per job and process."""
        with self._init_lock:
            fresh = [job for job in jobs if job and job not in self._initialised]
            self._initialised.update(fresh)
        for job in fresh:
            for status in STATUSES:
                self.runs.labels(job, status)
            self.in_progress.labels(job)
            for guard in GUARD_NAMES:
                self.guard_failures.labels(job, guard)

    def _initialise_known(self) -> None:
        if self.known_jobs is None:
            return
        names = self.known_jobs.names()
        if names is not self._names_seen:  # a new read: O(jobs) once per read, not per event
            self._names_seen = names
            self.initialise(names)

    def observe(self, event: Event, collection_type: str = "") -> None:
        try:
            self._observe(event, collection_type)
        except Exception:  # an observer must never break a run
            logger.exception("updating metrics for %s failed", event.kind)

    def label(self, event: Event) -> str:
        """The ``slurp_job`` of ``event``. Only rejected messages can name a job the
        registry does not know (every other event comes from a run of a registered
        job); such names become ``UNKNOWN_JOB``."""
        if not isinstance(event, JobRejected):
            return event.job
        if not event.job:
            return UNKNOWN_JOB
        if self.known_jobs is None:
            return event.job
        return event.job if event.job in self.known_jobs else UNKNOWN_JOB

    def _observe(self, event: Event, collection_type: str) -> None:
        job = self.label(event)
        self._initialise_known()  # jobs created since the names were last read
        if isinstance(event, JobStarted):
            self.initialise([job])
            self.in_progress.labels(job).inc()
            return
        if isinstance(event, JobRejected):
            self.runs.labels(job, "rejected").inc()
            return
        if isinstance(event, JobCancelled):
            self.runs.labels(job, "cancelled").inc()
            if event.stage == "running":  # a queued run never started
                self.in_progress.labels(job).dec()
                self.duration.labels(job, "cancelled").observe(event.duration_s)
            return
        self.in_progress.labels(job).dec()
        if isinstance(event, JobAbandoned):  # its worker died; a redelivery may follow
            self.runs.labels(job, "abandoned").inc()
            return
        if isinstance(event, JobSucceeded):
            self.runs.labels(job, "succeeded").inc()
            self.duration.labels(job, "succeeded").observe(event.duration_s)
            self.records.labels(job, collection_type).inc(event.records_written)
            self.last_success.labels(job).set(event.at.timestamp())
            for change in ("inserted", "updated", "unchanged", "removed"):
                count = getattr(event, change)
                if count:
                    self.changes.labels(job, collection_type, change).inc(count)
        elif isinstance(event, JobFailed):
            status = "retrying" if event.will_retry else "failed"
            self.runs.labels(job, status).inc()
            self.duration.labels(job, status).observe(event.duration_s)
            if event.guard is not None:
                self.guard_failures.labels(job, event.guard.name).inc()
