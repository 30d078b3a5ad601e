"""Metric conventions: the ``slurp_job`` label, counters of known jobs starting at 0,
unknown job names collapsed to one value, and the default ``process_*``/``python_*``
collectors of the ticker and the API.

The rules and the dashboard built on these are tested by promtool
(``tests/test_deploy.py``) and against a real Prometheus scraping real processes
without ``honor_labels`` (``tests/test_deploy_prometheus.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from contracts.events import JobFailed, JobRejected, JobStarted, JobSucceeded
from slurp.localservers import free_port
from ticker.metrics import serve_metrics
from workers.metrics import STATUSES, UNKNOWN_JOB, KnownJobs, RunMetrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(registry: CollectorRegistry) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def runs(samples: Samples, job: str, status: str) -> float | None:
    return samples.get(
        ("slurp_runs_total", frozenset({"slurp_job": job, "status": status}.items()))
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Registry:
    """A job registry's names, counting how often they are read."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.reads = 0

    def load(self) -> list[str]:
        self.reads += 1
        return list(self.names)


def test_known_jobs_start_at_zero_for_every_status() -> None:
    registry = CollectorRegistry()
    RunMetrics(registry, KnownJobs(Registry("users", "cities").load))
    samples = samples_of(registry)
    for job in ("users", "cities"):
        for status in STATUSES:
            assert runs(samples, job, status) == 0.0, (job, status)
        key = ("slurp_runs_in_progress", frozenset({"slurp_job": job}.items()))
        assert samples[key] == 0.0


def test_the_label_is_slurp_job_never_job() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry, KnownJobs(Registry("users").load))
    metrics.observe(JobStarted(run_id="r1", job="users"))
    metrics.observe(JobSucceeded(run_id="r1", job="users", records_written=3), "normal")
    metrics.observe(JobStarted(run_id="r2", job="users"))
    metrics.observe(JobFailed(run_id="r2", job="users", error_type="E", message="m"))
    samples = samples_of(registry)
    assert runs(samples, "users", "succeeded") == runs(samples, "users", "failed") == 1.0
    labels = {name for _, pairs in samples for name, _ in pairs}
    assert "slurp_job" in labels and "job" not in labels


def test_a_job_created_later_starts_at_zero_at_the_next_read_or_its_first_start() -> None:
    clock, names = FakeClock(), Registry("users")
    registry = CollectorRegistry()
    metrics = RunMetrics(registry, KnownJobs(names.load, ttl_s=30, clock=clock))
    names.names.append("later")
    clock.now = 31  # the names are re-read at the next event
    metrics.observe(JobStarted(run_id="r1", job="users"))
    assert runs(samples_of(registry), "later", "failed") == 0.0
    # A job the cached names do not have yet: created at 0 at its first start.
    metrics.observe(JobStarted(run_id="r2", job="newest"))
    assert runs(samples_of(registry), "newest", "failed") == 0.0


def test_rejections_naming_unknown_jobs_share_one_label_value() -> None:
    clock, names = FakeClock(), Registry("users")
    registry = CollectorRegistry()
    metrics = RunMetrics(registry, KnownJobs(names.load, recheck_s=1.0, clock=clock))
    for index in range(500):
        metrics.observe(JobRejected(run_id=f"r{index}", job=f"junk-{index}", reason="unknown"))
    metrics.observe(JobRejected(run_id="e", job="", reason="not a RunJob"))
    metrics.observe(JobRejected(run_id="u", job="users", reason="bad params"))
    samples = samples_of(registry)
    assert runs(samples, UNKNOWN_JOB, "rejected") == 501.0
    assert runs(samples, "users", "rejected") == 1.0
    jobs = {dict(pairs).get("slurp_job") for _, pairs in samples}
    assert jobs == {"users", UNKNOWN_JOB}
    assert names.reads <= 2  # the flood re-read the names at most once per second
    # A job registered meanwhile is recognised at the next re-check.
    names.names.append("fresh")
    clock.now = 2
    metrics.observe(JobRejected(run_id="f", job="fresh", reason="bad params"))
    assert runs(samples_of(registry), "fresh", "rejected") == 1.0


def test_an_unreadable_registry_never_breaks_a_run() -> None:
    def broken() -> list[str]:
        raise ConnectionError("MongoDB is down")

    registry = CollectorRegistry()
    metrics = RunMetrics(registry, KnownJobs(broken))
    metrics.observe(JobRejected(run_id="r", job="who", reason="unknown"))
    assert runs(samples_of(registry), UNKNOWN_JOB, "rejected") == 1.0


class _Nothing(Collector):
    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("slurp_ticker_jobs_scheduled", "Jobs.", value=0)


@pytest.fixture
def ticker_metrics_url() -> Iterator[str]:
    port = free_port()
    server = serve_metrics(_Nothing(), port, "127.0.0.1")
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()


def names_in(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


DEFAULTS = {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"}


def test_the_ticker_serves_process_and_python_metrics(ticker_metrics_url: str) -> None:
    names = names_in(httpx.get(ticker_metrics_url, timeout=5).text)
    assert DEFAULTS | {"slurp_ticker_jobs_scheduled"} <= names
    assert "python_gc_objects_collected" in names


def test_the_api_serves_process_and_python_metrics() -> None:
    from api.metrics import HttpMetrics

    first, second = HttpMetrics(), HttpMetrics()  # one registry per app, no clash
    first.observe("/api/health", "GET", 200, 0.01)
    names = names_in(first.exposition().decode())
    assert DEFAULTS | {"slurp_http_requests"} <= names
    assert names_in(second.exposition().decode()) >= DEFAULTS


def test_cancelled_runs_are_counted_and_leave_progress() -> None:
    from contracts.events import JobCancelled

    registry = CollectorRegistry()
    metrics = RunMetrics(registry, KnownJobs(Registry("users").load))
    metrics.observe(JobStarted(run_id="r1", job="users"))
    metrics.observe(JobCancelled(run_id="r1", job="users", stage="running", duration_s=2.0))
    metrics.observe(JobCancelled(run_id="r2", job="users", stage="queued"))
    samples = samples_of(registry)
    assert runs(samples, "users", "cancelled") == 2.0
    assert samples[("slurp_runs_in_progress", frozenset({"slurp_job": "users"}.items()))] == 0.0
