"""Cancelling runs, against real dramatiq worker processes, a real redis-server, the
session's MongoDB-wire server and a real local HTTP server: during a long REST
pagination (every collection type: nothing written stays), during one slow HTTP
request and a long SQL query (interrupted, not waited for), before a run starts
(skipped), and during the commit (refused: the commit completes)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contracts.jobs import CollectionType, JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from datasources import FetchError, RunContext, run_slurper
from datasources.cancel import CancelToken, RunCancelled
from slurp.settings import Settings
from storage.catalog import Catalog
from storage.events import EventLog
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import DATA_PREFIX, Store
from storage.strategies import strategy_for
from tests.api_harness import client_for, running_api
from tests.datasource_servers import HttpServer, Reply, Request, fast_runtime, make_job
from tests.storage_model import canonical, spec_for
from tests.worker_harness import WorkerGroup, settings_for, wait_for
from workers.coordination import LocalCoordination, RedisCoordination

ENDED = ("succeeded", "failed", "rejected", "cancelled")
PAGE_DELAY_S = 0.05


def page(request: Request) -> Reply:
    """An endless, slowish paginated API: 10 items per page."""
    number = int(request.query.get("page", "1"))
    items = [{"id": number * 10 + i, "page": number} for i in range(10)]
    return Reply(**{**vars(Reply.json({"items": items})), "delay_s": PAGE_DELAY_S})


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer().start()
    for kind in CollectionType:
        http.route(f"/pages/{kind.value}", page)
    http.route("/slow", lambda request: Reply(**{**vars(Reply.json([])), "delay_s": 120}))
    yield http
    http.stop()


@pytest.fixture
def settings(redis_url: str, mongo_url: str, mongo_db_name: str, tmp_path: Path) -> Settings:
    return settings_for(
        redis_url, mongo_url, mongo_db_name,
        worker_threads=6, http_allow_private=True, file_roots=[str(tmp_path)],
    )  # fmt: skip


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerGroup]:
    group = WorkerGroup(settings, tmp_path / "worker.log")
    yield group
    group.stop()


def put_job(store: Store, name: str, datasource: dict[str, Any], **extra: Any) -> JobDefinition:
    data: dict[str, Any] = {
        "name": name,
        "datasources": [{"name": "src", **datasource}],
        "collection": {"type": "normal", "name": name},
        "retry": {"max_retries": 2, "min_backoff_s": 0.1, "max_backoff_s": 0.2},
    }
    data.update(extra)
    job = JobDefinition.model_validate(data)
    JobRegistry(store).put(job)
    return job


def publish(client: redis.Redis, settings: Settings, job: str) -> str:
    run = RunJob(job=job, run_id=str(uuid.uuid4()))
    publish_run_job(client, run, queue_name=settings.queue_name)
    return run.run_id


def ended(store: Store, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    history = History(store)

    def check() -> dict[str, Any] | None:
        doc = history.get(run_id)
        return doc if doc and doc.get("status") in ENDED else None

    return wait_for(check, timeout_s, f"run {run_id} to end")


def data_collections(store: Store) -> set[str]:
    return {n for n in store.db.list_collection_names() if n.startswith(DATA_PREFIX)}


def test_cancel_during_rest_pagination_on_every_type(
    store: Store, client: redis.Redis, settings: Settings, worker: WorkerGroup,
    server: HttpServer,
) -> None:  # fmt: skip
    before: dict[str, list[str]] = {}
    runs: dict[CollectionType, str] = {}
    for kind in CollectionType:
        name = f"paged-{kind.value}"
        spec = spec_for(kind, name)
        old = [{"id": -1 - i, "page": 0} for i in range(5)]
        store_run(strategy_for(store, spec), "earlier", old)  # data the run must not touch
        before[name] = canonical(list(CollectionReader(store).find(name)))
        put_job(
            store, name,
            {"type": "rest", "url": server.url(f"/pages/{kind.value}"), "records_path": "items",
             "pagination": {"style": "page"}},
            collection=spec.model_dump(mode="json"),
        )  # fmt: skip
    collections = data_collections(store)
    worker.start()
    for kind in CollectionType:
        runs[kind] = publish(client, settings, f"paged-{kind.value}")
    # long past the first batch of 1000 records (10 per page): some writes happened
    for kind in CollectionType:
        wait_for(lambda k=kind: len(server.seen(f"/pages/{k.value}")) > 120, 60, "pages")
    coordination = RedisCoordination(client)
    asked: dict[CollectionType, float] = {}
    for kind, run_id in runs.items():
        assert coordination.request_cancel(run_id, "test") == "requested"
        asked[kind] = time.monotonic()
    latencies = []
    for kind, run_id in runs.items():
        doc = ended(store, run_id)
        latencies.append(time.monotonic() - asked[kind])
        assert doc["status"] == "cancelled", doc
        assert doc["error"] == {"type": "cancelled", "message": "cancelled by test while it "
                                "ran; nothing was committed"}  # fmt: skip
        assert doc["attempts"] == 1 and doc["attempt_log"]["1:1"]["outcome"] == "cancelled"
        name = f"paged-{kind.value}"
        assert canonical(list(CollectionReader(store).find(name))) == before[name], kind
        assert Catalog(store).require(name).runs == ()  # the run's staging is unregistered
        assert coordination.lease_run(name) is None  # the lease is released
    assert data_collections(store) == collections  # every staging collection dropped
    assert max(latencies) < 5, latencies
    pages = {kind: len(server.seen(f"/pages/{kind.value}")) for kind in CollectionType}
    # not retried, no more pages fetched (one request may have been in flight)
    history = History(store)
    wait_for(lambda: all(history.get(r)["status"] == "cancelled" for r in runs.values()), 5)  # type: ignore[index]
    for kind in CollectionType:
        assert len(server.seen(f"/pages/{kind.value}")) <= pages[kind] + 1
    kinds = [e.kind for e in EventLog(store).for_run(runs[CollectionType.NORMAL])]
    assert kinds == ["started", "cancelled"]


def test_cancel_interrupts_a_slow_request_and_a_long_query(
    store: Store, client: redis.Redis, settings: Settings, worker: WorkerGroup,
    server: HttpServer, tmp_path: Path,
) -> None:  # fmt: skip
    database = tmp_path / "big.sqlite"
    sqlite3.connect(database).close()
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000000) "
        "SELECT max(x) AS n FROM c"
    )
    put_job(store, "slow-http", {"type": "rest", "url": server.url("/slow")})
    put_job(store, "slow-sql", {"type": "sql", "url": f"sqlite:///{database}", "query": endless})
    worker.start()
    http_run = publish(client, settings, "slow-http")
    sql_run = publish(client, settings, "slow-sql")
    wait_for(lambda: server.seen("/slow"), 30, "the slow request")
    coordination = RedisCoordination(client)
    wait_for(lambda: coordination.lease_run("slow-sql") == sql_run, 30, "the query to start")
    wait_for(lambda: (History(store).get(sql_run) or {}).get("status") == "running", 30)
    asked = time.monotonic()
    coordination.request_cancel(http_run, "test")
    coordination.request_cancel(sql_run, "test")
    for run_id in (http_run, sql_run):
        assert ended(store, run_id, 30)["status"] == "cancelled"
    # the request would have taken 120 s (and the query minutes): both were interrupted
    assert time.monotonic() - asked < 5
    assert len(server.seen("/slow")) == 1  # no retry of the interrupted request


def test_cancel_a_queued_run_skips_it(
    store: Store, client: redis.Redis, settings: Settings, worker: WorkerGroup
) -> None:
    put_job(store, "queued", {"type": "inline", "records": [{"id": 1}]})
    run_id = publish(client, settings, "queued")
    assert RedisCoordination(client).request_cancel(run_id, "ops") == "requested"
    worker.start()  # the message was waiting on the queue
    doc = ended(store, run_id)
    assert doc["status"] == "cancelled"
    assert doc["error"]["message"] == "cancelled by ops before it started"
    assert [e.kind for e in EventLog(store).for_run(run_id)] == ["cancelled"]
    assert "queued" not in Catalog(store).names()  # nothing ran
    # a later run of the job is not affected
    other = publish(client, settings, "queued")
    assert ended(store, other)["status"] == "succeeded"


def test_cancel_during_the_commit_is_refused_and_the_commit_completes(
    store: Store, client: redis.Redis, settings: Settings, worker: WorkerGroup
) -> None:
    """An upserted run's commit merges its staged output into the live records (a few
    seconds for 4000 replaced records): a cancel arriving meanwhile is refused."""
    put_job(
        store, "merge", {"type": "inline", "records": []},
        slurper="examples.slurpers:slow_numbers", params={"count": 4000},
        collection={"type": "upserted", "name": "merge", "upsert_key": "n"},
    )  # fmt: skip
    worker.start()
    assert ended(store, publish(client, settings, "merge"))["status"] == "succeeded"
    run_id = publish(client, settings, "merge")
    committing = f"slurp:committing:{run_id}"
    deadline = time.monotonic() + 60
    while not client.exists(committing):
        assert time.monotonic() < deadline, "the commit never began"
        assert (History(store).get(run_id) or {}).get("status") not in ENDED
        time.sleep(0.002)  # polling interval of a deadline-bounded poll
    assert RedisCoordination(client).request_cancel(run_id, "test") == "committing"
    with running_api(store, client, settings.queue_name) as api, client_for(api, "admin") as http:
        if client.exists(committing):  # still committing: the API refuses the same way
            answer = http.post(f"/api/runs/{run_id}/cancel")
            assert answer.status_code == 409, answer.text
            assert "committing" in answer.json()["detail"] or "ended" in answer.json()["detail"]
        doc = ended(store, run_id)
        assert doc["status"] == "succeeded"
        assert {r["run_id"] for r in CollectionReader(store).find("merge")} == {run_id}
        assert http.post(f"/api/runs/{run_id}/cancel").status_code == 409  # ended
    assert not client.exists(committing)


def test_cancel_through_the_api(
    store: Store, client: redis.Redis, settings: Settings, worker: WorkerGroup
) -> None:
    put_job(
        store, "slowpoke", {"type": "inline", "records": []},
        slurper="examples.slurpers:slow_numbers", params={"count": 100000, "delay_s": 0.001},
    )  # fmt: skip
    worker.start()
    run_id = publish(client, settings, "slowpoke")
    wait_for(lambda: (History(store).get(run_id) or {}).get("status") == "running", 30)
    with running_api(store, client, settings.queue_name) as api:
        with client_for(api, "reader") as reader:
            assert reader.post(f"/api/runs/{run_id}/cancel").status_code == 403
        with client_for(api, "admin") as admin:
            answer = admin.post(f"/api/runs/{run_id}/cancel")
            assert answer.status_code == 202, answer.text
            assert answer.json()["status"] == "cancelling"
            doc = ended(store, run_id)
            assert doc["status"] == "cancelled"
            shown = admin.get(f"/api/runs/{run_id}").json()
            assert shown["status"] == "cancelled"
            assert shown["error"]["message"] == (
                "cancelled by api:admin while it ran; nothing was committed"
            )
            again = admin.post(f"/api/runs/{run_id}/cancel")
            assert again.status_code == 409 and "ended already" in again.json()["detail"]


def test_local_coordination_gates_the_commit() -> None:
    """The commit gate's orders, in-process (slurp dev): cancel first, the commit is
    refused; commit first, the cancel is refused until the lease is released; a lease
    that is not the run's any more refuses the commit."""
    coordination = LocalCoordination()
    a = coordination.admit("job-a", "a", 1, "me", 10).lease
    assert a is not None
    assert coordination.request_cancel("a", "ops") == "requested"
    assert a.begin_commit() == "cancelled"
    assert coordination.cancel_requested("a") == "ops"
    with coordination.admit("job-b", "b", 1, "me", 10).lease as b:  # type: ignore[union-attr]
        assert b.begin_commit() == "open"
        assert coordination.request_cancel("b", "ops") == "committing"
    assert coordination.request_cancel("b", "ops") == "requested"  # released
    with a:
        pass
    assert coordination.admit("job", "a", 1, "me", 10).status == "cancelled"
    c = coordination.admit("job-c", "c", 1, "me", 10).lease
    assert c is not None
    del coordination.leases["job-c"]  # taken from it
    assert c.begin_commit() == "lost"


