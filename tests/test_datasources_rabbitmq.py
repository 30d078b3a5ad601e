"""The ``rabbitmq`` source against a real RabbitMQ broker (found on 127.0.0.1:5672 or
started by ``scripts/rabbitmq``) and a real MongoDB-wire database.

In-process tests drive a run the way the runner does (``run_slurper`` with a
``SourceSession``, ``store_run``, then ``commit`` or ``abort``); the worker tests use
real ``dramatiq`` worker processes, SIGKILL one mid-run, and make one exit between the
storage commit and the acknowledgement through the test-only
``SLURP_TEST_RABBITMQ_EXIT_BEFORE_ACK`` hook of the source.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import redis

from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from datasources import FetchError, Progress, ResponseFormatError, RunContext, run_slurper
from datasources.applied import MARKS_COLLECTION
from datasources.rabbitmq import EXIT_BEFORE_ACK_ENV, MARK_BATCH, message_key
from datasources.runtime import Runtime
from datasources.session import SourceSession
from slurp.settings import Settings
from storage.errors import CollectionNotFoundError
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import Store
from storage.strategies import CommitResult, strategy_for
from tests.database_servers import find_rabbitmq, password_of
from tests.datasource_servers import fast_runtime
from tests.worker_harness import WorkerGroup, settings_for, wait_for


@pytest.fixture(scope="module")
def amqp_url() -> str:
    return find_rabbitmq()


@pytest.fixture
def queue(amqp_url: str) -> Iterator[str]:
    name = f"slurp-test-{uuid.uuid4().hex[:10]}"
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
        connection.channel().queue_declare(name, durable=True)
    yield name
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
        connection.channel().queue_delete(name)


def publish(url: str, queue: str, bodies: list[Any], ids: bool = True, raw: bool = False) -> None:
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i, body in enumerate(bodies):
            properties = pika.BasicProperties(
                message_id=f"m-{i}" if ids else None, delivery_mode=2, headers={"n": i}
            )
            data = body if raw else json.dumps(body).encode()
            channel.basic_publish("", queue, data, properties)


def ready(url: str, queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)


def job_url(url: str) -> str:
    """The broker URL with its password as ``${env.RMQ_PW}``."""
    scheme, _, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.partition(':')[0]}:${{env.RMQ_PW}}@{host}"


def rabbit_job(url: str, queue: str, kind: str = "accumulative", **source: Any) -> JobDefinition:
    extra = source.pop("job", {})
    return JobDefinition.model_validate(
        {
            "name": f"rabbit-{queue[-6:]}",
            "datasources": [
                {"name": "events", "type": "rabbitmq", "url": job_url(url), "queue": queue,
                 "max_wait_s": 2, **source}
            ],
            "collection": {"type": kind, "name": f"events_{queue[-10:].replace('-', '_')}"},
            "retry": {"max_retries": 0},
            **extra,
        }
    )  # fmt: skip


def runtime_for(url: str, store: Store) -> Runtime:
    return fast_runtime(
        environ={"RMQ_PW": password_of(url)},
        slurper_modules=["tests.queue_slurpers"],
        collections=CollectionReader(store),
    )


def run(
    job: JobDefinition,
    store: Store,
    runtime: Runtime,
    run_id: str | None = None,
    end: str = "commit",
) -> tuple[CommitResult, SourceSession]:
    """One run as the runner makes it; ``end="crash"``: after the storage commit the
    source's connection goes away without an acknowledgement."""
    run_id = run_id or str(uuid.uuid4())
    session = SourceSession()
    ctx = RunContext(job=job.name, run_id=run_id, collection=job.collection.name)
    records = run_slurper(job, ctx, runtime, Progress(), session)
    try:
        result = store_run(strategy_for(store, job.collection), run_id, records)
    except Exception:
        session.abort()
        raise
    if end == "commit":
        session.commit()
    else:
        consumed = session.sources[0]._consumed  # type: ignore[attr-defined]
        consumed.connection.close()  # as if the worker died: the broker requeues
    return result, session


def stored(store: Store, job: JobDefinition) -> list[Any]:
    try:
        return list(CollectionReader(store).find(job.collection.name))
    except CollectionNotFoundError:
        return []


