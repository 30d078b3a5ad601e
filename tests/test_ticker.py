"""The ticker against real Redis and a real MongoDB-wire server, with an injected clock."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dramatiq
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from contracts.jobs import JobDefinition
from contracts.messages import RunJob, scheduled_run_id
from slurp.localservers import free_port
from storage.jobs import JOBS_COLLECTION, JobRegistry
from storage.store import Store
from ticker.claims import DEFAULT_CLAIM_TTL_S, SlotClaimer, claim_key
from ticker.service import Ticker

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
DEADLINE_S = 10.0


class Clock:
    """A settable, thread-safe clock."""

    def __init__(self, now: datetime = T0) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> datetime:
        with self._lock:
            self._now = now
            return now


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def make_job(name: str, cron: str | None = "* * * * *", **schedule: Any) -> JobDefinition:
    data: dict[str, Any] = {
        "name": name,
        "datasources": [{"name": "src", "type": "inline", "records": [{"id": 1}]}],
        "collection": {"type": "normal", "name": f"c_{name}"},
    }
    if cron is not None:
        data["schedule"] = {"cron": cron, "timezone": "UTC", **schedule}
    return JobDefinition.model_validate(data)


def wait_until(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        time.sleep(0.005)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(store: Store, clock: Clock) -> JobRegistry:
    return JobRegistry(store, clock=clock)


class Env:
    """One test's queue and claim namespace, and helpers to read what was sent."""

    def __init__(self, client: redis.Redis, registry: JobRegistry, clock: Clock) -> None:
        self.client = client
        self.registry = registry
        self.clock = clock
        tag = uuid.uuid4().hex[:8]
        self.queue = f"q_{tag}"
        self.claim_prefix = f"test:{tag}:claim"

    def ticker(self, **options: Any) -> Ticker:
        options.setdefault("poll_s", 0.05)
        return Ticker(
            self.registry,
            self.client,
            self.queue,
            clock=self.clock,
            claim_prefix=self.claim_prefix,
            **options,
        )

    def count(self) -> int:
        return int(self.client.llen(f"dramatiq:{self.queue}"))

    def runs(self) -> list[RunJob]:
        ids = self.client.lrange(f"dramatiq:{self.queue}", 0, -1)
        raws = [self.client.hget(f"dramatiq:{self.queue}.msgs", rid) for rid in ids]
        messages = [dramatiq.Message.decode(_bytes(raw)) for raw in raws if raw is not None]
        assert all(m.actor_name == "run_job" and m.queue_name == self.queue for m in messages)
        return [RunJob.model_validate(m.args[0]) for m in messages]

    def slots(self, job: str | None = None) -> list[datetime]:
        return sorted(
            r.scheduled_for
            for r in self.runs()
            if job in (None, r.job) and r.scheduled_for is not None
        )


@pytest.fixture
def env(client: redis.Redis, registry: JobRegistry, clock: Clock) -> Env:
    return Env(client, registry, clock)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_tick_emits_one_message_per_due_slot(env: Env) -> None:
    env.registry.put(make_job("users"))
    ticker = env.ticker()
    runs = ticker.tick(at(3) + timedelta(seconds=10))
    assert [r.scheduled_for for r in runs] == [at(1), at(2), at(3)]
    assert env.runs() == runs
    assert {r.run_id for r in runs} == {scheduled_run_id("users", at(m)) for m in (1, 2, 3)}
    assert all(r.trigger == "schedule" and r.requested_by.startswith("ticker ") for r in runs)
    assert ticker.tick(at(3) + timedelta(seconds=20)) == []  # nothing new is due
    assert env.count() == 3
    assert env.registry.last_scheduled_slot("users") == at(3)
    assert ticker.stats.emissions_total == 3
    assert ticker.stats.emissions_by_job["users"] == 3
    assert ticker.stats.lag_last_s == pytest.approx(10.0, abs=1.0)
    assert ticker.stats.lag_max_s == pytest.approx(130.0, abs=1.0)


def test_a_new_job_never_fires_for_slots_before_it_existed(env: Env, clock: Clock) -> None:
    clock.set(at(0.5))
    env.registry.put(make_job("users"))  # created at 10:00:30
    ticker = env.ticker()
    assert ticker.tick(at(0.9)) == []
    assert [r.scheduled_for for r in ticker.tick(at(1))] == [at(1)]


