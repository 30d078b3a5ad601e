"""/api/jobs and /api/runs: job CRUD, pause/resume, queueing runs, the history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from api_harness import client_for, running_api
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.server import ApiServer
from contracts.base import utcnow
from contracts.events import JobFailed, JobStarted, JobSucceeded
from contracts.messages import RunJob
from contracts.publish import queue_keys
from slurp.localservers import free_port
from storage.history import History
from storage.store import Store


def definition(name: str = "users", collection: str = "users", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "datasources": [{"type": "inline", "name": "src", "records": [{"id": 1}]}],
        "collection": {"type": "normal", "name": collection},
        **extra,
    }


@pytest.fixture
def queue() -> str:
    return f"q_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def server(store: Store, redis_client: redis.Redis, queue: str) -> Iterator[ApiServer]:
    with running_api(store, redis_client, queue) as api:
        yield api


@pytest.fixture
def admin(server: ApiServer) -> Iterator[httpx.Client]:
    with client_for(server, "admin") as client:
        yield client


def test_put_get_list_delete(admin: httpx.Client) -> None:
    created = admin.put("/api/jobs/users", json=definition())
    assert created.status_code == 201
    job = created.json()
    assert (job["name"], job["paused"], job["last_slot"]) == ("users", False, None)
    assert job["definition"]["collection"] == {
        "type": "normal", "name": "users", "upsert_key": None, "keep_versions": None,
        "change_stats": True,
    }  # fmt: skip
    assert admin.get("/api/jobs/users").json() == job
    same = admin.put("/api/jobs/users", json=definition())
    assert (same.status_code, same.json()["revision"]) == (200, job["revision"])
    changed = admin.put("/api/jobs/users", json=definition(description="new"))
    assert changed.status_code == 200 and changed.json()["revision"] > job["revision"]
    admin.put("/api/jobs/other", json=definition("other", "other"))
    assert [j["name"] for j in admin.get("/api/jobs").json()] == ["other", "users"]
    assert admin.delete("/api/jobs/users").status_code == 204
    assert admin.get("/api/jobs/users").status_code == 404
    assert admin.delete("/api/jobs/users").json() == {"detail": "no job named 'users'"}


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({**definition(), "collection": {"type": "upserted", "name": "u"}}, ["body", "collection"],
         "upsert_key is required for collection type 'upserted'"),
        (definition(schedule={"cron": "61 * * * *"}), ["body", "schedule", "cron"],
         "is not a valid cron expression"),
        (definition(schedule={"cron": "@daily", "timezone": "Mars/Base"}),
         ["body", "schedule", "timezone"], "unknown timezone 'Mars/Base'"),
        (definition(datasources=[]), ["body", "datasources"], "at least 1 item"),
        (definition(colour="red"), ["body", "colour"], "Extra inputs are not permitted"),
        (definition(name="other"), ["body", "name"], "must equal the job name in the path"),
        (definition(collection="slurp_x"), ["body", "collection", "name"],
         "must not start with 'slurp'"),
    ],
)  # fmt: skip
def test_invalid_definitions_are_400_with_field_errors(
    admin: httpx.Client, body: dict[str, Any], loc: list[str], message: str
) -> None:
    response = admin.put("/api/jobs/users", json=body)
    assert response.status_code == 400, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and message in e["msg"] for e in errors), errors
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)
    assert admin.get("/api/jobs/users").status_code == 404  # nothing was stored


def test_malformed_json_is_400(admin: httpx.Client) -> None:
    response = admin.put(
        "/api/jobs/users", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_pause_and_resume(admin: httpx.Client) -> None:
    admin.put("/api/jobs/users", json=definition(schedule={"cron": "@hourly"}))
    paused = admin.post("/api/jobs/users/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert admin.get("/api/jobs/users").json()["definition"]["paused"] is True
    assert admin.post("/api/jobs/users/resume").json()["paused"] is False
    for action in ("pause", "resume", "runs"):
        assert admin.post(f"/api/jobs/nope/{action}").status_code == 404


def _queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    keys = queue_keys(queue)
    ids = client.lrange(keys.queue, 0, -1)
    return [json.loads(client.hget(keys.messages, rid)) for rid in ids]  # type: ignore[arg-type]


def test_run_now_publishes_a_run_job(
    admin: httpx.Client, redis_client: redis.Redis, queue: str
) -> None:
    admin.put("/api/jobs/users", json=definition())
    admin.post("/api/jobs/users/pause")  # manual runs of a paused job still work
    response = admin.post("/api/jobs/users/runs")
    assert response.status_code == 202
    accepted = response.json()
    chosen = admin.post("/api/jobs/users/runs", json={"run_id": "my-run", "params": {"day": 1}})
    assert chosen.json()["run_id"] == "my-run"
    messages = _queued(redis_client, queue)
    assert [m["message_id"] for m in messages] == [accepted["message_id"],
                                                   chosen.json()["message_id"]]  # fmt: skip
    first = RunJob.model_validate(messages[0]["args"][0])
    assert (first.job, first.run_id, first.trigger) == ("users", accepted["run_id"], "api")
    assert first.requested_by == "api:admin"
    assert RunJob.model_validate(messages[1]["args"][0]).params == {"day": 1}
    bad = admin.post("/api/jobs/users/runs", json={"run_id": ""})
    assert bad.status_code == 400


def test_run_now_without_or_with_a_dead_redis_is_503(store: Store) -> None:
    with running_api(store) as api, client_for(api, "admin") as admin:
        admin.put("/api/jobs/users", json=definition())
        response = admin.post("/api/jobs/users/runs")
        assert response.status_code == 503
        assert "no Redis broker" in response.json()["detail"]
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with running_api(store, dead) as api, client_for(api, "admin") as admin:
        response = admin.post("/api/jobs/users/runs")
        assert response.json() == {"detail": "the queue is unavailable; try again later"}


def _history(store: Store) -> str:
    """Two runs of 'users' (one succeeded, one failed) and one of 'other'."""
    history = History(store)
    start = utcnow() - timedelta(minutes=5)
    history.apply(JobStarted(run_id="ok-1", job="users", at=start, trigger="api"))
    history.apply(
        JobSucceeded(
            run_id="ok-1", job="users", at=start + timedelta(seconds=3), records_read=10,
            records_written=9, inserted=9, duration_s=3.0,
        )
    )  # fmt: skip
    later = start + timedelta(minutes=1)
    history.apply(JobStarted(run_id="bad-2", job="users", at=later))
    history.apply(
        JobFailed(run_id="bad-2", job="users", at=later, error_type="HTTPError", message="503")
    )
    history.apply(JobStarted(run_id="o-1", job="other", at=later))
    return "ok-1"


def test_run_history(store: Store, admin: httpx.Client) -> None:
    admin.put("/api/jobs/users", json=definition())
    _history(store)
    runs = admin.get("/api/jobs/users/runs").json()
    assert [r["run_id"] for r in runs] == ["bad-2", "ok-1"]
    failed, ok = runs
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "HTTPError", "message": "503", "guard": None}
    assert (ok["status"], ok["records_written"], ok["duration_s"], ok["trigger"]) == (
        "succeeded", 9, 3.0, "api",
    )  # fmt: skip
    assert ok["started_at"] and ok["finished_at"] and ok["error"] is None
    assert admin.get("/api/runs/ok-1").json() == ok
    assert len(admin.get("/api/jobs/users/runs", params={"$limit": 1}).json()) == 1
    assert admin.get("/api/jobs/users/runs", params={"$limit": 0}).status_code == 400
    assert admin.get("/api/jobs/nope/runs").status_code == 404
    assert admin.get("/api/runs/nope").status_code == 404
    # the run of a job that no longer exists stays readable for admins
    assert admin.get("/api/runs/o-1").json()["status"] == "running"


def test_readers_see_jobs_of_collections_they_may_read(store: Store, server: ApiServer) -> None:
    with client_for(server, "admin") as admin:
        admin.put("/api/jobs/users", json=definition())
        admin.put("/api/jobs/other", json=definition("other", "other"))
    _history(store)
    with client_for(server, "narrow") as narrow:
        assert [j["name"] for j in narrow.get("/api/jobs").json()] == ["users"]
        assert narrow.get("/api/jobs/users").status_code == 200
        assert narrow.get("/api/jobs/users/runs").status_code == 200
        assert narrow.get("/api/runs/ok-1").status_code == 200
        for path in ("/api/jobs/other", "/api/jobs/other/runs", "/api/runs/o-1"):
            assert narrow.get(path).status_code == 404  # indistinguishable from missing
    with client_for(server, "reader") as reader:
        assert [j["name"] for j in reader.get("/api/jobs").json()] == ["other", "users"]
        assert reader.get("/api/runs/o-1").status_code == 200