# -- in-process ------------------------------------------------------------------------


def test_consumes_stores_then_acknowledges(amqp_url: str, queue: str, store: Store) -> None:
    publish(amqp_url, queue, [{"id": i} for i in range(1200)])
    job = rabbit_job(amqp_url, queue, prefetch=100)
    result, _ = run(job, store, runtime_for(amqp_url, store))
    assert result.records_written == 1200
    assert stored(store, job) == [{"id": i} for i in range(1200)]
    assert ready(amqp_url, queue) == 0  # acknowledged: gone for good
    assert store.db[MARKS_COLLECTION].count_documents({}) == 0  # forgotten after the ack


def test_a_failing_slurper_leaves_every_message_in_the_queue(
    amqp_url: str, queue: str, store: Store
) -> None:
    publish(amqp_url, queue, [{"id": i} for i in range(300)])
    job = rabbit_job(amqp_url, queue, job={"slurper": "tests.queue_slurpers:fails"})
    with pytest.raises(Exception, match="fails on purpose"):
        run(job, store, runtime_for(amqp_url, store))
    assert ready(amqp_url, queue) == 300
    assert CollectionReader(store).count(job.collection.name) == 0
    # in their order: the next run reads them all, as published
    passthrough = job.model_copy(update={"slurper": "tests.queue_slurpers:slow_passthrough"})
    run(passthrough, store, runtime_for(amqp_url, store))
    assert stored(store, job) == [{"id": i} for i in range(300)]
    assert ready(amqp_url, queue) == 0


def test_a_redelivery_after_the_commit_is_skipped(amqp_url: str, queue: str, store: Store) -> None:
    publish(amqp_url, queue, [{"id": i} for i in range(700)])
    job = rabbit_job(amqp_url, queue)
    runtime = runtime_for(amqp_url, store)
    run(job, store, runtime, end="crash")  # committed, never acknowledged
    assert ready(amqp_url, queue) == 700 and len(stored(store, job)) == 700
    publish(amqp_url, queue, [{"id": "new"}], ids=False)
    result, _ = run(job, store, runtime)
    assert result.records_written == 1  # the 700 were skipped, the new one applied
    assert len(stored(store, job)) == 701
    assert ready(amqp_url, queue) == 0
    assert store.db[MARKS_COLLECTION].count_documents({}) == 0


def test_content_hashes_recognise_messages_without_ids(
    amqp_url: str, queue: str, store: Store
) -> None:
    publish(amqp_url, queue, [{"id": i} for i in range(50)], ids=False)
    job = rabbit_job(amqp_url, queue, dedupe="content")
    runtime = runtime_for(amqp_url, store)
    run(job, store, runtime, end="crash")
    result, _ = run(job, store, runtime)
    assert result.records_written == 0 and len(stored(store, job)) == 50
    # after the acknowledgement the marks are gone: the same body later is new data
    publish(amqp_url, queue, [{"id": 1}], ids=False)
    assert run(job, store, runtime)[0].records_written == 1


def test_an_aborted_run_is_applied_again(amqp_url: str, queue: str, store: Store) -> None:
    """Marks of a run that did not commit do not count."""
    publish(amqp_url, queue, [{"id": i} for i in range(20)])
    runtime = runtime_for(amqp_url, store)
    job = rabbit_job(amqp_url, queue)
    session = SourceSession()
    ctx = RunContext(job=job.name, run_id="crashed", collection=job.collection.name)
    records = run_slurper(job, ctx, runtime, Progress(), session)
    assert len(list(records)) == 20  # consumed and marked, never stored
    session.sources[0]._consumed.connection.close()  # type: ignore[attr-defined]
    assert store.db[MARKS_COLLECTION].count_documents({}) == 1
    result, _ = run(job, store, runtime)
    assert result.records_written == 20 and ready(amqp_url, queue) == 0


