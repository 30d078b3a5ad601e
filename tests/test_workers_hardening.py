"""No message can stall a worker; every run ends honestly in the history.

Real redis-server, real SecantusDB, real ``dramatiq`` worker processes. Each poison
message below once restarted the consumer or stayed in the ack set forever; now each
is acknowledged and recorded as ``rejected``, and valid runs sent right after all
complete.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contracts.publish import queue_keys
from slurp.settings import Settings
from storage.events import EventLog
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store
from tests.test_workers import final, job, publish, slow_job
from tests.worker_harness import WorkerGroup, settings_for, wait_for
from workers.decoding import DEFAULT_MAX_MESSAGE_BYTES


@pytest.fixture
def settings(redis_url: str, mongo_url: str, mongo_db_name: str) -> Settings:
    return settings_for(redis_url, mongo_url, mongo_db_name)


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerGroup]:
    group = WorkerGroup(settings, tmp_path / "worker.log").start()
    yield group
    group.stop()


def _envelope(queue: str, *args: Any, **overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "queue_name": queue,
        "actor_name": "run_job",
        "args": list(args),
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }
    message.update(overrides)
    return message


def _push(client: redis.Redis, settings: Settings, rid: bytes | str, data: bytes | None) -> None:
    keys = queue_keys(settings.queue_name)
    pipe = client.pipeline()
    if data is not None:
        pipe.hset(keys.messages, rid, data)
    pipe.rpush(keys.queue, rid)
    pipe.execute()


def _poison(settings: Settings, other_rid: str) -> dict[str, bytes]:
    """name -> message data: every way a message broke a worker before."""
    queue = settings.queue_name

    def body() -> dict[str, str]:
        return {"job": "users", "run_id": str(uuid.uuid4())}

    def env(*args: Any, **overrides: Any) -> bytes:
        return json.dumps(_envelope(queue, *args, **overrides)).encode()

    return {
        "deep-nesting": b"[" * 100_000,
        "deep-nesting-in-args": env(json.loads("[" * 500 + "]" * 500)),
        "fifty-megabytes": b'{"pad": "' + b"x" * (50 * 1024 * 1024) + b'"}',
        "not-utf8": b"\xff\xfe{not json",
        "missing-options": json.dumps(
            {k: v for k, v in _envelope(queue, body()).items() if k != "options"}
        ).encode(),
        "no-redis-message-id": env(body()),
        "forged-redis-message-id": env(body(), options={"redis_message_id": other_rid}),
        "wrong-queue-name": env(body(), queue_name="somebody-elses-queue"),
        "extra-positional-arg": env(body(), "surprise"),
        "extra-kwarg": env(body(), kwargs={"surprise": 1}),
        "no-args": env(),
        "bad-retries-option": env(body(), options={"retries": "many"}),
        "publisher-set-throws": env(body(), options={"throws": "Exception", "time_limit": 1}),
    }


def _acks_and_hashes_empty(client: redis.Redis, settings: Settings) -> bool:
    queue = settings.queue_name
    keys = [
        *client.scan_iter(f"dramatiq:__acks__.*.{queue}*"),
        f"dramatiq:{queue}.msgs",
        f"dramatiq:{queue}-events.msgs",
    ]
    sizes = [
        client.scard(key) if b"__acks__" in (key if isinstance(key, bytes) else key.encode())
        else client.hlen(key)
        for key in keys
    ]  # fmt: skip
    return not any(sizes)


def test_poison_messages_are_rejected_and_valid_runs_after_them_complete(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    JobRegistry(store).put(job("users"))
    victim = publish(client, settings, "users")  # a real message whose id gets forged
    assert final(store, victim.run_id)["status"] == "succeeded"
    poison = _poison(settings, other_rid="forged-target")
    _push(client, settings, "forged-target", None)  # an id with no data
    for name, data in poison.items():
        _push(client, settings, name, data)
    _push(client, settings, b"\xff\xfe-id", b"junk under a non-UTF-8 id")
    valid = [publish(client, settings, "users") for _ in range(6)]
    for run in valid:
        assert final(store, run.run_id, timeout_s=120)["status"] == "succeeded", worker.log()

    history = History(store)
    runnable = ("no-redis-message-id", "forged-redis-message-id", "wrong-queue-name")
    runnable += ("publisher-set-throws",)
    expected = len(poison) - len(runnable) + 2  # + the id without data, the non-UTF-8 id

    def rejections() -> list[dict[str, Any]] | None:
        docs = list(history.docs.find({"status": "rejected"}))
        return docs if len(docs) == expected else None

    reasons = " | ".join(d["error"]["message"] for d in wait_for(rejections, 60, "rejections"))
    assert "nested deeper than 64 levels" in reasons
    assert f"exceeds the limit of {DEFAULT_MAX_MESSAGE_BYTES}" in reasons
    assert "not JSON" in reasons
    assert "missing options" in reasons
    assert "no message data stored under this id" in reasons
    assert "exactly one positional argument" in reasons
    assert "options.retries must be a non-negative integer" in reasons
    # The three well-formed RunJobs with forged/missing ids or another queue's name
    # ran (they are valid requests), the publisher's `throws`/`time_limit` ignored.
    # (they run one at a time with the others of job 'users': wait for the last)
    expected_runs = 1 + 6 + len(runnable)
    succeeded = lambda: history.docs.count_documents({"status": "succeeded"})  # noqa: E731
    wait_for(lambda: succeeded() == expected_runs, 60, f"{expected_runs} runs")
    wait_for(lambda: _acks_and_hashes_empty(client, settings), 30, "ack sets and hashes empty")
    assert client.llen(queue_keys(settings.queue_name).queue) == 0
    log = worker.log()
    assert "Consumer encountered an unexpected error" not in log
    assert "Restarting consumer" not in log
    assert "RecursionError" not in log and "KeyError" not in log
    assert worker.proc is not None and worker.proc.poll() is None


def test_fifty_copies_of_one_run_execute_the_slurper_once(
    store: Store, settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    JobRegistry(store).put(slow_job("dup", count=5, delay_s=0.02))
    run_id = str(uuid.uuid4())
    group = WorkerGroup(settings, tmp_path / "dup.log", processes=2).start()
    try:
        for _ in range(50):
            publish(client, settings, "dup", run_id=run_id)
        assert final(store, run_id, timeout_s=120)["status"] == "succeeded"
        keys = queue_keys(settings.queue_name)
        # every copy is processed (skipped as done, or put back while the lease is busy)
        wait_for(lambda: _acks_and_hashes_empty(client, settings), 120, "all copies handled")
        assert client.zcard(keys.queue + ".DQ") == 0
        assert client.llen(keys.queue) == 0
    finally:
        group.stop()
    kinds = [e.kind for e in EventLog(store).for_run(run_id)]
    assert kinds.count("started") == 1, kinds
    assert kinds.count("succeeded") == 1, kinds
    assert [r["n"] for r in CollectionReader(store).find("dup")] == list(range(5))


def test_every_attempt_is_in_the_history(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    JobRegistry(store).put(slow_job("flaky", count=3, fail_at=1))  # max_retries 1
    run = publish(client, settings, "flaky", requested_by="billing-service", params={"note": 1})
    doc = final(store, run.run_id)
    assert doc["status"] == "failed" and doc["attempts"] == 2
    assert doc["requested_by"] == "billing-service" and doc["params"] == {"note": 1}
    assert doc["requested_at"] is not None
    log = doc["attempt_log"]
    assert sorted(log) == ["1:1", "2:1"]
    first, second = log["1:1"], log["2:1"]
    assert first["will_retry"] is True and second["will_retry"] is False
    for entry in (first, second):
        assert entry["outcome"] == "failed"
        assert entry["started_at"] <= entry["ended_at"]
        assert entry["worker"]
        assert "asked to fail at record 1" in entry["error"]["message"]
    assert first["ended_at"] <= second["started_at"]
    # The worker's log tells each attempt in order: started before failed.
    lines = [line for line in worker.log().splitlines() if run.run_id in line]
    told = [f"{word} (attempt {attempt})" for attempt in (1, 2) for word in ("started", "failed")]
    positions = [next(i for i, line in enumerate(lines) if said in line) for said in told]
    assert positions == sorted(positions), lines


def test_a_run_whose_worker_died_is_abandoned_then_redelivered(
    redis_url: str, mongo_url: str, mongo_db_name: str, store: Store, tmp_path: Path
) -> None:
    # Lease 2 s; heartbeat 12 s: the history shows the run abandoned (its lease
    # expired) well before dramatiq redelivers the message (dead worker heartbeat).
    settings = settings_for(
        redis_url, mongo_url, mongo_db_name, lease_ttl_s=2, worker_heartbeat_timeout_s=12
    )
    client = redis.Redis.from_url(redis_url)
    JobRegistry(store).put(slow_job("slow", count=60, delay_s=0.05))
    first = WorkerGroup(settings, tmp_path / "a.log").start()
    run = publish(client, settings, "slow")
    history = History(store)
    wait_for(lambda: (history.get(run.run_id) or {}).get("status") == "running", 30, "start")
    first.kill()
    killed_at = time.monotonic()
    second = WorkerGroup(settings, tmp_path / "b.log").start()
    try:
        doc = wait_for(
            lambda: (d := history.get(run.run_id)) and d["status"] == "abandoned" and d, 60,
            "the run to be marked abandoned",
        )  # fmt: skip
        abandoned_after_s = time.monotonic() - killed_at
        assert "stopped reporting" in doc["error"]["message"]
        assert doc["attempt_log"]["1:1"]["abandoned_at"]
        done = final(store, run.run_id, timeout_s=90)
    finally:
        second.stop()
        client.close()
    assert done["status"] == "succeeded", second.log()
    assert sorted(done["attempt_log"]) == ["1:1", "1:2"]  # the same attempt, delivered again
    assert done["attempt_log"]["1:2"]["outcome"] == "succeeded"
    assert [r["n"] for r in CollectionReader(store).find("slow")] == list(range(60))
    print(f"abandoned {abandoned_after_s:.1f} s after the SIGKILL")


def test_admission_is_one_atomic_step(client: redis.Redis) -> None:
    """Many copies of one run racing for admission: exactly one is admitted while the
    run is live, and none once it is done, even with the lease free."""
    from concurrent.futures import ThreadPoolExecutor

    from workers.coordination import RedisCoordination

    coord = RedisCoordination(client)
    job_name, run_id = f"job-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: coord.admit(job_name, run_id, 1, f"w{n}", 30), range(50)))
    admitted = [a for a in answers if a.status == "admitted"]
    assert len(admitted) == 1 and admitted[0].starts == 1
    assert {a.status for a in answers} == {"admitted", "busy"}
    lease = admitted[0].lease
    assert lease is not None and lease.held()
    assert coord.lease_run(job_name) == run_id
    with lease:
        lease.mark_done()
    assert coord.lease_run(job_name) is None  # released
    with ThreadPoolExecutor(8) as pool:
        later = list(pool.map(lambda n: coord.admit(job_name, run_id, 1, f"w{n}", 30), range(50)))
    assert {a.status for a in later} == {"done"}
    other = coord.admit(job_name, str(uuid.uuid4()), 1, "w", 30)  # another run may go
    assert other.status == "admitted" and other.lease is not None
    with other.lease:
        pass
