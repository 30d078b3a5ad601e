"""Workers: every collection type, overlapping runs, Redis restarts, junk messages."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts.jobs import CollectionType
from contracts.publish import queue_keys
from slurp.localservers import RedisServer
from slurp.settings import Settings
from storage.events import EventLog
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store
from tests.storage_model import Model, canonical, spec_for
from tests.test_workers import USERS, final, job, publish, slow_job
from tests.worker_harness import WorkerGroup, settings_for, wait_for


@pytest.fixture
def settings(redis_url: str, mongo_url: str, mongo_db_name: str) -> Settings:
    return settings_for(redis_url, mongo_url, mongo_db_name)


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerGroup]:
    group = WorkerGroup(settings, tmp_path / "worker.log").start()
    yield group
    group.stop()


def test_every_collection_type_twice(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    second = [{"id": 2, "name": "Ervin Howell", "username": "Antonette2"}]
    registry = JobRegistry(store)
    for kind in CollectionType:
        spec = spec_for(kind, f"c_{kind.value}").model_dump(mode="json", exclude_none=True)
        registry.put(job(f"j_{kind.value}", collection=spec))
    for out in (USERS, second):
        runs = []
        for kind in CollectionType:
            inline = [{"name": "users", "type": "inline", "records": out}]
            record = registry.require(f"j_{kind.value}").definition
            registry.put(
                record.model_copy(update={"datasources": job("x", datasources=inline).datasources})
            )
            runs.append(publish(client, settings, f"j_{kind.value}"))
        for run in runs:
            assert final(store, run.run_id)["status"] == "succeeded", worker.log()
    for kind in CollectionType:
        model = Model(spec_for(kind, "m"))
        model.run(USERS)
        model.run(second)
        got = list(CollectionReader(store).find(f"c_{kind.value}"))
        assert canonical(got) == canonical(model.live), kind


def test_runs_of_one_job_never_overlap(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    JobRegistry(store).put(slow_job("slow", count=10, delay_s=0.05))
    runs = [publish(client, settings, "slow") for _ in range(3)]  # 2 threads: they'd race
    for run in runs:
        assert final(store, run.run_id)["status"] == "succeeded", worker.log()
    spans = []
    for run in runs:
        events = EventLog(store).for_run(run.run_id)
        started = [e.at for e in events if e.kind == "started"]
        done = [e.at for e in events if e.kind == "succeeded"]
        spans.append((min(started), max(done)))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start  # one after the other
    assert [r["n"] for r in CollectionReader(store).find("slow")] == list(range(10))


def test_redis_restarts_idle_and_mid_run(
    store: Store, mongo_url: str, mongo_db_name: str, tmp_path: Path
) -> None:
    server = RedisServer(persistent=True, workdir=tmp_path / "redis").start()
    try:
        settings = settings_for(server.url, mongo_url, mongo_db_name)
        client = redis.Redis.from_url(server.url)
        JobRegistry(store).put(job("users"))
        JobRegistry(store).put(slow_job("slow", count=30, delay_s=0.05))
        group = WorkerGroup(settings, tmp_path / "worker.log").start()
        try:
            server.stop()  # idle worker loses Redis ...
            server.start()  # ... and gets it back on the same port
            run = publish(client, settings, "users")
            assert final(store, run.run_id)["status"] == "succeeded", group.log()
            slow = publish(client, settings, "slow")
            history = History(store)
            wait_for(lambda: (history.get(slow.run_id) or {}).get("status") == "running", 30)
            server.stop()
            server.start()
            doc = final(store, slow.run_id, timeout_s=90)
            assert doc["status"] == "succeeded", group.log()
            assert [r["n"] for r in CollectionReader(store).find("slow")] == list(range(30))
        finally:
            group.stop()
    finally:
        server.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _junk(kind: int, value: Any, raw: bytes, queue: str, rid: str) -> bytes:
    if kind == 0:
        return b"\xff" + raw  # never valid UTF-8 JSON
    if kind == 1:
        return json.dumps(value).encode()
    envelope = {
        "queue_name": queue, "actor_name": "run_job", "args": [value], "kwargs": {},
        "options": {"redis_message_id": rid}, "message_id": rid, "message_timestamp": 0,
    }  # fmt: skip
    return json.dumps(envelope).encode()


def test_junk_messages_never_crash_the_worker(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    """1,000 hypothesis-generated junk messages: every one ends as a rejection."""
    keys = queue_keys(settings.queue_name)
    messages: list[bytes] = []

    @hsettings(max_examples=1000, database=None, suppress_health_check=list(HealthCheck))
    @given(kind=st.integers(0, 2), value=json_values, raw=st.binary(max_size=20))
    def collect(kind: int, value: Any, raw: bytes) -> None:
        rid = f"junk-{len(messages)}"
        messages.append(_junk(kind, value, raw, settings.queue_name, rid))

    collect()
    assert len(messages) == 1000
    pipe = client.pipeline()
    for n, data in enumerate(messages):
        pipe.hset(keys.messages, f"junk-{n}", data)
        pipe.rpush(keys.queue, f"junk-{n}")
    pipe.execute()
    JobRegistry(store).put(job("users"))
    good = publish(client, settings, "users")
    history = History(store)
    wait_for(lambda: client.hlen(keys.messages) == 0, 240, "every junk message acknowledged")
    assert final(store, good.run_id)["status"] == "succeeded"
    rejected = lambda: store.db["slurp_history"].count_documents({"status": "rejected"})  # noqa: E731
    wait_for(lambda: rejected() == 1000, 120, f"1000 rejections (have {rejected()})")
    assert worker.proc is not None and worker.proc.poll() is None  # still running
    assert "Consumer encountered an unexpected error" not in worker.log()
    assert history.last_runs(limit=1)


def test_database_down_mid_run_then_back(
    redis_url: str, mongo_db_name: str, tmp_path: Path
) -> None:
    """MongoDB dies while a run writes; the run fails without partial data, is retried
    once the database is back, and every event reaches the log (they wait in Redis)."""
    from slurp.localservers import SecantusServer
    from storage.store import connect

    server = SecantusServer(workdir=tmp_path / "mongo-run", data_dir=tmp_path / "mongo")
    server.start()
    settings = settings_for(redis_url, server.url, mongo_db_name)
    store = connect(server.url, mongo_db_name, timeout_ms=2000)
    client = redis.Redis.from_url(redis_url)
    group = None
    try:
        registry = JobRegistry(store)
        registry.put(job("users"))
        registry.put(
            slow_job("slow", count=60, delay_s=0.05).model_copy(
                update={"retry": job("x").retry.model_copy(update={"max_retries": 5})}
            )
        )
        group = WorkerGroup(settings, tmp_path / "worker.log").start()
        first = publish(client, settings, "users")
        assert final(store, first.run_id)["status"] == "succeeded", group.log()
        run = publish(client, settings, "slow")
        history = History(store)
        wait_for(lambda: (history.get(run.run_id) or {}).get("status") == "running", 30)
        server.kill()  # the database dies mid-run ...
        wait_for(
            lambda: "ServerSelectionTimeoutError" in group.log() or "AutoReconnect" in group.log(),
            60,
            "the run to hit the dead database",
        )
        server.start()  # ... and comes back on the same port with its data
        doc = final(store, run.run_id, timeout_s=120)
        assert doc["status"] == "succeeded", group.log()
        assert doc["attempts"] >= 2
        assert [r["n"] for r in CollectionReader(store).find("slow")] == list(range(60))

        # Events that met the dead database wait in Redis and arrive late, in any order.
        # (Attempts that could not even read the job while MongoDB was down have none.)
        def all_events() -> list[tuple[str, int]] | None:
            events = {(e.kind, e.attempt) for e in EventLog(store).for_run(run.run_id)}
            complete = ("started", doc["attempts"]) in events and ("started", 1) in events
            return sorted(events) if complete and ("failed", 1) in events else None

        seen = lambda: sorted((e.kind, e.attempt) for e in EventLog(store).for_run(run.run_id))  # noqa: E731
        events = wait_for(all_events, 60, f"every event of the run in the log; have {seen()}")
        assert [kind for kind, _ in events].count("succeeded") == 1
    finally:
        if group is not None:
            group.stop()
        store.close()
        server.close()
