"""``slurp dev`` as one process doing everything, against real servers: it serves the
API and console, runs what the API and ``slurp run`` ask for (in-process broker, or
the configured Redis), keeps pause state across restarts, and imports slurper modules
next to the job file or in the working directory without ``PYTHONPATH``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from contracts.jobfile import parse_jobs
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from storage.history import History
from storage.jobs import JobRegistry
from storage.store import Store, connect
from tests.dev_harness import DevProcess, dev_env, slurp_command
from tests.worker_harness import wait_for

JOBS = """
jobs:
  - name: users
    datasources:
      - name: users
        type: inline
        records:
          - {id: 1, name: Leanne Graham, role: admin}
          - {id: 2, name: Ervin Howell, role: user}
          - {id: 3, name: Clementine Bauch, role: user}
    slurper: examples.slurpers:drop_admins
    collection: {type: upserted, name: users, upsert_key: id}
  - name: cities
    datasources:
      - {name: cities, type: inline, records: [{name: Zurich}, {name: Basel}]}
    schedule: {cron: "0 4 * * *", timezone: Europe/Zurich}
    collection: {type: versioned, name: cities, keep_versions: 2}
"""


@pytest.fixture
def db(mongo_url: str, mongo_db_name: str) -> Iterator[Store]:
    store = connect(mongo_url, mongo_db_name)
    yield store
    store.client.drop_database(mongo_db_name)
    store.close()


def _finished(store: Store, run_id: str) -> dict[str, object] | None:
    doc = History(store).get(run_id)
    return doc if doc and doc.get("status") in ("succeeded", "failed", "rejected") else None


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*slurp_command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


# -- the pause rule of a re-applied job file ----------------------------------------


def test_apply_keeps_an_operational_pause_unless_the_file_says_paused(db: Store) -> None:
    registry = JobRegistry(db)
    plain = parse_jobs(JOBS)[0]
    assert "paused" not in plain.model_fields_set
    assert registry.apply(plain).definition.paused is False  # a new job: as the file says
    registry.set_paused("users", True)  # from the CLI, the API or the console
    kept = registry.apply(plain)
    assert kept.definition.paused is True
    assert kept.revision == registry.get("users").revision  # type: ignore[union-attr]
    changed = plain.model_copy(update={"description": "edited"})
    assert registry.apply(changed).definition.paused is True  # an edit keeps it too
    explicit = parse_jobs(JOBS.replace("    slurper:", "    paused: false\n    slurper:"))[0]
    assert registry.apply(explicit).definition.paused is False  # the file says so
    explicit_on = parse_jobs(JOBS.replace("    slurper:", "    paused: true\n    slurper:"))[0]
    assert registry.apply(explicit_on).definition.paused is True
    assert registry.put(plain).definition.paused is False  # PUT replaces everything


# -- one process: API, console, worker, ticker ---------------------------------------


def test_dev_runs_what_the_api_and_slurp_run_ask_and_keeps_pauses(
    mongo_url: str, mongo_db_name: str, db: Store, tmp_path: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS)
    env = dev_env(mongo_url, mongo_db_name, tmp_path / ".slurp")
    dev = DevProcess(tmp_path, env, "jobs.yaml").start()
    try:
        assert dev.username == "admin" and len(dev.password) >= 12
        with dev.client() as client:
            assert client.get("/login").status_code == 200  # the console answers
            headers = {"Authorization": f"Bearer {dev.token()}"}
            queued = client.post("/api/jobs/users/runs", headers=headers, json={})
            assert queued.status_code == 202, queued.text  # no 503 without Redis
            run_id = queued.json()["run_id"]
            done = wait_for(lambda: _finished(db, run_id), 30, "the API's run")
            assert done["status"] == "succeeded" and done["records_written"] == 2
            paused = client.post("/api/jobs/cities/pause", headers=headers)
            assert paused.status_code == 200 and paused.json()["paused"] is True
        state = json.loads((tmp_path / ".slurp" / "dev.json").read_text())
        assert state["api_url"] == dev.url
        assert oct((tmp_path / ".slurp" / "dev.json").stat().st_mode & 0o777) == "0o600"
        # `slurp run` (no Redis configured) hands the run to this process.
        ran = _cli(env, tmp_path, "run", "cities", "--wait")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "on slurp dev (pid" in ran.stdout and "succeeded: 2 records" in ran.stdout
        latest = History(db).last_runs("cities", limit=1)[0]
        events = db.db["slurp_events"].find_one({"run_id": latest["_id"], "kind": "started"})
        assert events is not None and events["worker"] == f"local:{dev.proc.pid}"  # type: ignore[union-attr]
    finally:
        assert dev.stop() == 0, dev.log()
    assert not (tmp_path / ".slurp" / "dev.json").exists()
    assert "stopped" in dev.log()

    # Restarting with the same file keeps the pause made through the API ...
    again = DevProcess(tmp_path, env, "jobs.yaml").start()
    try:
        assert JobRegistry(db).require("cities").definition.paused is True
        assert "paused (kept from before, or set by the file): cities" in again.log()
    finally:
        again.stop()
    # ... and a file saying `paused: false` resumes it.
    resumed = JOBS.replace("    schedule:", "    paused: false\n    schedule:")
    (tmp_path / "jobs.yaml").write_text(resumed)
    done = _cli(env, tmp_path, "dev", "jobs.yaml", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert JobRegistry(db).require("cities").definition.paused is False


def test_dev_port_in_use_is_one_clear_line(
    mongo_url: str, mongo_db_name: str, tmp_path: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS)
    env = dev_env(mongo_url, mongo_db_name, tmp_path / ".slurp")
    first = DevProcess(tmp_path, env, "jobs.yaml").start()
    try:
        busy = _cli(env, tmp_path, "dev", "jobs.yaml", "--port", str(first.port))
        assert busy.returncode == 1
        assert f"cannot serve the console on 127.0.0.1:{first.port}" in busy.stderr
        assert "--port N" in busy.stderr
    finally:
        first.stop()


def test_dev_with_redis_consumes_runs_published_by_others(
    mongo_url: str, mongo_db_name: str, db: Store, redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS)
    queue = f"q{mongo_db_name[-8:]}"
    env = dev_env(
        mongo_url, mongo_db_name, tmp_path / ".slurp", SLURP_REDIS_URL=redis_url,
        SLURP_QUEUE_NAME=queue,
    )  # fmt: skip
    dev = DevProcess(tmp_path, env, "jobs.yaml").start()
    client = redis.Redis.from_url(redis_url)
    try:
        assert f"(Redis {redis_url})" in dev.log()
        # Another service publishes with plain redis-py: this process runs it.
        run = RunJob(job="users", requested_by="other-service")
        publish_run_job(client, run, queue)
        done = wait_for(lambda: _finished(db, run.run_id), 30, "the published run")
        assert done["status"] == "succeeded"
        started = db.db["slurp_events"].find_one({"run_id": run.run_id, "kind": "started"})
        assert started is not None and started["worker"].startswith("dev:")
        # The API publishes to that Redis too, and the console reads progress from it.
        with dev.client() as http:
            headers = {"Authorization": f"Bearer {dev.token()}"}
            queued = http.post("/api/jobs/cities/runs", headers=headers, json={})
            assert queued.status_code == 202, queued.text
        done = wait_for(lambda: _finished(db, queued.json()["run_id"]), 30, "the API's run")
        assert done["status"] == "succeeded"
        assert client.llen(f"dramatiq:{queue}") == 0  # nothing piles up unconsumed
    finally:
        dev.stop()
        client.close()


# -- slurper modules beside the job file or in the working directory -----------------

SLURPERS_JOBS = """
jobs:
  - name: beside
    datasources: [{name: rows, type: inline, records: [{id: 1}, {id: 2}]}]
    slurper: beside_mod:double
    collection: {type: normal, name: beside}
  - name: here
    datasources: [{name: rows, type: inline, records: [{id: 1}]}]
    slurper: here_mod:tag
    collection: {type: normal, name: here}
