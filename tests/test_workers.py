"""Workers end to end: real redis-server, real SecantusDB, real `dramatiq` processes.

Messages are published with ``contracts.publish`` (plain redis-py commands, no
dramatiq import), exactly as another service would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job, queue_keys
from slurp.settings import Settings
from storage.events import EventLog
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store
from tests.worker_harness import WorkerGroup, free_port, settings_for, wait_for

USERS = [
    {"id": 1, "name": "Leanne Graham", "username": "Bret"},
    {"id": 2, "name": "Ervin Howell", "username": "Antonette"},
]


def job(name: str, **overrides: Any) -> JobDefinition:
    data: dict[str, Any] = {
        "name": name,
        "datasources": [{"name": "users", "type": "inline", "records": USERS}],
        "collection": {"type": "upserted", "name": name, "upsert_key": "id"},
        "retry": {"max_retries": 1, "min_backoff_s": 0.1, "max_backoff_s": 0.2},
    }
    data.update(overrides)
    return JobDefinition.model_validate(data)


def slow_job(name: str, **params: Any) -> JobDefinition:
    return job(
        name,
        datasources=[{"name": "none", "type": "inline", "records": []}],
        slurper="examples.slurpers:slow_numbers",
        params=params,
        collection={"type": "normal", "name": name},
    )


@pytest.fixture
def settings(redis_url: str, mongo_url: str, mongo_db_name: str) -> Settings:
    return settings_for(redis_url, mongo_url, mongo_db_name, metrics_port=free_port())


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerGroup]:
    group = WorkerGroup(settings, tmp_path / "worker-a.log").start()
    yield group
    group.stop()


def publish(client: redis.Redis, settings: Settings, name: str, **fields: Any) -> RunJob:
    run = RunJob(job=name, run_id=fields.pop("run_id", str(uuid.uuid4())), **fields)
    publish_run_job(client, run, queue_name=settings.queue_name)
    return run


def final(store: Store, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    history = History(store)

    def done() -> dict[str, Any] | None:
        doc = history.get(run_id)
        return doc if doc and doc.get("status") in ("succeeded", "failed", "rejected") else None

    return wait_for(done, timeout_s, f"run {run_id} to finish")


def test_published_run_is_executed_and_recorded(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    JobRegistry(store).put(job("users"))
    run = publish(client, settings, "users", requested_by="billing-service")
    doc = final(store, run.run_id)
    assert doc["status"] == "succeeded", worker.log()
    assert (doc["records_written"], doc["inserted"], doc["updated"]) == (2, 2, 0)
    assert doc["records_read"] == 2 and doc["attempts"] == 1 and doc["error"] is None
    assert list(CollectionReader(store).find("users")) == USERS
    kinds = [e.kind for e in EventLog(store).for_run(run.run_id)]
    assert kinds == ["started", "succeeded"]

    # The same run_id again (at-least-once redelivery): not redone.
    publish(client, settings, "users", run_id=run.run_id)
    second = publish(client, settings, "users")
    assert final(store, second.run_id)["status"] == "succeeded"
    assert [e.kind for e in EventLog(store).for_run(run.run_id)] == ["started", "succeeded"]

    # Metrics of the worker group on its /metrics port, summed over its processes.
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"

    def scraped() -> str | None:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            return None
        done = 'slurp_runs_total{slurp_job="users",status="succeeded"} 2.0'
        return text if done in text else None

    text = wait_for(scraped, 30, "metrics")
    assert 'slurp_records_written_total{collection_type="upserted",slurp_job="users"} 4.0' in text
    assert "slurp_last_success_timestamp_seconds" in text
    assert "dramatiq_messages_total" in text


def test_failures_retry_then_dead_letter(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    registry = JobRegistry(store)
    registry.put(slow_job("flaky", count=5, fail_at=2))  # a slurper bug: transient
    registry.put(
        job(
            "badrecords",
            datasources=[{"name": "users", "type": "inline", "records": [{"name": "no id"}]}],
        )
    )
    flaky = publish(client, settings, "flaky")
    bad = publish(client, settings, "badrecords")
    doc = final(store, flaky.run_id)
    assert doc["status"] == "failed" and doc["attempts"] == 2  # max_retries 1
    assert "asked to fail at record 2" in doc["error"]["message"]
    events = [(e.kind, e.attempt) for e in EventLog(store).for_run(flaky.run_id)]
    assert events == [("started", 1), ("failed", 1), ("started", 2), ("failed", 2)]
    doc = final(store, bad.run_id)
    assert doc["status"] == "failed" and doc["attempts"] == 1  # bad data: no retry
    assert doc["error"]["type"] == "BadRecordError"
    assert "record at position 0: upsert key 'id' is missing" in doc["error"]["message"]
    assert CollectionReader(store).names() == ["badrecords", "flaky"]
    assert CollectionReader(store).count("flaky") == 0  # nothing half-written
    dead = queue_keys(settings.queue_name).queue + ".XQ"
    wait_for(lambda: client.zcard(dead) == 2, 30, "both messages in the dead-letter queue")


def test_malformed_messages_are_rejected_and_worker_keeps_going(
    store: Store, settings: Settings, client: redis.Redis, worker: WorkerGroup
) -> None:
    JobRegistry(store).put(job("users"))
    keys = queue_keys(settings.queue_name)
    client.hset(keys.messages, "garbage-1", b"\xff{not json")
    client.rpush(keys.queue, "garbage-1")
    publish(client, settings, "nope", run_id="unknown-job-run")
    envelope = (
        f'{{"queue_name":"{settings.queue_name}","actor_name":"run_job","args":[{{"job":"users","run_id":5}}],'
        '"kwargs":{},"options":{"redis_message_id":"bad-args"},"message_id":"m1",'
        '"message_timestamp":0}'
    )
    client.hset(keys.messages, "bad-args", envelope)
    client.rpush(keys.queue, "bad-args")
    good = publish(client, settings, "users")
    assert final(store, good.run_id)["status"] == "succeeded", worker.log()
    history = History(store)
    unknown = final(store, "unknown-job-run")
    assert unknown["status"] == "rejected"
    assert "unknown job 'nope'" in unknown["error"]["message"]

    def rejected() -> list[dict[str, Any]] | None:
        docs = [d for d in history.last_runs(limit=10) if d["status"] == "rejected"]
        return docs if len(docs) == 3 else None

    reasons = " | ".join(d["error"]["message"] for d in wait_for(rejected, 30, "3 rejections"))
    assert "not JSON" in reasons
    assert "run_id: Input should be a valid string" in reasons
    wait_for(lambda: client.hlen(keys.messages) == 0, 30, "every message acknowledged")


def test_killed_worker_run_is_redelivered_and_completed(
    store: Store, settings: Settings, client: redis.Redis, tmp_path: Path, worker: WorkerGroup
) -> None:
    JobRegistry(store).put(slow_job("slow", count=40, delay_s=0.05))
    JobRegistry(store).put(job("users"))
    store_run_first = publish(client, settings, "users")
    assert final(store, store_run_first.run_id)["status"] == "succeeded"
    run = publish(client, settings, "slow")
    history = History(store)
    wait_for(lambda: (history.get(run.run_id) or {}).get("status") == "running", 30, "start")
    worker.kill()  # SIGKILL mid-run: no abort, no event
    assert history.get(run.run_id)["status"] == "running"  # type: ignore[index]
    replacement = WorkerGroup(settings, tmp_path / "worker-b.log").start()
    try:
        doc = final(store, run.run_id, timeout_s=90)
    finally:
        replacement.stop()
    assert doc["status"] == "succeeded", replacement.log()
    records = list(CollectionReader(store).find("slow"))
    assert [r["n"] for r in records] == list(range(40))  # complete, no leftovers
    assert not CollectionReader(store).entry("slow").runs
    starts = [e for e in EventLog(store).for_run(run.run_id) if e.kind == "started"]
    assert len(starts) == 2  # the killed attempt and the redelivered one
