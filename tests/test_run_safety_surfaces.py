"""Guards, force, change statistics, restore/pin and cancel where operators reach them:
the JSON API, the console (forms with CSRF) and the CLI, against a real uvicorn
server, the session's MongoDB-wire server and Redis. Runs in the history come from
the real ``Runner``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from contracts.jobfile import parse_jobs
from contracts.messages import RunJob
from contracts.publish import queue_keys
from datasources.runtime import Runtime
from slurp.settings import Settings
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store
from tests.api_harness import PASSWORDS, client_for, fresh_store, running_api
from workers.coordination import RedisCoordination
from workers.errors import RunFailed
from workers.events import DirectSink
from workers.recorder import EventRecorder
from workers.runner import Runner

JOBS = """
jobs:
  - name: people
    datasources:
      - name: people
        type: inline
        records: [{id: 1, name: Ann}, {id: 2, name: Bob}]
    collection: {type: upserted, name: people, upsert_key: id}
    guards: {min_records: 5, required_fields: [name]}
  - name: snap
    datasources:
      - {name: rows, type: inline, records: [{city: Zurich}, {city: Basel}]}
    collection: {type: versioned, name: snap, keep_versions: 3}
  - name: flat
    datasources:
      - {name: rows, type: inline, records: [{city: Bern}]}
    collection: {type: normal, name: flat}
