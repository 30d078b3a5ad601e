"""The publish helper writes Dramatiq's own RedisBroker format (read back with dramatiq)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from contracts.messages import RunJob
from contracts.publish import (
    ACTOR_NAME,
    DEFAULT_QUEUE,
    encode_run_job,
    publish_run_job,
    queue_keys,
)


@pytest.fixture
def queue() -> str:
    return f"q_{uuid.uuid4().hex[:8]}"


def test_published_message_decodes_with_dramatiq(client: redis.Redis, queue: str) -> None:
    run = RunJob(job="users", trigger="api", requested_by="billing", params={"since": "2026"})
    message_id = publish_run_job(client, run, queue_name=queue)

    (rid,) = client.lrange(f"dramatiq:{queue}", 0, -1)
    raw = client.hget(f"dramatiq:{queue}.msgs", rid)
    assert raw is not None
    message = dramatiq.Message.decode(raw)
    assert message.message_id == message_id
    assert message.queue_name == queue
    assert message.actor_name == ACTOR_NAME == "run_job"
    assert message.kwargs == {}
    assert message.options == {"redis_message_id": rid.decode()}
    assert RunJob.model_validate(message.args[0]) == run
    assert abs(message.message_timestamp / 1000 - datetime.now(UTC).timestamp()) < 60


def test_encoding_matches_what_dramatiq_itself_writes(redis_url: str, queue: str) -> None:
    run = RunJob.for_slot("users", datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    ours = encode_run_job(run, queue, message_id="m-1", redis_message_id="r-1", timestamp_ms=7)
    theirs = dramatiq.Message(
        queue_name=queue,
        actor_name="run_job",
        args=(run.model_dump(mode="json"),),
        kwargs={},
        options={"redis_message_id": "r-1"},
        message_id="m-1",
        message_timestamp=7,
    )
    assert ours.data.encode() == theirs.encode()  # byte for byte


def test_dramatiq_broker_uses_the_documented_keys(redis_url: str, queue: str) -> None:
    """Guard against a Dramatiq upgrade moving keys: enqueue with the real broker."""
    broker = RedisBroker(url=redis_url)
    try:
        sent = broker.enqueue(
            dramatiq.Message(queue_name=queue, actor_name="run_job", args=(), kwargs={}, options={})
        )
        keys = queue_keys(queue)
        client = broker.client
        rid = sent.options["redis_message_id"]
        assert client.lrange(keys.queue, 0, -1) == [rid.encode()]
        assert client.hget(keys.messages, rid) == sent.encode()
    finally:
        broker.close()


def test_each_publish_is_a_new_message(client: redis.Redis, queue: str) -> None:
    run = RunJob(job="users")
    first, second = (publish_run_job(client, run, queue_name=queue) for _ in range(2))
    assert first != second
    assert client.llen(f"dramatiq:{queue}") == 2
    assert client.hlen(f"dramatiq:{queue}.msgs") == 2


def test_defaults_and_namespace(client: redis.Redis) -> None:
    namespace = f"ns{uuid.uuid4().hex[:6]}"
    publish_run_job(client, RunJob(job="users"), namespace=namespace)
    assert DEFAULT_QUEUE == "slurp"
    assert client.llen(f"{namespace}:slurp") == 1
    payload = json.loads(client.hvals(f"{namespace}:slurp.msgs")[0])
    assert list(payload) == [
        "queue_name",
        "actor_name",
        "args",
        "kwargs",
        "options",
        "message_id",
        "message_timestamp",
    ]


@pytest.mark.parametrize("name", ["", "1abc", "a b", "a:b", "q.DQ", "q.XQ"])
def test_bad_queue_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        queue_keys(name)