"""
REFUSED_JOB = """
jobs:
  - name: refused
    datasources: [{name: rows, type: inline, records: [{id: 1}]}]
    slurper: other_mod:tag
    collection: {type: normal, name: refused}
"""
TAG = "def tag(ctx, data_map):\n    return [{**r, 'tag': 'ok'} for r in data_map['rows']]\n"


def test_slurper_modules_import_without_pythonpath(
    mongo_url: str, mongo_db_name: str, db: Store, tmp_path: Path
) -> None:
    jobs_dir, work_dir = tmp_path / "jobs", tmp_path / "work"
    jobs_dir.mkdir()
    work_dir.mkdir()
    (jobs_dir / "jobs.yaml").write_text(SLURPERS_JOBS)
    (jobs_dir / "beside_mod.py").write_text(
        "def double(ctx, data_map):\n"
        "    return [{'id': r['id'], 'twice': r['id'] * 2} for r in data_map['rows']]\n"
    )
    (work_dir / "here_mod.py").write_text(TAG)
    (jobs_dir / "other_mod.py").write_text(TAG)  # importable, but not allowed
    env = dev_env(
        mongo_url, mongo_db_name, tmp_path / ".slurp",
        SLURP_SLURPER_MODULES="beside_mod,here_mod", PYTHONPATH="",
    )  # fmt: skip
    done = _cli(env, work_dir, "dev", str(jobs_dir / "jobs.yaml"), "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {doc["job"]: doc for doc in History(db).last_runs(limit=10)}
    assert runs["beside"]["status"] == "succeeded" and runs["here"]["status"] == "succeeded"
    assert runs["beside"]["records_written"] == 2
    # The allow-list still applies to modules that could be imported.
    (jobs_dir / "refused.yaml").write_text(REFUSED_JOB)
    refused = _cli(env, work_dir, "dev", str(jobs_dir / "refused.yaml"), "--once")
    assert refused.returncode == 1
    assert "'other_mod' is not under an allowed prefix" in refused.stderr
