"""The ticker's batch path: template-built messages, one claim script call per batch,
claims already taken by another ticker, bulk slot bookkeeping, and the pass order."""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import dramatiq
import pytest
import redis
from pymongo import UpdateMany, UpdateOne

from contracts.messages import RunJob, scheduled_run_id
from contracts.publish import ScheduledRunEncoder, encode_run_job
from storage.jobs import JobRegistry
from storage.store import Store
from tests.test_ticker import Clock, Env, at, make_job
from ticker import service
from ticker.claims import MAX_SCRIPT_SLOTS, SentRun, SlotClaimer
from workers.decoding import MessageDecoder

SLOTS = [
    datetime(2026, 1, 5, 11, 0, tzinfo=UTC),
    datetime(2026, 3, 29, 3, 0, tzinfo=timezone(timedelta(hours=2))),  # not UTC
    datetime(2026, 1, 5, 11, 0, 7, 120000, tzinfo=UTC),  # microseconds
    datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(store: Store, clock: Clock) -> JobRegistry:
    return JobRegistry(store, clock=clock)


@pytest.fixture
def env(client: redis.Redis, registry: JobRegistry, clock: Clock) -> Env:
    return Env(client, registry, clock)


def evals(client: redis.Redis) -> int:
    """Script calls Redis has run so far (all EVALs of this server)."""
    stats = client.info("commandstats").get("cmdstat_eval") or {}
    return int(stats.get("calls", 0))


def claimer(env: Env, holder: str, client: redis.Redis | None = None) -> SlotClaimer:
    return SlotClaimer(client or env.client, holder, env.queue, prefix=env.claim_prefix)


# -- encoding --------------------------------------------------------------------------


@pytest.mark.parametrize("requested_by", ["ticker host:12:ab", 'ticker "é" \u2028 \\ x'])
@pytest.mark.parametrize("queue", ["slurp", "q.a-b_c"])
def test_template_messages_are_the_pydantic_bytes(requested_by: str, queue: str) -> None:
    encoder = ScheduledRunEncoder(queue, requested_by)
    at_ = datetime(2026, 1, 5, 11, 0, 0, 345678, tzinfo=UTC)
    pairs = [(job, slot) for job in ("users", "a.b-c_9", "J" * 100) for slot in SLOTS]
    messages = encoder.encode_many(pairs, at_, timestamp_ms=1767610800345)
    decoder = MessageDecoder("run_job", ["run_job"])
    for (job, slot), message in zip(pairs, messages, strict=True):
        run = RunJob(
            job=job,
            run_id=scheduled_run_id(job, slot),
            trigger="schedule",
            scheduled_for=slot,
            requested_at=at_,
            requested_by=requested_by,
        )
        reference = encode_run_job(
            run,
            queue,
            message_id=message.message_id,
            redis_message_id=message.redis_message_id,
            timestamp_ms=1767610800345,
        )
        assert message.data == reference.data  # byte for byte
        assert message.run_id == run.run_id == encoder.run_id(job, slot)
        decoded = dramatiq.Message.decode(message.data.encode())
        assert RunJob.model_validate(decoded.args[0]) == run
        assert RunJob.model_validate(decoded.args[0]).model_dump(mode="json") == run.model_dump(
            mode="json"
        )
        seen = decoder.decode(message.data.encode(), queue, message.redis_message_id)
        assert seen.actor_name == "run_job"  # accepted, not a rejection
        assert RunJob.model_validate(seen.args[0]) == run
        assert seen.message_id == message.message_id


def test_template_ids_are_fresh_uuid4s() -> None:
    encoder = ScheduledRunEncoder()
    pairs = [(f"job{i}", SLOTS[0]) for i in range(2000)]
    batches = [encoder.encode_many(pairs) for _ in range(3)]
    ids = [m.message_id for batch in batches for m in batch]
    ids += [m.redis_message_id for batch in batches for m in batch]
    assert len(set(ids)) == len(ids) == 2 * 3 * 2000
    for value in ids[:: len(ids) // 50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and str(parsed) == value
    single = encoder.encode("users", SLOTS[0], message_id="m-1", redis_message_id="r-1")
    assert (single.message_id, single.redis_message_id) == ("m-1", "r-1")
    assert json.loads(single.data)["options"] == {"redis_message_id": "r-1"}


def test_the_template_refuses_what_runjob_refuses() -> None:
    encoder = ScheduledRunEncoder()
    for bad in ("", "a b", "a:b", "-x", 'a"b', "x" * 101):
        with pytest.raises(ValueError, match="job name"):
            encoder.encode_many([(bad, SLOTS[0])])
    with pytest.raises(ValueError, match="timezone-aware"):
        encoder.encode_many([("users", datetime(2026, 1, 1))])
    with pytest.raises(ValueError):
        ScheduledRunEncoder(requested_by="x" * 201)
    with pytest.raises(ValueError, match="queue name"):
        ScheduledRunEncoder("a b")


# -- claims ------------------------------------------------------------------------------


def test_a_batch_enqueues_only_the_slots_no_other_ticker_claimed(env: Env) -> None:
    slots = [("users", at(minute)) for minute in range(1, 11)]
    other = claimer(env, "ticker-2")
    taken = other.claim_and_publish_slots([slots[1], slots[4], slots[9]], "ticker ticker-2")
    assert all(run is not None for run in taken)
    before = evals(env.client)
    sent = claimer(env, "ticker-1").claim_and_publish_slots(slots, "ticker ticker-1")
    assert evals(env.client) - before == 1  # the whole batch: one script call
    assert [run is not None for run in sent] == [i not in (1, 4, 9) for i in range(10)]
    runs = env.runs()
    assert len(runs) == 10  # 3 from ticker-2, 7 from ticker-1: one per slot
    assert sorted(r.scheduled_for for r in runs if r.scheduled_for) == [s for _, s in slots]
    by_slot = {r.scheduled_for: r for r in runs}
    for (job, slot), run in zip(slots, sent, strict=True):
        holder = "ticker-1" if run is not None else "ticker-2"
        assert claimer(env, "reader").holder_of(job, slot) == holder
        assert by_slot[slot].requested_by == f"ticker {holder}"
        if run is not None:
            assert run.run_id == by_slot[slot].run_id == scheduled_run_id(job, slot)
    again = claimer(env, "ticker-1").claim_and_publish_slots(slots, "ticker ticker-1")
    assert again == [None] * 10 and env.count() == 10  # a repeated batch sends nothing


def test_batches_stream_one_ahead_and_answer_as_they_come(env: Env) -> None:
    slots = [(f"job{i}", at(1)) for i in range(7)]
    answered: list[SentRun | None] = []
    seen_when_planned: list[int] = []

    def planned() -> Iterator[tuple[str, datetime]]:
        for pair in slots:
            seen_when_planned.append(len(answered))
            yield pair

    before = evals(env.client)
    sent = claimer(env, "t1").claim_and_publish_slots(planned(), "ticker t1", 3, answered)
    assert sent is answered and len(sent) == 7 and all(sent)
    assert evals(env.client) - before == 3  # 3 + 3 + 1
    # batch k+1 is planned (and sent) before the answer to batch k is read
    assert seen_when_planned == [0, 0, 0, 0, 0, 0, 3]
    assert [r.enqueued_at for r in sent] == sorted(r.enqueued_at for r in sent)  # type: ignore[union-attr]
    assert env.count() == 7
    with pytest.raises(ValueError, match="batch_size"):
        claimer(env, "t1").claim_and_publish_slots(slots, batch_size=MAX_SCRIPT_SLOTS + 1)


def test_protocol_lengths_count_utf8_bytes(env: Env) -> None:
    prefix = f"{env.claim_prefix}:é"
    unusual = SlotClaimer(env.client, "höst:1:ü", env.queue, prefix=prefix)
    (run,) = unusual.claim_and_publish_slots([("users", at(1))], "ticker höst:1:ü")
    assert run is not None
    (stored,) = env.runs()
    assert stored.requested_by == "ticker höst:1:ü" and stored.run_id == run.run_id
    assert unusual.holder_of("users", at(1)) == "höst:1:ü"


def test_a_redis_failure_propagates_with_the_answers_so_far(env: Env, redis_url: str) -> None:
    name = f"claimer-{uuid.uuid4().hex[:8]}"
    own = redis.Redis.from_url(redis_url, client_name=name)
    answered: list[SentRun | None] = []

    def planned() -> Iterator[tuple[str, datetime]]:
        yield from [(f"job{i}", at(1)) for i in range(4)]
        for entry in env.client.client_list():  # drop the claimer's connection
            if entry.get("name") == name:
                env.client.client_kill_filter(_id=entry["id"])
        yield from [(f"job{i}", at(1)) for i in range(4, 8)]

    try:
        with pytest.raises(redis.ConnectionError):
            claimer(env, "t1", own).claim_and_publish_slots(planned(), "ticker t1", 2, answered)
    finally:
        own.close()
    assert 0 < len(answered) < 8
    queued = env.count()
    assert queued >= len(answered)  # every answer is on the queue (and maybe one batch more)
    retried = claimer(env, "t1").claim_and_publish_slots([(f"job{i}", at(1)) for i in range(8)])
    assert sum(run is not None for run in retried) == 8 - queued
    assert env.count() == 8  # each slot sent exactly once in total


# -- the ticker's pass -------------------------------------------------------------------


def test_a_burst_goes_out_in_one_script_call_per_batch(env: Env, store: Store) -> None:
    docs = store.db["slurp_jobs"]
    for index in range(25):
        env.registry.put(make_job(f"job{index:02d}"))
    ticker = env.ticker(claim_batch=10)
    ticker.refresh()
    before = evals(env.client)
    runs = ticker.tick(at(1))
    assert evals(env.client) - before == 3  # 25 slots: 10 + 10 + 5
    assert len(runs) == env.count() == 25
    assert sorted(runs, key=lambda r: r.job) == sorted(env.runs(), key=lambda r: r.job)
    assert docs.count_documents({"last_slot": at(1)}) == 25


def test_slot_bookkeeping_is_one_bulk_write_grouped_by_slot(
    env: Env, registry: JobRegistry
) -> None:
    for index in range(23):
        registry.put(make_job(f"j{index:02d}"))
    registry.advance_slot("j00", at(9))  # later already: must stay
    writes: list[list[Any]] = []
    bulk_write = registry.docs.bulk_write

    def spy(ops: list[Any], **options: Any) -> Any:
        writes.append(list(ops))
        return bulk_write(ops, **options)

    registry.docs.bulk_write = spy  # type: ignore[method-assign]
    slots = {f"j{index:02d}": at(1) for index in range(22)} | {"j22": at(2), "gone": at(1)}
    assert registry.advance_slots(slots) == 22  # j00 kept its later slot
    (ops,) = writes  # one round trip
    assert [type(op) for op in ops] == [UpdateMany, UpdateMany, UpdateMany, UpdateOne]
    assert registry.last_scheduled_slot("j00") == at(9)
    assert [registry.last_scheduled_slot(f"j{i:02d}") for i in (1, 21, 22)] == [
        at(1),
        at(1),
        at(2),
    ]


def test_the_periodic_scan_waits_until_the_due_slots_are_sent(env: Env, clock: Clock) -> None:
    env.registry.put(make_job("users"))
    ticker = env.ticker(resync_s=0)  # every pass would scan
    ticker.tick(at(0))
    queued_at_scan: list[int] = []
    revisions = env.registry.revisions

    def spy() -> dict[str, int]:
        queued_at_scan.append(env.count())
        return revisions()

    env.registry.revisions = spy  # type: ignore[method-assign]
    assert len(ticker.tick(at(1))) == 1
    assert queued_at_scan == [1]  # the scan came after the slot was on the queue


def test_a_large_reload_reads_every_definition_in_one_scan(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "FULL_READ_MIN_CHANGES", 3)
    for index in range(4):
        env.registry.put(make_job(f"job{index}"))
    reads: list[str] = []
    registry = env.registry
    for method in ("list", "get_many"):
        original = getattr(registry, method)

        def spy(*args: Any, _name: str = method, _original: Any = original, **kw: Any) -> Any:
            reads.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(registry, method, spy)
    ticker = env.ticker()
    assert len(ticker.tick(at(1))) == 4
    env.registry.put(make_job("job1", "*/2 * * * *"))
    ticker.tick(at(2))
    assert reads == ["list", "get_many"]  # the start: one scan; one change: by name
    assert ticker.next_fires()["job1"] == at(4)


def test_the_gc_is_paused_while_a_pass_sends_its_slots(env: Env) -> None:
    env.registry.put(make_job("users"))
    states: list[bool] = []

    class Spy(SlotClaimer):
        def claim_and_publish_slots(self, *args: Any, **kwargs: Any) -> Any:
            states.append(gc.isenabled())
            return super().claim_and_publish_slots(*args, **kwargs)

    assert gc.isenabled()
    for freeze in (True, False):
        ticker = env.ticker(freeze_gc=freeze)
        ticker.claimer = Spy(env.client, ticker.id, env.queue, prefix=env.claim_prefix)
        ticker.tick(at(len(states) + 1))
        assert gc.isenabled()
    assert states == [False, True]


def test_lag_is_measured_when_redis_confirmed(env: Env) -> None:
    env.registry.put(make_job("users"))
    ticker = env.ticker()
    (emission,) = ticker.run_pass(at(1) + timedelta(seconds=2))
    assert 2.0 <= emission.lag_s < 4.0
    assert ticker.stats.lag_last_s == emission.lag_s
    assert env.runs()[0].run_id == emission.run_id


def test_the_periodic_scan_waits_for_room_before_the_next_slot(env: Env) -> None:
    env.registry.put(make_job("users", "0 * * * *"))  # hourly: 11:00 is 60 min away
    ticker = env.ticker(resync_s=1000, poll_s=1)
    ticker.tick(at(0))
    scans: list[int] = []
    revisions = env.registry.revisions

    def spy() -> dict[str, int]:
        scans.append(1)
        return revisions()

    env.registry.revisions = spy  # type: ignore[method-assign]
    now = time.monotonic()
    for waited_s, last_scan_s, expected in [
        (500, 1, 0),  # not due yet
        (1500, 1800, 0),  # due, but a scan this slow would run into the 11:00 slot
        (1500, 1, 1),  # due, and there is room
        (2500, 1800, 1),  # postponed long enough: scans anyway
    ]:
        scans.clear()
        ticker._resynced_at, ticker._scan_s = now - waited_s, last_scan_s
        ticker.tick(at(30))  # 10:30: 30 min to the next slot
        assert len(scans) == expected, (waited_s, last_scan_s)