def test_stop_rules_and_prefetch_window(amqp_url: str, queue: str, store: Store) -> None:
    publish(amqp_url, queue, [{"id": i} for i in range(1000)])
    runtime = runtime_for(amqp_url, store)
    job = rabbit_job(amqp_url, queue, prefetch=10, max_messages=600, dedupe="none")
    session = SourceSession()
    records = run_slurper(job, RunContext(job=job.name, run_id="r"), runtime, Progress(), session)
    assert next(records) == {"id": 0}
    # one batch was read (MARK_BATCH), and the broker sent at most a window beyond it
    assert 1000 - MARK_BATCH - 10 <= ready(amqp_url, queue) <= 1000 - MARK_BATCH
    rest = list(records)
    assert len(rest) == 599  # max_messages (the window moved on as messages were read)
    assert ready(amqp_url, queue) == 400  # read ahead beyond 600: handed back at once
    session.commit()
    assert ready(amqp_url, queue) == 400
    idle = rabbit_job(amqp_url, queue, stop_when_empty=False, max_wait_s=0.5, dedupe="none")
    assert len(list(run_slurper(idle, RunContext(job="j", run_id="r2"), runtime))) == 400
    assert ready(amqp_url, queue) == 400  # no session: a look, everything given back


def test_decoding_and_metadata(amqp_url: str, queue: str, store: Store) -> None:
    publish(amqp_url, queue, [b"plain \xc3\xa9", b"\x00\xff"], raw=True)
    runtime = runtime_for(amqp_url, store)
    ctx = RunContext(job="j", run_id="r")
    text = rabbit_job(amqp_url, queue, decode="bytes", with_metadata=True, dedupe="none")
    first, second = run_slurper(text, ctx, runtime)
    assert first["body"] == "cGxhaW4gw6k=" and second["body"] == "AP8="
    assert first["message_id"] == "m-0" and first["headers"] == {"n": 0}
    assert first["routing_key"] == queue and first["exchange"] == "" and not first["redelivered"]
    as_text = rabbit_job(amqp_url, queue, decode="text", dedupe="none", max_messages=1)
    assert list(run_slurper(as_text, ctx, runtime)) == [{"body": "plain é"}]
    bad = rabbit_job(amqp_url, queue, dedupe="none")
    with pytest.raises(ResponseFormatError, match=r"message_id 'm-0' .* is not json"):
        list(run_slurper(bad, ctx, runtime))
    assert ready(amqp_url, queue) == 2


def test_binding_errors_and_secrets(amqp_url: str, queue: str, store: Store) -> None:
    runtime = runtime_for(amqp_url, store)
    ctx = RunContext(job="j", run_id="r")
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
        connection.channel().exchange_declare(f"{queue}-x", "topic")
    try:
        binding = {"exchange": f"{queue}-x", "routing_key": "orders.*"}
        bound = rabbit_job(amqp_url, queue, dedupe="none", max_wait_s=0.2, bind=[binding])
        assert list(run_slurper(bound, ctx, runtime)) == []
        with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
            connection.channel().basic_publish(f"{queue}-x", "orders.new", b'{"o": 1}')
        assert list(run_slurper(bound, ctx, runtime)) == [{"o": 1}]
    finally:
        with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
            connection.channel().exchange_delete(f"{queue}-x")
    missing = rabbit_job(amqp_url, f"{queue}-missing", dedupe="none")
    with pytest.raises(FetchError, match="NOT_FOUND") as gone:
        list(run_slurper(missing, ctx, runtime))
    assert gone.value.retryable
    wrong = fast_runtime(environ={"RMQ_PW": "wrong-pa55word"})
    with pytest.raises(FetchError, match=r"refused the login|cannot connect") as denied:
        list(run_slurper(rabbit_job(amqp_url, queue, dedupe="none"), ctx, wrong))
    assert "wrong-pa55word" not in str(denied.value)


def test_message_keys() -> None:
    assert message_key(b"x", "abc", "message_id") == "id:abc"
    assert message_key(b"x", None, "message_id") == message_key(b"x", "abc", "content")
    assert message_key(b"x", None, "content") != message_key(b"y", None, "content")


# -- real worker processes -------------------------------------------------------------


@pytest.fixture
def worker_settings(redis_url: str, mongo_url: str, mongo_db_name: str) -> Settings:
    return settings_for(
        redis_url, mongo_url, mongo_db_name, metrics_port=0,
        job_env_allow=["RMQ_PW"], slurper_modules=["examples", "tests.queue_slurpers"],
    )  # fmt: skip


