"""Real ``slurp ticker`` processes against the session's Redis and MongoDB-wire server.

Every-minute slots at wall-clock speed would take hours, so the tickers run on the
test-only simulated clock (``SLURP_TEST_CLOCK_*``, see ``ticker.clock``): all processes
and this test compute the same simulated time from the real time, ``SPEED`` times
faster. Nothing else is simulated: real processes, real claims, a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from contracts.jobs import JobDefinition
from contracts.messages import RunJob, scheduled_run_id
from slurp.commands.ticker import events_queue_of
from storage.jobs import JobRegistry
from storage.store import Store
from tests.worker_harness import free_port, wait_for
from ticker.claims import SlotClaimer
from ticker.clock import ScaledClock
from ticker.cron import iter_fires, next_fire

REPO = Path(__file__).resolve().parents[1]
#: Simulated seconds per real second: an every-minute job fires 20 times a second.
SPEED = 1200.0
START = datetime(2030, 1, 7, 0, 0, tzinfo=UTC)
#: Every-minute slots each job must reach before the kill, and after it.
SLOTS_BEFORE_KILL = 100
SLOTS_AFTER_KILL = 120


def make_job(name: str, cron: str | None, **extra: Any) -> JobDefinition:
    data: dict[str, Any] = {
        "name": name,
        "datasources": [{"name": "src", "type": "inline", "records": [{"id": 1}]}],
        "collection": {"type": "normal", "name": f"c_{name}"},
    }
    if cron is not None:
        schedule = {"cron": cron, "timezone": extra.pop("timezone", "UTC"), **extra}
        data["schedule"] = schedule
    elif extra:
        data.update(extra)
    return JobDefinition.model_validate(data)


class Tickers:
    """``slurp ticker`` subprocesses sharing one environment; logs in ``folder``."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"ticker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "slurp", "ticker", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.procs.index(proc)
        return (self.folder / f"ticker-{index}.log").read_text(errors="replace")

    def wait_started(self, proc: subprocess.Popen[bytes]) -> None:
        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ticker exited with {proc.returncode}:\n{self.log(proc)}")
            return "started (definitions polled" in self.log(proc)

        wait_for(started, 60, "a ticker to start")

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM ``proc`` and return its exit code."""
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def ticker_env(redis_url: str, mongo_url: str, db: str, queue: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURP_")}
    env.update(
        SLURP_REDIS_URL=redis_url,
        SLURP_MONGO_URL=mongo_url,
        SLURP_MONGO_DB=db,
        SLURP_QUEUE_NAME=queue,
        SLURP_METRICS_HOST="127.0.0.1",
        SLURP_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def clock_env(clock: ScaledClock) -> dict[str, str]:
    return {
        "SLURP_TEST_CLOCK_START": clock.start.isoformat(),
        "SLURP_TEST_CLOCK_SPEED": repr(clock.speed),
        "SLURP_TEST_CLOCK_ANCHOR": repr(clock.anchor),
    }


def queued_runs(client: redis.Redis, queue: str) -> list[RunJob]:
    """Every RunJob waiting in ``queue``, decoded from the raw Dramatiq messages."""
    ids = client.lrange(f"dramatiq:{queue}", 0, -1)
    raws = client.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
    runs = []
    for rid, raw in zip(ids, raws, strict=True):
        assert raw is not None, f"message {rid!r} is listed but not stored"
        message = json.loads(raw)
        assert message["actor_name"] == "run_job" and message["queue_name"] == queue
        assert message["options"]["redis_message_id"] == _text(rid)
        runs.append(RunJob.model_validate(message["args"][0]))
    return runs


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def tickers(tmp_path: Path) -> Iterator[Tickers]:
    group = Tickers(tmp_path, {})
    yield group
    group.close()


def test_three_tickers_emit_each_slot_exactly_once_while_one_is_killed(
    redis_url: str,
    mongo_url: str,
    mongo_db_name: str,
    store: Store,
    client: redis.Redis,
    tickers: Tickers,
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue = f"q{tag}"
    clock = ScaledClock(START, SPEED)
    tickers.env = ticker_env(
        redis_url, mongo_url, mongo_db_name, queue, SLURP_TICKER_POLL_S="0.2", **clock_env(clock)
    )
    procs = [tickers.start("--port", "0") for _ in range(3)]
    for proc in procs:
        tickers.wait_started(proc)

    # Jobs appear while the tickers run: they pick them up without a restart.
    registry = JobRegistry(store, clock=clock)
    grace = {"misfire_grace_s": 86_400}  # a stalled CI machine must not skip slots
    jobs = {
        f"every-a-{tag}": make_job(f"every-a-{tag}", "* * * * *", **grace),
        f"every-b-{tag}": make_job(f"every-b-{tag}", "* * * * *", **grace),
        f"even-{tag}": make_job(f"even-{tag}", "*/2 * * * *", **grace),
        f"zurich-{tag}": make_job(
            f"zurich-{tag}", "*/3 * * * *", timezone="Europe/Zurich", **grace
        ),
    }
    created = {name: registry.put(job).active_since for name, job in jobs.items()}
    every = f"every-a-{tag}"
    claims = SlotClaimer(client, "test-reader", queue)
    victim, survivors = procs[0], procs[1:]

    def holder_pid(run: RunJob) -> int:
        assert run.scheduled_for is not None
        holder = claims.holder_of(run.job, run.scheduled_for)
        assert holder is not None, f"no claim for {run.job} {run.scheduled_for}"
        return int(holder.split(":")[1])  # <host>:<pid>:<random>

    def count(job: str) -> int:
        return sum(1 for run in queued_runs(client, queue) if run.job == job)

    def victim_has_emitted() -> bool:
        runs = queued_runs(client, queue)
        every_runs = [run for run in runs if run.job == every]
        return len(every_runs) >= SLOTS_BEFORE_KILL and any(
            holder_pid(run) == victim.pid for run in runs
        )

    wait_for(victim_has_emitted, 40, "every ticker to emit, the victim included")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    killed_at = clock()  # the victim claimed nothing after this
    emitted_before = count(every)
    wait_for(
        lambda: count(every) >= emitted_before + SLOTS_AFTER_KILL,
        40,
        f"{SLOTS_AFTER_KILL} more slots after the kill",
    )
    for proc in survivors:
        assert tickers.stop(proc) == 0, tickers.log(proc)

    runs = queued_runs(client, queue)
    assert len({run.run_id for run in runs}) == len(runs), "a slot was emitted twice"
    holders: dict[int, int] = {}
    for name, job in jobs.items():
        assert job.schedule is not None
        slots = sorted(run.scheduled_for for run in runs if run.job == name and run.scheduled_for)
        assert slots, name
        first, last = slots[0], slots[-1]
        # no slot missing at the start, none missing in between (the kill included)
        assert first == next_fire(job.schedule, created[name]), name
        expected = []
        for slot in iter_fires(job.schedule, first - timedelta(microseconds=1)):
            if slot > last:
                break
            expected.append(slot)
        assert slots == expected, f"{name}: slots missing or doubled"
        assert first < killed_at < last, name
        assert registry.last_scheduled_slot(name) == last
    assert count(every) >= SLOTS_BEFORE_KILL + SLOTS_AFTER_KILL
    for run in runs:
        assert run.scheduled_for is not None
        assert run.trigger == "schedule"
        assert run.run_id == scheduled_run_id(run.job, run.scheduled_for)
        pid = holder_pid(run)
        holders[pid] = holders.get(pid, 0) + 1
        if run.scheduled_for > killed_at:
            assert pid != victim.pid, "the killed ticker claimed a slot after its death"
    assert holders.get(victim.pid, 0) >= 1
    assert set(holders) <= {proc.pid for proc in procs}


def test_metrics_of_a_ticker_after_known_emissions(
    redis_url: str,
    mongo_url: str,
    mongo_db_name: str,
    store: Store,
    client: redis.Redis,
    tickers: Tickers,
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue, job = f"q{tag}", f"yearly-{tag}"
    # Created at 09:59; the simulated clock starts at 10:04:30 at normal speed, so the
    # first pass finds exactly the five slots 10:00..10:04, and the next is a year away.
    created = datetime(2026, 1, 5, 9, 59, tzinfo=UTC)
    registry = JobRegistry(store, clock=lambda: created)
    registry.put(make_job(job, "0-4 10 5 1 *"))
    registry.put(make_job(f"paused-{tag}", "* * * * *"))
    registry.set_paused(f"paused-{tag}", True)
    registry.put(make_job(f"manual-{tag}", None))
    events = events_queue_of(queue)
    client.rpush(f"dramatiq:{events}", "e1", "e2")
    client.zadd(f"dramatiq:{queue}.DQ", {"delayed": 1})
    client.zadd(f"dramatiq:{queue}.XQ", {"dead1": 1, "dead2": 2})
    client.zadd(f"dramatiq:{events}.XQ", {"dead3": 1})

    port = free_port()
    clock = ScaledClock(datetime(2026, 1, 5, 10, 4, 30, tzinfo=UTC))
    tickers.env = ticker_env(redis_url, mongo_url, mongo_db_name, queue, **clock_env(clock))
    proc = tickers.start("--port", str(port))
    tickers.wait_started(proc)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def after_emissions() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape()
        done = samples.get(("slurp_ticker_emitted_total", (("slurp_job", job),))) == 5
        return samples if done else None

    samples = wait_for(after_emissions, 30, "the five emissions in /metrics")
    assert client.llen(f"dramatiq:{queue}") == 5
    assert samples[("slurp_ticker_emitted_total", (("slurp_job", job),))] == 5
    assert samples[("slurp_ticker_lag_seconds_count", ())] == 5
    assert samples[("slurp_ticker_lag_seconds_bucket", (("le", "+Inf"),))] == 5
    assert samples[("slurp_ticker_lag_seconds_bucket", (("le", "0.05"),))] == 0  # all late
    next_year = datetime(2027, 1, 5, 10, 0, tzinfo=UTC).timestamp()
    assert samples[("slurp_ticker_next_fire_timestamp_seconds", (("slurp_job", job),))] == next_year
    assert samples[("slurp_ticker_jobs_scheduled", ())] == 1  # not the paused nor the manual
    assert samples[("slurp_ticker_claims_lost_total", ())] == 0
    assert samples[("slurp_ticker_errors_total", ())] == 0
    assert ("slurp_ticker_last_tick_timestamp_seconds", ()) in samples
    depth = client.llen(f"dramatiq:{queue}") + client.zcard(f"dramatiq:{queue}.DQ")
    assert samples[("slurp_queue_depth", (("queue", queue),))] == depth == 6
    assert samples[("slurp_queue_depth", (("queue", events),))] == 2
    assert samples[("slurp_dead_letters", (("queue", queue),))] == 2
    assert samples[("slurp_dead_letters", (("queue", events),))] == 1
    assert tickers.stop(proc) == 0, tickers.log(proc)


def test_once_emits_the_due_slots_prints_them_and_exits(
    redis_url: str,
    mongo_url: str,
    mongo_db_name: str,
    store: Store,
    client: redis.Redis,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue, job = f"q{tag}", f"once-{tag}"
    created = datetime(2026, 1, 5, 9, 59, tzinfo=UTC)
    registry = JobRegistry(store, clock=lambda: created)
    registry.put(make_job(job, "0-4 10 5 1 *"))
    jobs_file = tmp_path / "jobs.json"  # SLURP_JOBS_FILE is applied at start
    from_file = make_job(f"file-{tag}", "@daily").model_dump(mode="json", exclude_defaults=True)
    jobs_file.write_text(json.dumps({"jobs": [from_file]}))
    clock = ScaledClock(datetime(2026, 1, 5, 10, 2, 30, tzinfo=UTC))
    env = ticker_env(
        redis_url,
        mongo_url,
        mongo_db_name,
        queue,
        SLURP_JOBS_FILE=str(jobs_file),
        **clock_env(clock),
    )
    command = [sys.executable, "-m", "slurp", "ticker", "--once"]

    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    slots = [datetime(2026, 1, 5, 10, minute, tzinfo=UTC) for minute in range(3)]
    assert first.stdout.splitlines() == [
        f"emitted {job} slot {slot.isoformat()} run_id {scheduled_run_id(job, slot)}"
        for slot in slots
    ] + ["3 run(s) emitted"]
    assert [run.scheduled_for for run in queued_runs(client, queue)] == slots
    first_load = registry.require(f"file-{tag}")

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["0 run(s) emitted"]
    assert client.llen(f"dramatiq:{queue}") == 3
    loaded = registry.require(f"file-{tag}")
    assert loaded.revision == first_load.revision  # the second start changed nothing
    assert loaded.active_since >= clock.start  # on the ticker's clock: no catch-up run


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({}, "SLURP_REDIS_URL is not set"),
        (
            {"SLURP_REDIS_URL": "redis://127.0.0.1:1/0", "SLURP_TEST_CLOCK_START": "soon"},
            "SLURP_TEST_CLOCK_START: not an ISO-8601 instant",
        ),
        ({"SLURP_REDIS_URL": "redis://127.0.0.1:1/0"}, "cannot reach Redis"),
    ],
    ids=["no redis url", "bad test clock", "redis down"],
)
def test_configuration_errors_are_one_clear_line(
    environment: dict[str, str], message: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURP_")}
    env.update(environment, SLURP_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "slurp", "ticker", "--once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}"), result.stderr


def test_the_events_queue_name_matches_the_workers() -> None:
    from workers.events import events_queue

    assert events_queue_of("slurp") == events_queue("slurp") == "slurp-events"
