"""Prometheus metrics of runs, fed by the same events as the event log.

Inside a dramatiq worker every process writes its samples to the shared
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client multiprocess mode, set up by
dramatiq's Prometheus middleware at process boot); dramatiq's exposition server sums
them on one ``/metrics`` port per host. Across hosts Prometheus sums the instances.
Metrics are created when ``RunMetrics`` is built (after process boot), never at import.

Names follow Prometheus conventions: prefix ``slurp_``, base units, low-cardinality
labels (``job``, ``status``, ``collection_type``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from contracts.events import (
    Event,
    JobAbandoned,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DURATION_BUCKETS_S", "RunMetrics"]

logger = logging.getLogger(__name__)

#: Run durations from one second to six hours.
DURATION_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


class RunMetrics:
    """Counts the lifecycle events of runs. ``observe`` never raises."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Metrics registered in ``registry``; none in multiprocess mode, where the
        exposition reads every process's samples from PROMETHEUS_MULTIPROC_DIR."""
        # Imported here: prometheus-client chooses multiprocess mode at import, which
        # must come after dramatiq's process boot has set PROMETHEUS_MULTIPROC_DIR.
        from prometheus_client import Counter, Gauge, Histogram

        self.runs = Counter(
            "slurp_runs_total",
            "Finished run attempts by outcome (succeeded, failed, retrying, rejected, abandoned).",
            ["job", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "slurp_run_duration_seconds",
            "Duration of run attempts, successful or not.",
            ["job", "status"],
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.records = Counter(
            "slurp_records_written_total",
            "Records written by successful runs.",
            ["job", "collection_type"],
            registry=registry,
        )
        self.last_success = Gauge(
            "slurp_last_success_timestamp_seconds",
            "Unix time of the job's last successful run.",
            ["job"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.in_progress = Gauge(
            "slurp_runs_in_progress",
            "Runs executing right now.",
            ["job"],
            multiprocess_mode="livesum",
            registry=registry,
        )

    def observe(self, event: Event, collection_type: str = "") -> None:
        try:
            self._observe(event, collection_type)
        except Exception:  # an observer must never break a run
            logger.exception("updating metrics for %s failed", event.kind)

    def _observe(self, event: Event, collection_type: str) -> None:
        job = event.job
        if isinstance(event, JobStarted):
            self.in_progress.labels(job).inc()
            return
        if isinstance(event, JobRejected):
            self.runs.labels(job if job else "?", "rejected").inc()
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
        elif isinstance(event, JobFailed):
            status = "retrying" if event.will_retry else "failed"
            self.runs.labels(job, status).inc()
            self.duration.labels(job, status).observe(event.duration_s)
