"""The dashboard and the alert rules against a real Prometheus scraping real slurp.

A private Prometheus (Debian's binary, started by ``scripts/prometheus``) scrapes, at
1 s intervals and with ``deploy/prometheus/alerts.yml`` loaded: a real worker group
(``dramatiq workers.app:setup`` processes), a real ``slurp ticker`` process and the
HTTP API (a real uvicorn server). The scrape jobs and labels are those of the compose
stack's ``prometheus.yml``: plain scrapes without ``honor_labels``, as a Kubernetes
ServiceMonitor does them. Jobs run (one keeps failing, one retries, others succeed, a
publisher names a job that does not exist), then every PromQL expression of the
Grafana dashboard and of the rules (each recording rule, and every operand of every
alert condition) must return a number, read back from the dashboard JSON and the
rules file, and the failing job's alert must become pending or firing. No series
carries ``exported_job``; the unknown job is counted as ``slurp_job="__unknown__"``;
a job that never failed has its failure counter at 0; the ticker and the API serve
``process_*`` and ``python_*`` metrics.

The ticker's clock is shifted (speed 1, ``SLURP_TEST_CLOCK_*``) so that a minute
boundary comes 10 s after it starts: the staleness rules need the ticker to have moved
on from one slot to the next while Prometheus watched, and real minutes are too long.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from slurp.settings import Settings
from storage.jobs import JobRegistry
from storage.store import Store
from tests.prometheus_harness import (
    GRAFANA_BUILTINS,
    PrometheusServer,
    dashboard_queries,
    has_data,
    is_number,
    load_dashboard,
    load_rules,
    operands,
    require_prometheus,
    scrape_config_for,
    substitute,
)
from tests.worker_harness import WorkerGroup, free_port, settings_for, wait_for
from workers.launch import worker_env

pytestmark = pytest.mark.slow

USERS = [{"id": 1, "name": "Leanne"}, {"id": 2, "name": "Ervin"}]
#: Metric name prefixes only the API exports (its queries are skipped without it).
API_METRICS = ("slurp_http_",)
#: Seconds from the ticker's start to the minute boundary of its (shifted) clock.
BOUNDARY_AFTER_S = 10


def job(name: str, schedule: bool, **fields: Any) -> JobDefinition:
    data: dict[str, Any] = {
        "name": name,
        "datasources": [{"name": "users", "type": "inline", "records": USERS}],
        "collection": {"type": "upserted", "name": name, "upsert_key": "id"},
        "retry": {"max_retries": 0},
    }
    if schedule:
        data["schedule"] = {"cron": "* * * * *"}
    data.update(fields)
    return JobDefinition.model_validate(data)


def numbers_job(name: str, schedule: bool, max_retries: int) -> JobDefinition:
    """``examples.slurpers:slow_numbers`` failing at its second record."""
    return job(
        name,
        schedule,
        datasources=[{"name": "none", "type": "inline", "records": []}],
        slurper="examples.slurpers:slow_numbers",
        params={"count": 3, "fail_at": 1},
        collection={"type": "normal", "name": name},
        retry={"max_retries": max_retries, "min_backoff_s": 0.1, "max_backoff_s": 0.2},
    )


@dataclass
class Ticker:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_ticker(settings: Settings, port: int, log_path: Path) -> Ticker:
    """``python -m slurp ticker --port PORT``, its clock shifted to reach a minute
    boundary ``BOUNDARY_AFTER_S`` after now (so it runs 10-70 s behind real time)."""
    if not (Path(__file__).parents[1] / "slurp" / "commands" / "ticker.py").exists():
        pytest.fail("slurp/commands/ticker.py is missing")
    real = time.time()
    boundary = (real + BOUNDARY_AFTER_S) // 60 * 60
    start = datetime.fromtimestamp(boundary - BOUNDARY_AFTER_S, UTC)
    env = worker_env(settings.model_copy(update={"metrics_port": 0}))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        SLURP_TEST_CLOCK_START=start.isoformat(),
        SLURP_TEST_CLOCK_ANCHOR=repr(real),
        SLURP_TEST_CLOCK_SPEED="1",
        SLURP_TICKER_POLL_S="0.2",
    )
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "slurp", "ticker", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ticker = Ticker(proc, port, log_path)

    def serving() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ticker exited with {proc.returncode}:\n{ticker.log()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving, 30, "the ticker's /metrics")
    return ticker


@pytest.fixture
def settings(redis_url: str, mongo_url: str, mongo_db_name: str) -> Settings:
    return settings_for(
        redis_url, mongo_url, mongo_db_name, metrics_port=free_port(), metrics_host="127.0.0.1"
    )


@pytest.fixture
def api_port(store: Store, redis_url: str, settings: Settings) -> Iterator[int | None]:
    """The HTTP API on a real uvicorn server; None if the API package is not there."""
    try:
        from api.config import ApiConfig
        from api.server import ApiServer
    except ImportError:
        yield None
        return
    config = ApiConfig.model_validate({"jwt_secret": "x" * 40, "port": 0})
    client = redis.Redis.from_url(redis_url)
    with ApiServer(config, store, client, settings.queue_name) as server:
        for path in ("/api/health", "/api/health", "/no/such/path"):
            httpx.get(server.url + path, timeout=10)
        yield server.port
    client.close()


def test_dashboard_and_alert_queries_return_data_from_real_prometheus(
    tmp_path: Path, store: Store, redis_url: str, settings: Settings, api_port: int | None
) -> None:
    require_prometheus()
    registry = JobRegistry(store, clock=lambda: datetime.now(UTC) - timedelta(minutes=3))
    registry.put(job("demo-users", schedule=True))
    registry.put(numbers_job("demo-failing", schedule=True, max_retries=0))
    JobRegistry(store).put(numbers_job("demo-flaky", schedule=False, max_retries=1))
    JobRegistry(store).put(job("demo-manual", schedule=False))

    ticker_port = free_port()
    targets = {
        "slurp-worker": f"127.0.0.1:{settings.metrics_port}",
        "slurp-ticker": f"127.0.0.1:{ticker_port}",
    }
    if api_port is not None:
        targets["slurp-api"] = f"127.0.0.1:{api_port}"
    prom_port = free_port()
    targets["prometheus"] = f"127.0.0.1:{prom_port}"
    prometheus = PrometheusServer(tmp_path / "prometheus", scrape_config_for(targets), prom_port)
    workers = WorkerGroup(settings, tmp_path / "worker.log", processes=2)
    ticker: Ticker | None = None
    client = redis.Redis.from_url(redis_url)
    try:
        prometheus.start()
        workers.start()
        # increase() counts the failures only from a first sample on: Prometheus must
        # have seen the failure counter at 0 (set at worker start) before any run ends,
        # as it has in production, where workers run long before a job fails.
        wait_for(
            lambda: has_data(
                prometheus.query('slurp_runs_total{slurp_job="demo-failing", status="failed"}')
            ),
            60,
            "Prometheus to scrape the worker's failure counter at 0",
        )
        ticker = start_ticker(settings, ticker_port, tmp_path / "ticker.log")
        junk = f"no-such-job-{uuid.uuid4().hex[:8]}"
        for name in ("demo-failing", "demo-failing", "demo-flaky", "demo-manual", junk):
            publish_run_job(
                client, RunJob(job=name, run_id=str(uuid.uuid4())), queue_name=settings.queue_name
            )
        check_everything(prometheus, api_port is not None)
        check_labels(prometheus, api_port is not None, junk)
    except BaseException:
        print("--- prometheus log ---\n" + prometheus.log())
        print("--- worker log ---\n" + workers.log()[-5000:])
        if ticker is not None:
            print("--- ticker log ---\n" + ticker.log()[-5000:])
        raise
    finally:
        if ticker is not None:
            ticker.stop()
        workers.stop()
        prometheus.stop()
        client.close()


def check_everything(prometheus: PrometheusServer, api_running: bool) -> None:
    wait_for(
        lambda: set(prometheus.targets_health().values()) == {"up"},
        30,
        "every target to be up",
    )

    # Every expression of the dashboard ($job = every job) ...
    values = {"slurp_job": ".*", **GRAFANA_BUILTINS}
    pending: dict[str, str] = {}
    skipped: list[str] = []
    for where, expr in dashboard_queries(load_dashboard()):
        if not api_running and any(prefix in expr for prefix in API_METRICS):
            skipped.append(where)
            continue
        pending[f"dashboard: {where}"] = substitute(expr, values)
    # ... each recording rule, the series it records, and every operand of every
    # alert condition.
    for rule in load_rules():
        if "record" in rule:
            pending[f"rule {rule['record']}"] = rule["expr"]
            pending[f"recorded {rule['record']}"] = rule["record"]
        else:
            for index, operand in enumerate(operands(rule["expr"])):
                if not is_number(operand):
                    pending[f"alert {rule['alert']} operand {index}: {operand}"] = operand
    assert api_running or skipped, "API queries must be skipped only without the API"

    answers: dict[str, Any] = {}

    def all_have_data() -> bool:
        for where, expr in list(pending.items()):
            answers[where] = prometheus.query(expr)
            if has_data(answers[where]):
                del pending[where]
        return not pending

    try:
        # Normally a few seconds; 75 s covers a ticker so slow to start that it missed
        # its first minute boundary and the staleness rules wait for the next one.
        wait_for(all_have_data, 75, "every query to return data")
    except AssertionError:
        lines = [f"{where}\n    {pending[where]}\n    -> {answers.get(where)}" for where in pending]
        raise AssertionError("queries without data:\n" + "\n".join(lines)) from None

    # Every rule evaluates without error; the failing job's alert is on its way.
    for rule in prometheus.rules():
        assert rule["health"] == "ok", rule

    def failing_alert() -> list[dict[str, Any]]:
        return [
            alert
            for alert in prometheus.alerts()
            if alert["labels"]["alertname"] == "SlurpJobFailing"
            and alert["labels"]["slurp_job"] == "demo-failing"
            and alert["state"] in ("pending", "firing")
        ]

    # Its third failure may be the every-minute scheduled run: up to a minute away.
    (alert,) = wait_for(failing_alert, 100, "SlurpJobFailing for demo-failing")
    assert float(alert["value"]) >= 3
    assert not math.isnan(float(alert["value"]))
    if os.environ.get("SLURP_TEST_VERBOSE"):
        print(f"{len(answers)} queries answered; skipped (no API): {skipped}")
        for where, answer in answers.items():
            print(where, str(answer["result"])[:300])


def check_labels(prometheus: PrometheusServer, api_running: bool, junk: str) -> None:
    """Without honor_labels nothing is renamed; label values stay bounded; the
    counters of known jobs start at 0; the ticker and API expose process metrics."""
    assert prometheus.query('{exported_job!=""}')["result"] == []
    assert prometheus.query(f'{{slurp_job="{junk}"}}')["result"] == []

    def rejected_unknown() -> bool:
        answer = prometheus.query('slurp_runs_total{slurp_job="__unknown__", status="rejected"}')
        return has_data(answer) and float(answer["result"][0]["value"][1]) >= 1

    wait_for(rejected_unknown, 30, "the unknown job's rejection counted as __unknown__")
    never_failed = prometheus.query(
        'slurp_runs_total{job="slurp-worker", slurp_job="demo-manual", status="failed"}'
    )["result"]
    assert [float(sample["value"][1]) for sample in never_failed] == [0.0]
    services = ["slurp-ticker", *(["slurp-api"] if api_running else [])]
    for service in services:
        for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
            assert has_data(prometheus.query(f'{metric}{{job="{service}"}}')), (service, metric)