def start_worker(settings: Settings, log: Path, amqp_url: str, **env: str) -> WorkerGroup:
    group = WorkerGroup(settings, log)
    group.env.update({"RMQ_PW": password_of(amqp_url), **env})
    return group.start()


def final(store: Store, run_id: str, timeout_s: float = 180) -> dict[str, Any]:
    history = History(store)

    def done() -> dict[str, Any] | None:
        doc = history.get(run_id)
        return doc if doc and doc.get("status") in ("succeeded", "failed") else None

    return wait_for(done, timeout_s, f"run {run_id} to finish")


def send(client: redis.Redis, settings: Settings, job: JobDefinition, run_id: str = "") -> str:
    run_id = run_id or str(uuid.uuid4())
    publish_run_job(client, RunJob(job=job.name, run_id=run_id), queue_name=settings.queue_name)
    return run_id


@pytest.mark.slow
def test_workers_failure_then_kill_mid_run_lose_nothing(
    amqp_url: str, queue: str, store: Store, worker_settings: Settings, client: redis.Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    publish(amqp_url, queue, [{"id": i} for i in range(400)])
    failing = rabbit_job(amqp_url, queue, job={"slurper": "tests.queue_slurpers:fails"})
    JobRegistry(store).put(failing)
    worker = start_worker(worker_settings, tmp_path / "a.log", amqp_url)
    try:
        doc = final(store, send(client, worker_settings, failing))
        assert doc["status"] == "failed" and "fails on purpose" in doc["error"]["message"]
        assert ready(amqp_url, queue) == 400  # the failed run gave every message back

        slow = failing.model_copy(
            update={"slurper": "tests.queue_slurpers:slow_passthrough", "params": {"delay_s": 0.05}}
        )
        JobRegistry(store).put(slow)
        run_id = send(client, worker_settings, slow)

        def consumed_all() -> bool:
            progress = client.hgetall(f"slurp:progress:{run_id}")
            return int(progress.get(b"events.items", 0)) == 400

        wait_for(consumed_all, 120, "the run to consume the queue")
        assert ready(amqp_url, queue) == 0  # all delivered, unacknowledged
        worker.kill()  # SIGKILL mid-run, while the slurper works
        wait_for(lambda: ready(amqp_url, queue) == 400, 60, "the broker to requeue")
    finally:
        worker.stop()
    second = start_worker(worker_settings, tmp_path / "b.log", amqp_url)
    try:
        doc = final(store, run_id)  # the redelivered run, on the new worker
        assert doc["status"] == "succeeded", second.log()
    finally:
        second.stop()
    assert stored(store, slow) == [{"id": i} for i in range(400)]
    assert ready(amqp_url, queue) == 0


@pytest.mark.slow
def test_workers_killed_between_commit_and_ack_store_no_duplicates(
    amqp_url: str, queue: str, store: Store, worker_settings: Settings, client: redis.Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    publish(amqp_url, queue, [{"id": i} for i in range(250)])
    job = rabbit_job(amqp_url, queue)
    JobRegistry(store).put(job)
    # Test-only hook of the rabbitmq source: os._exit right before acknowledging.
    doomed = start_worker(worker_settings, tmp_path / "a.log", amqp_url,
                          **{EXIT_BEFORE_ACK_ENV: "1"})  # fmt: skip
    try:
        first = send(client, worker_settings, job)
        wait_for(lambda: len(stored(store, job)) == 250, 120, "the commit")
        wait_for(lambda: ready(amqp_url, queue) == 250, 30, "the broker to requeue")
    finally:
        doomed.kill()
    worker = start_worker(worker_settings, tmp_path / "b.log", amqp_url)
    try:
        assert final(store, first)["status"] == "succeeded"  # redelivered: already committed
        second = send(client, worker_settings, job)
        doc = final(store, second)
        assert doc["status"] == "succeeded", worker.log()
        assert doc["records_written"] == 0  # the 250 redelivered messages were skipped
    finally:
        worker.stop()
    assert stored(store, job) == [{"id": i} for i in range(250)]  # accumulative: no duplicates
    assert ready(amqp_url, queue) == 0