"""


def handle(runner: Runner, job: str, **message: Any) -> str:
    run = RunJob(job=job, requested_by="test", **message)
    with contextlib.suppress(RunFailed):
        runner.handle(run.model_dump(mode="json"), attempt=1)
    return run.run_id


@pytest.fixture(scope="module")
def env(mongo_url: str, redis_url: str) -> Iterator[dict[str, Any]]:
    with fresh_store(mongo_url) as store:
        registry = JobRegistry(store)
        for definition in parse_jobs(JOBS):
            registry.put(definition)
        settings = Settings.model_validate(
            {"mongo_url": mongo_url, "mongo_db": store.db.name, "start_report_delay_s": 0}
        )
        client = redis.Redis.from_url(redis_url)
        recorder = EventRecorder(store)
        runner = Runner(
            settings, store, RedisCoordination(client), DirectSink(recorder),
            Runtime.from_settings(settings, collections=CollectionReader(store)), "test",
            can_retry=False,
        )  # fmt: skip
        runs = {
            "guarded": handle(runner, "people"),
            "forced": handle(runner, "people", force=True),
            "again": handle(runner, "people", force=True),
        }
        for _ in range(3):
            handle(runner, "snap")
        for _ in range(2):
            handle(runner, "flat")
        queue = f"q_{uuid.uuid4().hex[:8]}"
        with running_api(store, client, queue) as server:
            yield {"store": store, "server": server, "redis": client, "queue": queue,
                   "runs": runs, "runner": runner, "settings": settings}  # fmt: skip
        client.close()


# -- JSON API ---------------------------------------------------------------------------


def test_api_run_shows_guard_force_and_statistics(env: dict[str, Any]) -> None:
    runs = env["runs"]
    with client_for(env["server"], "reader") as reader:
        guarded = reader.get(f"/api/runs/{runs['guarded']}").json()
        assert guarded["status"] == "failed" and guarded["force"] is False
        assert guarded["error"]["type"] == "GuardFailed"
        assert guarded["error"]["guard"] == {
            "name": "min_records", "figures": {"records": 2, "min_records": 5}, "violations": [],
        }  # fmt: skip
        forced = reader.get(f"/api/runs/{runs['forced']}").json()
        assert forced["force"] is True and forced["status"] == "succeeded"
        again = reader.get(f"/api/runs/{runs['again']}").json()
        stats = ("inserted", "updated", "unchanged", "removed", "total")
        assert [forced[k] for k in stats] == [2, 0, 0, 0, 2]
        assert [again[k] for k in stats] == [0, 0, 2, 0, 2]


def test_api_run_with_force_queues_it(env: dict[str, Any]) -> None:
    with client_for(env["server"], "admin") as admin:
        answer = admin.post("/api/jobs/people/runs", json={"force": True})
        assert answer.status_code == 202
    keys = queue_keys(env["queue"])
    message_id = env["redis"].lindex(keys.queue, -1).decode()
    message = json.loads(env["redis"].hget(keys.messages, message_id))
    assert message["args"][0]["force"] is True


def test_api_restore_and_pin(env: dict[str, Any]) -> None:
    with client_for(env["server"], "admin") as admin, client_for(env["server"], "reader") as reader:
        assert reader.post("/api/collections/snap/versions/1/restore").status_code == 403
        pinned = admin.post("/api/collections/snap/versions/2/pin")
        assert pinned.status_code == 200 and pinned.json()["pinned"] is True
        restored = admin.post("/api/collections/snap/versions/1/restore")
        assert restored.status_code == 200, restored.text
        assert restored.json() == {
            "collection": "snap", "records": 2, "version": 4, "restored_from": 1,
        }  # fmt: skip
        versions = admin.get("/api/collections/snap/versions").json()
        assert [(v["number"], v["pinned"], v["restored_from"]) for v in versions] == [
            (2, True, None), (3, False, None), (4, False, 1),
        ]  # fmt: skip
        assert versions[-1]["restored_by"] == "api:admin"
        assert admin.delete("/api/collections/snap/versions/2/pin").json()["pinned"] is False
        live = admin.post("/api/collections/snap/versions/4/restore")
        assert live.status_code == 409 and "live data already" in live.json()["detail"]
        assert admin.post("/api/collections/snap/versions/99/restore").status_code == 404
        no_versions = admin.post("/api/collections/people/versions/1/restore")
        assert no_versions.status_code == 409


def test_api_restores_the_previous_data_of_a_normal_collection(env: dict[str, Any]) -> None:
    with client_for(env["server"], "admin") as admin:
        copies = admin.get("/api/collections/flat/previous").json()
        assert [(c["index"], c["records"]) for c in copies] == [(1, 1)]
        restored = admin.post("/api/collections/flat/previous/1/restore")
        assert restored.status_code == 200 and restored.json()["version"] is None
        assert admin.post("/api/collections/flat/previous/5/restore").status_code == 409
        assert admin.get("/api/collections/people/previous").json() == []


# -- console ---------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:2000]
    return found.group(1)


@pytest.fixture
def console(env: dict[str, Any]) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=env["server"].url, timeout=30.0)
    form = client.get("/login")
    data = {"csrf": csrf_of(form.text), "username": "admin", "password": PASSWORDS["admin"],
            "next": "/"}  # fmt: skip
    assert client.post("/login", data=data).status_code == 303
    yield client
    client.close()


def test_console_shows_guard_failure_statistics_and_force(
    env: dict[str, Any], console: httpx.Client
) -> None:
    runs = env["runs"]
    failed = console.get(f"/runs/{runs['guarded']}").text
    assert 'id="guard"' in failed and "<code>min_records</code>" in failed
    again = console.get(f"/runs/{runs['again']}").text
    assert '<dd id="changes">0 inserted, 0 updated, 2 unchanged, 0 removed;' in again
    assert 'id="forced"' in again
    job = console.get("/jobs/people").text
    assert 'name="force" id="force"' in job  # the job has guards
    assert '<th scope="col" class="num">Unchanged</th>' in job
    assert 'name="force"' not in console.get("/jobs/snap").text  # no guards: no checkbox
    before = env["redis"].llen(queue_keys(env["queue"]).queue)
    answer = console.post("/jobs/people/run", data={"csrf": csrf_of(job), "force": "on"})
    assert answer.status_code == 303
    assert env["redis"].llen(queue_keys(env["queue"]).queue) == before + 1
    keys = queue_keys(env["queue"])
    message_id = env["redis"].lindex(keys.queue, -1).decode()
    assert json.loads(env["redis"].hget(keys.messages, message_id))["args"][0]["force"] is True


def test_console_cancels_a_queued_run(env: dict[str, Any], console: httpx.Client) -> None:
    page = console.get("/jobs/snap")
    answer = console.post("/jobs/snap/run", data={"csrf": csrf_of(page.text)})
    location = answer.headers["location"]
    run_id = location.split("/runs/")[1].split("?")[0]
    run_page = console.get(location).text
    assert 'id="cancel-run"' in run_page
    forged = console.post(f"/runs/{run_id}/cancel", data={"csrf": "forged", "job": "snap"})
    assert forged.status_code == 403
    done = console.post(f"/runs/{run_id}/cancel", data={"csrf": csrf_of(run_page), "job": "snap"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=cancel-requested")
    assert "Cancel requested" in console.get(done.headers["location"]).text
    # a worker taking the message skips it
    handle(env["runner"], "snap", run_id=run_id)
    doc = History(env["store"]).get(run_id)
    assert doc is not None and doc["status"] == "cancelled"
    ended = console.get(location).text
    assert 'id="cancel-run"' not in ended and "cancelled by console:admin" in ended


def test_console_restores_and_pins(env: dict[str, Any], console: httpx.Client) -> None:
    page = console.get("/collections/snap").text
    assert 'id="restore-2"' in page and 'id="pin-3"' in page
    token = csrf_of(page)
    pinned = console.post("/collections/snap/versions/3/pin", data={"csrf": token})
    assert pinned.status_code == 303 and pinned.headers["location"].endswith("done=pin")
    restored = console.post("/collections/snap/versions/2/restore", data={"csrf": token})
    assert restored.status_code == 303
    shown = console.get(restored.headers["location"]).text
    assert "Restored: the version is live again" in shown and "restore of 2" in shown
    assert "pinned</span>" in shown
    flat = console.get("/collections/flat").text
    assert "Previous data" in flat and 'id="restore-previous-1"' in flat
    back = console.post("/collections/flat/previous/1/restore", data={"csrf": csrf_of(flat)})
    assert back.status_code == 303 and back.headers["location"].endswith("done=restore-previous")
    gone = console.post("/collections/flat/previous/9/restore", data={"csrf": csrf_of(flat)})
    assert gone.status_code == 409


# -- CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli(env: dict[str, Any], mongo_url: str, redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURP_")}
    base.update(SLURP_MONGO_URL=mongo_url, SLURP_MONGO_DB=env["store"].db.name,
                SLURP_LOG_LEVEL="WARNING")  # fmt: skip

    def run(*args: str, ok: bool = True, redis: bool = False) -> subprocess.CompletedProcess[str]:
        extra = {"SLURP_REDIS_URL": redis_url, "SLURP_QUEUE_NAME": env["queue"]} if redis else {}
        proc = subprocess.run(
            [sys.executable, "-m", "slurp", *args], env={**base, **extra}, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc

    return run


def test_cli_force_history_versions_and_cancel(env: dict[str, Any], cli: Any) -> None:
    store: Store = env["store"]
    refused = cli("run", "people", ok=False).stderr  # in this process: the guard fails
    assert "GuardFailed: guard min_records failed: the run wrote 2 records" in refused
    forced = cli("run", "people", "--force").stdout
    assert "0 inserted, 0 updated, 2 unchanged, 0 removed; 2 live" in forced
    assert "(forced: guards not checked)" in forced
    history = json.loads(cli("history", "people", "--json").stdout)
    assert history[0]["force"] is True and history[0]["unchanged"] == 2
    table = cli("history", "people").stdout.splitlines()  # piped: tab-separated
    assert table[0].split("\t")[8:13] == ["inserted", "updated", "unchanged", "removed", "total"]
    assert table[1].split("\t")[8:13] == ["0", "0", "2", "0", "2"]

    cli("versions", "pin", "snap", "3")
    listed = json.loads(cli("versions", "snap", "--json").stdout)
    assert {v["version"]: v["pinned"] for v in listed}[3] is True
    restored = cli("versions", "restore", "snap", "3").stdout
    assert "restored version 3 of snap as version" in restored
    assert (
        "restored the previous data of flat"
        in cli("versions", "restore", "flat", "previous").stdout
    )
    assert json.loads(cli("versions", "flat", "--json").stdout)[0]["previous"] == 1
    assert "keeps no versions" in cli("versions", "restore", "people", "1", ok=False).stderr

    run_id = str(uuid.uuid4())
    assert "is skipped when a worker takes it" in cli("cancel", run_id, redis=True).stdout
    assert RedisCoordination(env["redis"]).cancel_requested(run_id) == "slurp-cli"
    ended = env["runs"]["guarded"]
    assert "has ended already (failed)" in cli("cancel", ended, redis=True, ok=False).stderr
    assert CollectionReader(store).count("people") == 2