def test_redis_coordination_gates_the_commit(client: redis.Redis) -> None:
    coordination = RedisCoordination(client)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    lease_a = coordination.admit(f"job-{a}", a, 1, "me", 10).lease
    assert lease_a is not None
    assert coordination.request_cancel(a, "ops") == "requested"
    assert lease_a.begin_commit() == "cancelled"
    assert coordination.cancel_requested(a) == "ops"
    with lease_a:
        pass
    with coordination.admit(f"job-{b}", b, 1, "me", 10).lease as lease_b:  # type: ignore[union-attr]
        assert lease_b.begin_commit() == "open"
        assert coordination.request_cancel(b, "ops") == "committing"
    assert coordination.request_cancel(b, "ops") == "requested"  # the release cleared it
    assert coordination.admit("job", a, 1, "me", 10).status == "cancelled"
    done = str(uuid.uuid4())
    client.set(f"slurp:done:{done}", "1")
    assert coordination.request_cancel(done, "ops") == "done"
    c = str(uuid.uuid4())
    lease_c = coordination.admit(f"job-{c}", c, 1, "me", 10).lease
    assert lease_c is not None
    client.set(f"slurp:lease:job-{c}", "someone else")  # expired and taken over
    assert lease_c.begin_commit() == "lost"
    assert coordination.request_cancel(c, "ops") == "requested"  # never marked committing


