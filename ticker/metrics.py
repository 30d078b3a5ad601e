"""Prometheus metrics of one ticker process, and the depth of the queues it feeds.

The ticker is one process per replica, so it serves its own ``/metrics`` from its
own ``CollectorRegistry`` (``serve_metrics``). Every value is computed at scrape
time by ``TickerCollector`` from plain counters (``TickerMetrics``, the ticker's
``TickerStats``), the ticker's agenda and Redis: no prometheus-client metric objects,
so the process never writes multiprocess files, whatever ``PROMETHEUS_MULTIPROC_DIR``
says.

Per ticker (sum or max them over replicas in Prometheus):

``slurp_ticker_emitted_total{slurp_job}``           runs this ticker enqueued
``slurp_ticker_lag_seconds``                        histogram: emission time - slot time
``slurp_ticker_next_fire_timestamp_seconds{slurp_job}``  the job's next slot, Unix time
``slurp_ticker_jobs_scheduled``                     jobs with a schedule, not paused
``slurp_ticker_last_tick_timestamp_seconds``        clock time of the last finished pass
``slurp_ticker_claims_lost_total``                  due slots another replica emitted
``slurp_ticker_misfires_skipped_total``             late slot ranges not fired
``slurp_ticker_errors_total``                       failed passes (Redis, MongoDB, a job)
``slurp_ticker_invalid_jobs``                       stored definitions that do not validate

Queues, read from Redis at scrape time (the same value on every replica: use ``max``):

``slurp_queue_depth{queue}``     messages waiting: LLEN ``N:Q`` + ZCARD ``N:Q.DQ`` (delayed)
``slurp_dead_letters{queue}``    messages that failed for good: ZCARD ``N:Q.XQ``

When Redis does not answer, the queue metrics are left out of that scrape (logged).
``serve_metrics`` adds prometheus-client's default collectors: ``process_*`` (CPU,
memory, open files of this process) and ``python_*`` (interpreter, garbage collector).
The job's label is ``slurp_job`` (``job`` is Prometheus' own scrape-job label).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from http.server import HTTPServer
from typing import TYPE_CHECKING

import redis
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from contracts.publish import DEFAULT_NAMESPACE
from ticker.stats import TickerStats

if TYPE_CHECKING:
    from ticker.service import Ticker

__all__ = ["JOB_LABEL", "LAG_BUCKETS_S", "TickerCollector", "TickerMetrics", "serve_metrics"]

#: The label carrying a slurp job's name (``job`` is Prometheus' scrape job).
JOB_LABEL = "slurp_job"

#: Upper bounds of the tick lag histogram, in seconds.
LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# name, help, TickerStats.snapshot() key
_COUNTERS = (
    ("slurp_ticker_claims_lost", "Due slots another replica emitted first.", "claims_lost_total"),
    (
        "slurp_ticker_misfires_skipped",
        "Ranges of late slots not fired (misfire policy).",
        "misfires_skipped_total",
    ),
    ("slurp_ticker_errors", "Failed passes: Redis, MongoDB or one job.", "errors_total"),
)

log = logging.getLogger(__name__)


class TickerMetrics(TickerStats):
    """``TickerStats`` plus a histogram of tick lags."""

    def __init__(self, lag_buckets_s: Sequence[float] = LAG_BUCKETS_S) -> None:
        super().__init__()
        self.lag_buckets_s = tuple(sorted(lag_buckets_s))
        self._lag_counts = [0] * (len(self.lag_buckets_s) + 1)  # the last one is +Inf

    def record_emission(self, job: str, slot: datetime, lag_s: float) -> None:
        super().record_emission(job, slot, lag_s)
        with self._lock:
            self._lag_counts[bisect.bisect_left(self.lag_buckets_s, lag_s)] += 1

    def lag_histogram(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` buckets ending with ``+Inf``, and the sum of lags."""
        with self._lock:
            counts, total = list(self._lag_counts), self.lag_sum_s
        bounds = [_float(bound) for bound in self.lag_buckets_s] + ["+Inf"]
        cumulative, running = [], 0
        for bound, count in zip(bounds, counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        return cumulative, total


class TickerCollector(Collector):
    """Yields the ticker's and the queues' metrics at every scrape."""

    def __init__(
        self,
        ticker: Ticker,
        redis_client: redis.Redis,
        queue_names: Sequence[str],
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        if not isinstance(ticker.stats, TickerMetrics):
            raise TypeError("the ticker's stats must be a TickerMetrics")
        self.ticker = ticker
        self.metrics: TickerMetrics = ticker.stats
        self.redis = redis_client
        self.queue_names = tuple(queue_names)
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        stats = self.metrics.snapshot()
        emitted = CounterMetricFamily(
            "slurp_ticker_emitted", "Scheduled runs this ticker enqueued.", labels=[JOB_LABEL]
        )
        for job, count in sorted(stats["emissions_by_job"].items()):
            emitted.add_metric([job], count)
        yield emitted
        buckets, lag_sum = self.metrics.lag_histogram()
        yield HistogramMetricFamily(
            "slurp_ticker_lag_seconds",
            "Seconds between a slot's time and the emission of its run.",
            buckets=buckets,
            sum_value=lag_sum,
        )
        next_fire = GaugeMetricFamily(
            "slurp_ticker_next_fire_timestamp_seconds",
            "Unix time of the job's next scheduled slot.",
            labels=[JOB_LABEL],
        )
        for job, slot in sorted(self.ticker.next_fires().items()):
            next_fire.add_metric([job], slot.timestamp())
        yield next_fire
        yield GaugeMetricFamily(
            "slurp_ticker_jobs_scheduled",
            "Jobs with a schedule that are not paused.",
            value=stats["jobs_scheduled"],
        )
        last_tick: datetime | None = stats["last_tick_at"]
        if last_tick is not None:
            yield GaugeMetricFamily(
                "slurp_ticker_last_tick_timestamp_seconds",
                "Clock time (Unix) of the ticker's last finished pass.",
                value=last_tick.timestamp(),
            )
        for name, help_text, key in _COUNTERS:
            yield CounterMetricFamily(name, help_text, value=stats[key])
        yield GaugeMetricFamily(
            "slurp_ticker_invalid_jobs",
            "Stored job definitions that do not validate (not scheduled).",
            value=stats["invalid_jobs"],
        )
        yield from self._queues()

    def describe(self) -> list[Metric]:
        return []  # names are not registered up front (no scrape at registration)

    def _queues(self) -> Iterator[Metric]:
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for queue in self.queue_names:
                    key = f"{self.namespace}:{queue}"
                    pipe.llen(key)
                    pipe.zcard(f"{key}.DQ")
                    pipe.zcard(f"{key}.XQ")
                answers = pipe.execute()
        except redis.RedisError as exc:
            log.warning("ticker metrics: cannot read queue depths: %s", exc)
            return
        depth = GaugeMetricFamily(
            "slurp_queue_depth",
            "Messages waiting in the queue: ready plus delayed (retries).",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "slurp_dead_letters",
            "Messages in the queue's dead-letter set (failed for good).",
            labels=["queue"],
        )
        for index, queue in enumerate(self.queue_names):
            ready, delayed, dead_letters = answers[3 * index : 3 * index + 3]
            depth.add_metric([queue], int(ready) + int(delayed))
            dead.add_metric([queue], int(dead_letters))
        yield depth
        yield dead


def serve_metrics(collector: Collector, port: int, host: str = "0.0.0.0") -> HTTPServer:
    """Serve ``collector`` and the process's ``process_*``/``python_*`` metrics on
    ``http://host:port/metrics`` from a daemon thread.

    Returns the HTTP server (call ``shutdown()`` to stop it).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(default)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def _float(value: float) -> str:
    return repr(float(value))