def test_emission_is_logged_at_info(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.registry.put(make_job("users"))
    with caplog.at_level(logging.INFO, logger="ticker.service"):
        (run,) = env.ticker().tick(at(1))
    assert f"emitted job 'users' slot {at(1).isoformat()} run_id {run.run_id}" in caplog.text


def test_two_tickers_emit_each_slot_once(env: Env) -> None:
    env.registry.put(make_job("users"))
    env.registry.put(make_job("orders", "*/2 * * * *"))
    first, second = env.ticker(), env.ticker()
    emitted = 0
    for minute in range(1, 11):
        for ticker in (first, second) if minute % 2 else (second, first):
            emitted += len(ticker.tick(at(minute)))
    assert emitted == env.count() == 10 + 5
    assert env.slots("users") == [at(m) for m in range(1, 11)]
    assert env.slots("orders") == [at(m) for m in range(2, 11, 2)]
    # the later ticker of each minute found the slot claimed (except where the registry
    # already told it the slot was handled, at its very first load)
    assert first.stats.claims_lost_total + second.stats.claims_lost_total >= 10


@pytest.mark.parametrize("shared", [False, True], ids=["8 tickers", "1 ticker 8 threads"])
def test_racing_threads_emit_each_slot_once(env: Env, shared: bool) -> None:
    for name in ("a", "b", "c"):
        env.registry.put(make_job(name))
    tickers = [env.ticker()] * 8 if shared else [env.ticker() for _ in range(8)]
    for ticker in tickers:
        ticker.refresh()  # load definitions first, so the threads race on the claims
    barrier = threading.Barrier(len(tickers))
    results: list[list[RunJob]] = []

    def race(ticker: Ticker) -> None:
        barrier.wait()
        results.append(ticker.tick(at(5)))

    threads = [threading.Thread(target=race, args=(t,)) for t in tickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(r) for r in results) == env.count() == 3 * 5
    assert len({r.run_id for r in env.runs()}) == 15
    for name in ("a", "b", "c"):
        assert env.slots(name) == [at(m) for m in range(1, 6)]


def test_paused_job_emits_nothing_and_resumes_with_the_next_slot(env: Env, clock: Clock) -> None:
    env.registry.put(make_job("users"))
    ticker = env.ticker()
    assert len(ticker.tick(at(1))) == 1
    env.registry.set_paused("users", True)
    assert ticker.tick(at(5)) == []
    assert ticker.job_names == []
    clock.set(at(7.5))
    env.registry.set_paused("users", False)  # resumed at 10:07:30
    assert [r.scheduled_for for r in ticker.tick(at(8))] == [at(8)]  # not 10:02..10:07
    assert env.slots() == [at(1), at(8)]


def test_misfire_after_three_hours_down(env: Env) -> None:
    """Daily at 04:00, grace 10 min; the ticker is down from 03:59 to 07:00."""
    day = datetime(2026, 1, 5, tzinfo=UTC)
    env.clock.set(day)
    env.registry.put(make_job("catch-up", "0 4 * * *", misfire="once", misfire_grace_s=600))
    env.registry.put(make_job("skipper", "0 4 * * *", misfire="skip", misfire_grace_s=600))
    env.registry.put(make_job("hourly", "0 * * * *", misfire="skip", misfire_grace_s=3600))
    before = env.ticker().tick(day + timedelta(hours=3, minutes=59))
    assert [(r.job, r.scheduled_for) for r in before] == [("hourly", day + timedelta(hours=3))]
    restarted = env.ticker()  # a new process: state comes from the registry
    runs = restarted.tick(day + timedelta(hours=7))
    assert sorted((r.job, r.scheduled_for) for r in runs) == [
        ("catch-up", day + timedelta(hours=4)),  # once: exactly one catch-up run
        ("hourly", day + timedelta(hours=6)),  # within the grace
        ("hourly", day + timedelta(hours=7)),
    ]  # skipper: nothing; hourly 04:00 and 05:00: skipped (older than the grace)
    assert restarted.stats.misfires_skipped_total == 2
    assert env.registry.last_scheduled_slot("skipper") == day + timedelta(hours=4)


def test_bad_stored_definitions_are_logged_and_skipped(
    env: Env, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("good", "corrupt", "never"):
        env.registry.put(make_job(name, "* * * * *"))
    for name, cron in (("corrupt", "every minute"), ("never", "0 0 30 2 *")):
        store.db[JOBS_COLLECTION].update_one(  # written past validation
            {"_id": name}, {"$set": {"definition.schedule.cron": cron}}
        )
    ticker = env.ticker()
    with caplog.at_level(logging.ERROR, logger="ticker.service"):
        runs = ticker.tick(at(2))
    assert [(r.job, r.scheduled_for) for r in runs] == [("good", at(1)), ("good", at(2))]
    assert "not scheduling job 'corrupt'" in caplog.text
    assert "not scheduling job 'never'" in caplog.text
    assert ticker.stats.invalid_jobs == 2  # 'never' no longer validates either
    assert ticker.job_names == ["good"]


def test_redis_down_is_survived_and_the_slot_is_sent_later(env: Env, redis_url: str) -> None:
    env.registry.put(make_job("users"))
    dead = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    broken = Ticker(env.registry, dead, env.queue, clock=env.clock, claim_prefix=env.claim_prefix)
    assert broken.tick(at(1)) == []
    assert broken.stats.errors_total == 1
    assert env.registry.last_scheduled_slot("users") is None  # not recorded as handled
    assert [r.scheduled_for for r in env.ticker().tick(at(1))] == [at(1)]


def test_run_forever_follows_edits_and_deletes(env: Env, clock: Clock) -> None:
    env.registry.put(make_job("users", "0 4 * * *"))
    ticker = env.ticker(poll_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=ticker.run_forever, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: ticker.job_names == ["users"])
        env.registry.put(make_job("users", "* * * * *"))  # edited at 10:00
        clock.set(at(1))
        edited = time.monotonic()
        wait_until(lambda: env.count() == 1)
        pickup_s = time.monotonic() - edited
        assert pickup_s < 2.0, pickup_s  # a few poll intervals of 50 ms, with CI slack
        clock.set(at(2))
        wait_until(lambda: env.count() == 2)

        env.registry.put(make_job("orders", "*/5 * * * *"))  # created at 10:02
        env.registry.delete("users")
        wait_until(lambda: ticker.job_names == ["orders"])
        passes = ticker.stats.ticks_total
        clock.set(at(5))
        wait_until(lambda: env.count() == 3 and ticker.stats.ticks_total >= passes + 3)
        assert env.slots("users") == [at(1), at(2)]  # deleted: nothing more
        assert env.slots("orders") == [at(5)]
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_run_forever_stops_promptly(env: Env) -> None:
    ticker = env.ticker(poll_s=30)
    stop = threading.Event()
    thread = threading.Thread(target=ticker.run_forever, args=(stop,))
    thread.start()
    wait_until(lambda: ticker.stats.ticks_total >= 1)
    started = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0


def test_claim_is_atomic_with_its_message(env: Env) -> None:
    claimer = SlotClaimer(env.client, "ticker-1", env.queue, prefix=env.claim_prefix)
    run = RunJob.for_slot("users", at(1))
    assert claimer.claim_and_publish(run) is not None
    other = SlotClaimer(env.client, "ticker-2", env.queue, prefix=env.claim_prefix)
    assert other.claim_and_publish(run) is None
    assert env.runs() == [run]
    key = claim_key("users", at(1), env.claim_prefix)
    assert key == f"{env.claim_prefix}:users:2026-01-05T10:01:00Z"
    assert claimer.holder_of("users", at(1)) == "ticker-1"
    assert 0 < int(env.client.ttl(key)) <= DEFAULT_CLAIM_TTL_S
    with pytest.raises(ValueError, match="scheduled_for"):
        claimer.claim_and_publish(RunJob(job="users"))


def test_messages_are_plain_dramatiq_messages(env: Env) -> None:
    env.registry.put(make_job("users"))
    (run,) = env.ticker().tick(at(1))
    (rid,) = env.client.lrange(f"dramatiq:{env.queue}", 0, -1)
    payload = json.loads(env.client.hget(f"dramatiq:{env.queue}.msgs", rid) or b"")
    assert payload["options"] == {"redis_message_id": _bytes(rid).decode()}
    assert payload["args"] == [run.model_dump(mode="json")]


def test_ticking_through_the_zurich_spring_forward(env: Env) -> None:
    gap_day = datetime(2026, 3, 29, 0, 57, tzinfo=UTC)  # 01:57 CET
    env.clock.set(gap_day)
    env.registry.put(make_job("zurich", "* * * * *", timezone="Europe/Zurich"))
    ticker = env.ticker()
    for second in range(0, 5 * 60, 20):  # 00:57 .. 01:02 UTC, every 20 s
        ticker.tick(gap_day + timedelta(seconds=second))
    local = [s.astimezone(ZoneInfo("Europe/Zurich")).strftime("%H:%M%z") for s in env.slots()]
    assert local == ["01:58+0100", "01:59+0100", "03:00+0200", "03:01+0200"]
