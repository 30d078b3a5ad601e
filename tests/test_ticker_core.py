"""The ticker's scheduling core (agenda), change detection, wake-up rule, test clock,
pipelined claims and metrics collector."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from contracts.jobs import Schedule
from contracts.messages import RunJob
from storage.jobs import JobRegistry
from storage.store import Store
from tests.test_ticker import T0, Clock, Env, at, make_job
from tests.worker_harness import wait_for
from ticker.agenda import Agenda
from ticker.claims import SlotClaimer
from ticker.clock import ScaledClock
from ticker.cron import due_slots, next_fire
from ticker.errors import ScheduleError
from ticker.metrics import LAG_BUCKETS_S, TickerCollector, TickerMetrics
from ticker.service import MIN_WAIT_S

CRONS = [
    "* * * * *",
    "*/7 * * * *",
    "30 2 * * *",
    "0 1,2,3 * * *",
    "15 * * * 1-5",
    "0 0 1 * *",
    "0 4 * * 0",
    "0 0 29 2 *",
]
ZONES = ["UTC", "Europe/Zurich", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
# around the 2026 DST changes of Zurich and New York, and plain days
INSTANTS = st.datetimes(
    min_value=datetime(2026, 3, 6), max_value=datetime(2026, 11, 3), timezones=st.just(UTC)
)


def sched(cron: str, tz: str = "UTC", misfire: Literal["skip", "once"] = "skip") -> Schedule:
    return Schedule(cron=cron, timezone=tz, misfire=misfire, misfire_grace_s=900)


# -- agenda -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    tz=st.sampled_from(ZONES),
    after=INSTANTS,
    offsets=st.lists(st.integers(0, 3 * 86400), min_size=1, max_size=5),
)
def test_memoised_next_fire_equals_next_fire(
    cron: str, tz: str, after: datetime, offsets: list[int]
) -> None:
    schedule = sched(cron, tz)
    agenda = Agenda()
    for offset in [0, *offsets, 0]:  # repeats hit the cache
        instant = after + timedelta(seconds=offset)
        assert agenda.next_fire(schedule, instant) == next_fire(schedule, instant)


@settings(max_examples=300, deadline=None)
@given(
    cron=st.sampled_from(CRONS[:-1]),
    tz=st.sampled_from(ZONES),
    misfire=st.sampled_from(["skip", "once"]),
    cursor=INSTANTS,
    span_s=st.integers(0, 2 * 86400),
)
def test_plan_equals_due_slots(
    cron: str, tz: str, misfire: Literal["skip", "once"], cursor: datetime, span_s: int
) -> None:
    schedule = sched(cron, tz, misfire)
    agenda = Agenda()
    entry = agenda.add("job", schedule, cursor)
    now = cursor + timedelta(seconds=span_s)
    assert agenda.plan(entry, now) == due_slots(schedule, cursor, now)


def test_pop_due_takes_only_the_due_entries_earliest_first() -> None:
    agenda = Agenda()
    for minute in range(1, 1001):  # 1000 jobs, one due at each minute
        agenda.add(f"job{minute}", sched(f"{minute % 60} {minute // 60} * * *"), T0)
    assert len(agenda) == 1000
    first = agenda.next_due()
    assert first == datetime(2026, 1, 5, 10, 1, tzinfo=UTC)
    due = agenda.pop_due(at(3))
    assert [e.name for e in due] == ["job601", "job602", "job603"]  # 10:01, 10:02, 10:03
    assert agenda.next_due() == at(4)  # the popped ones are out of the heap
    for entry in due:
        entry.move_to(entry.next_slot or T0)
        agenda.requeue(entry)
    assert agenda.next_due() == at(4)
    assert agenda.get("job601") is not None
    assert agenda.next_fires()["job601"] == at(1) + timedelta(days=1)


def test_removed_and_replaced_entries_leave_no_live_heap_items() -> None:
    agenda = Agenda()
    agenda.add("a", sched("* * * * *"), T0)
    agenda.add("b", sched("*/5 * * * *"), T0)
    agenda.remove("a")
    assert agenda.next_due() == at(5)
    agenda.add("b", sched("0 12 * * *"), T0)  # replaced: the */5 item is stale
    assert agenda.next_due() == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert agenda.pop_due(at(5)) == []
    for round_ in range(5000):  # stale items are dropped, the heap stays bounded
        agenda.add("b", sched("0 12 * * *"), T0 + timedelta(seconds=round_))
    assert len(agenda._heap) <= 2 * len(agenda) + 1024 + 1
    assert agenda.names() == ["b"]


def test_a_schedule_that_never_fires_is_refused() -> None:
    agenda = Agenda()
    with pytest.raises(ScheduleError, match="no slot"):
        agenda.add("never", Schedule.model_construct(cron="0 0 30 2 *", timezone="UTC"), T0)
    assert "never" not in agenda and agenda.next_due() is None


# -- test clock -------------------------------------------------------------------------


def test_scaled_clock_is_a_function_of_real_time() -> None:
    clock = ScaledClock(T0, speed=60, anchor=1000.0)
    assert clock.at(1000.0) == T0
    assert clock.at(1001.5) == T0 + timedelta(minutes=1.5)
    env = {
        "SLURP_TEST_CLOCK_START": "2026-01-05T10:00:00Z",
        "SLURP_TEST_CLOCK_SPEED": "60",
        "SLURP_TEST_CLOCK_ANCHOR": "1000",
    }
    parsed = ScaledClock.from_env(env)
    assert parsed is not None and parsed.at(1002.0) == at(2)
    assert ScaledClock.from_env({}) is None
    for bad, message in [
        ({"SLURP_TEST_CLOCK_START": "2026-01-05T10:00:00"}, "needs an offset"),
        ({"SLURP_TEST_CLOCK_START": "2026-01-05T10:00Z", "SLURP_TEST_CLOCK_SPEED": "x"}, "number"),
        ({"SLURP_TEST_CLOCK_SPEED": "10"}, "need SLURP_TEST_CLOCK_START"),
        ({"SLURP_TEST_CLOCK_START": "2026-01-05T10:00Z", "SLURP_TEST_CLOCK_SPEED": "0"}, "> 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            ScaledClock.from_env(bad)


# -- change detection and the wake-up rule ------------------------------------------------


class CountingRegistry(JobRegistry):
    """Counts the scans of every job (``revisions``) and the definition reads."""

    def __init__(self, store: Store, clock: Clock) -> None:
        super().__init__(store, clock=clock)
        self.scans = 0
        self.reads: list[list[str]] = []

    def revisions(self) -> dict[str, int]:
        self.scans += 1
        return super().revisions()

    def get_many(self, names: Any, on_invalid: Any = None) -> Any:
        names = list(names)
        self.reads.append(sorted(names))
        return super().get_many(names, on_invalid)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counting(store: Store, clock: Clock) -> CountingRegistry:
    return CountingRegistry(store, clock)


@pytest.fixture
def env(client: redis.Redis, counting: CountingRegistry, clock: Clock) -> Env:
    return Env(client, counting, clock)


def test_generation_moves_on_every_change_and_only_then(counting: CountingRegistry) -> None:
    seen = [counting.generation()]

    def moved() -> bool:
        seen.append(counting.generation())
        return seen[-1] > seen[-2]

    counting.put(make_job("a"))
    assert moved()
    counting.put(make_job("a"))  # identical: no change
    assert not moved()
    counting.put(make_job("a", "*/5 * * * *"))
    assert moved()
    counting.set_paused("a", True)
    assert moved()
    counting.set_paused("a", True)
    assert not moved()
    counting.advance_slot("a", at(5))  # ticker bookkeeping
    assert not moved()
    assert counting.delete("a")
    assert moved()
    assert not counting.delete("a")
    assert not moved()


def test_unchanged_definitions_cost_one_small_read_per_pass(
    env: Env, counting: CountingRegistry
) -> None:
    for name in ("a", "b", "c"):
        counting.put(make_job(name))
    ticker = env.ticker()
    ticker.tick(at(1))
    assert (counting.scans, counting.reads) == (1, [["a", "b", "c"]])
    for minute in range(2, 12):
        ticker.tick(at(minute))
    assert (counting.scans, len(counting.reads)) == (1, 1)  # no scan, no re-read
    counting.put(make_job("b", "*/2 * * * *"))
    ticker.tick(at(12))
    assert (counting.scans, counting.reads[-1]) == (2, ["b"])  # only the changed job
    assert env.count() == 3 * 12  # every minute 10:01..10:12 (b's 10:12 is on */2 too)


def test_a_periodic_full_scan_catches_unannounced_changes(
    env: Env, counting: CountingRegistry, store: Store
) -> None:
    counting.put(make_job("a", "0 4 * * *"))
    ticker = env.ticker(resync_s=0)  # every refresh scans
    ticker.tick(at(0))
    # a writer that died between its write and the generation bump
    store.db["slurp_jobs"].update_one(
        {"_id": "a"},
        {"$set": {"definition.schedule.cron": "* * * * *", "revision": 10**6}},
    )
    assert ticker.refresh()
    assert ticker.next_fires() == {"a": at(1)}


def test_wait_is_until_the_next_slot_capped_by_the_poll(env: Env, clock: Clock) -> None:
    env.registry.put(make_job("hourly", "0 * * * *"))
    ticker = env.ticker(poll_s=1000)
    ticker.tick(at(0))
    assert ticker.wait_s(at(59)) == pytest.approx(60, abs=1)  # 11:00 is 60 s away
    fast = env.ticker(poll_s=1000, clock_rate=60)  # a test clock at 60x
    fast.tick(at(0))
    assert fast.wait_s(at(30)) == pytest.approx(30, abs=1)  # 30 min = 30 real s
    assert fast.wait_s(at(61)) == MIN_WAIT_S  # overdue: go now
    capped = env.ticker(poll_s=5)
    capped.tick(at(0))
    assert capped.wait_s(at(0)) <= 5


def test_a_pass_only_touches_the_due_jobs(env: Env, counting: CountingRegistry) -> None:
    for index in range(200):
        counting.put(make_job(f"daily{index}", f"{index % 60} {1 + index // 60} * * *"))
    counting.put(make_job("minutely"))
    ticker = env.ticker()
    ticker.tick(at(0))
    touched: list[str] = []
    plan = ticker.agenda.plan

    def spy(entry: Any, now: datetime) -> Any:
        touched.append(entry.name)
        return plan(entry, now)

    ticker.agenda.plan = spy  # type: ignore[method-assign]
    for minute in range(1, 6):
        ticker.tick(at(minute))
    assert touched == ["minutely"] * 5


def test_run_forever_follows_pause_and_resume(env: Env, clock: Clock) -> None:
    env.registry.put(make_job("users"))
    ticker = env.ticker(poll_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=ticker.run_forever, args=(stop,))
    thread.start()
    try:
        clock.set(at(1))
        wait_for(lambda: env.count() == 1, 10, "the 10:01 slot")
        env.registry.set_paused("users", True)
        wait_for(lambda: ticker.job_names == [], 10, "the pause")
        clock.set(at(3))
        passes = ticker.stats.ticks_total
        wait_for(lambda: ticker.stats.ticks_total >= passes + 3, 10, "three passes")
        assert env.count() == 1  # paused: 10:02, 10:03 do not fire
        clock.set(at(3.5))
        env.registry.set_paused("users", False)  # resumed at 10:03:30
        wait_for(lambda: ticker.job_names == ["users"], 10, "the resume")
        clock.set(at(4))
        wait_for(lambda: env.count() == 2, 10, "the 10:04 slot")
        assert env.slots() == [at(1), at(4)]
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


# -- claims and metrics ---------------------------------------------------------------------


def test_pipelined_claims_answer_per_slot(env: Env) -> None:
    claimer = SlotClaimer(env.client, "t1", env.queue, prefix=env.claim_prefix)
    runs = [RunJob.for_slot("users", at(m)) for m in range(1, 6)]
    assert claimer.claim_and_publish(runs[1]) is not None
    answers = claimer.claim_and_publish_many(runs)
    assert [answer is not None for answer in answers] == [True, False, True, True, True]
    assert claimer.claim_and_publish_many([]) == []
    assert sorted(r.scheduled_for for r in env.runs() if r.scheduled_for) == [
        at(m) for m in range(1, 6)
    ]


def test_a_claim_batch_smaller_than_the_due_slots(env: Env) -> None:
    for name in ("a", "b", "c"):
        env.registry.put(make_job(name))
    ticker = env.ticker(claim_batch=2)
    assert len(ticker.tick(at(3))) == 9
    assert len({r.run_id for r in env.runs()}) == 9


def test_lag_histogram_and_collector(env: Env) -> None:
    metrics = TickerMetrics()
    for lag in (0.01, 0.05, 0.3, 7, 1000):
        metrics.record_emission("a", T0, lag)
    buckets, total = metrics.lag_histogram()
    assert dict(buckets) == {
        "0.05": 2,
        "0.1": 2,
        "0.25": 2,
        "0.5": 3,
        "1.0": 3,
        "2.5": 3,
        "5.0": 3,
        "10.0": 4,
        "30.0": 4,
        "60.0": 4,
        "+Inf": 5,
    }
    assert len(buckets) == len(LAG_BUCKETS_S) + 1
    assert total == pytest.approx(1007.36)
    env.registry.put(make_job("a"))
    ticker = env.ticker(stats=TickerMetrics())
    ticker.tick(at(2))
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    names = {family.name for family in TickerCollector(ticker, dead, ["q"]).collect()}
    # Redis down: the queue metrics are left out, the others still answer
    assert "slurp_ticker_emitted" in names and "slurp_queue_depth" not in names
    samples = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in TickerCollector(ticker, env.client, [env.queue]).collect()
        for sample in family.samples
    }
    assert samples[("slurp_ticker_emitted_total", ("a",))] == 2
    assert samples[("slurp_queue_depth", (env.queue,))] == 2
    assert samples[("slurp_ticker_next_fire_timestamp_seconds", ("a",))] == at(3).timestamp()
    with pytest.raises(TypeError):
        TickerCollector(env.ticker(), env.client, [env.queue])


def test_a_stand_in_claimer_with_one_method_is_called_per_run(env: Env) -> None:
    """``slurp dev`` passes a claimer that only has ``claim_and_publish``."""
    env.registry.put(make_job("a"))
    ticker = env.ticker()
    sent: list[RunJob] = []

    class Local:
        def claim_and_publish(self, run: RunJob) -> str | None:
            sent.append(run)
            return f"m{len(sent)}"

    ticker.claimer = Local()
    assert ticker.tick(at(2)) == sent
    assert [run.scheduled_for for run in sent] == [at(1), at(2)]
    assert env.count() == 0  # nothing went to Redis