# -- in-process: the interrupts themselves ---------------------------------------------


def fetch_in_thread(job: JobDefinition, token: CancelToken) -> tuple[threading.Thread, list[Any]]:
    """Iterate the job's records in a thread; the outcome lands in the returned list."""
    outcome: list[Any] = []
    ctx = RunContext(job=job.name, run_id="r", cancel=token)

    def run() -> None:
        try:
            outcome.append(list(run_slurper(job, ctx, fast_runtime())))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("path", ["/slow", "/busy"])
def test_a_cancel_interrupts_a_slow_answer_and_a_retry_wait(server: HttpServer, path: str) -> None:
    """``/slow`` answers after 120 s; ``/busy`` answers 503 with Retry-After: 60 (the
    client would wait a minute before its retry)."""
    server.route("/busy", lambda request: Reply(503, b"busy", {"Retry-After": "60"}))
    job = make_job([{"name": "api", "type": "rest", "url": server.url(path)}])
    token = CancelToken()
    thread, outcome = fetch_in_thread(job, token)
    wait_for(lambda: server.seen(path), 10, "the request")
    asked = time.monotonic()
    token.cancel()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - asked < 2
    assert isinstance(outcome[0], RunCancelled), outcome
    assert len(server.seen(path)) == 1  # not retried


def test_a_cancel_interrupts_a_sqlite_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasources.sql

    reached = threading.Event()
    interruptible = datasources.sql._interruptible

    def noting(*args: Any) -> Any:
        reached.set()  # the statement is about to run
        return interruptible(*args)

    monkeypatch.setattr(datasources.sql, "_interruptible", noting)
    database = tmp_path / "db.sqlite"
    sqlite3.connect(database).close()
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000000) "
        "SELECT max(x) AS n FROM c"
    )
    job = make_job(
        [{"name": "db", "type": "sql", "url": f"sqlite:///{database}", "query": endless}]
    )
    token = CancelToken()
    thread, outcome = fetch_in_thread(job, token)
    assert reached.wait(10)  # the query runs (for minutes) ...
    asked = time.monotonic()
    token.cancel()  # ... until it is interrupted
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - asked < 2
    assert isinstance(outcome[0], RunCancelled | FetchError), outcome
    assert token.cancelled
