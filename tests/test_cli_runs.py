"""The CLI against a real MongoDB-wire server: jobs, manual runs in-process, data,
history, versions, gc; errors are one clear line with a non-zero exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

JOBS = """
jobs:
  - name: users
    datasources:
      - name: users
        type: inline
        records:
          - {id: 1, name: Leanne Graham, username: Bret, role: admin}
          - {id: 2, name: Ervin Howell, username: Antonette, role: user}
    slurper: examples.slurpers:drop_admins
    collection: {type: upserted, name: users, upsert_key: id}
  - name: cities
    datasources:
      - {name: cities, type: inline, records: [{name: Zurich}, {name: Basel}]}
    schedule: {cron: "0 4 * * *", timezone: Europe/Zurich}
    collection: {type: versioned, name: cities, keep_versions: 2}
  - name: broken
    datasources:
      - {name: rows, type: inline, records: [{"no_id": 1}]}
    collection: {type: upserted, name: broken, upsert_key: id}
"""


@pytest.fixture
def cli(mongo_url: str, mongo_db_name: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURP_")}
    env.update(SLURP_MONGO_URL=mongo_url, SLURP_MONGO_DB=mongo_db_name, SLURP_LOG_LEVEL="WARNING")

    def run(
        *args: str, ok: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "slurp", *args], env={**env, **(extra_env or {})}, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc

    (tmp_path / "jobs.yaml").write_text(JOBS)
    return run


def test_apply_run_and_read_back(cli) -> None:  # type: ignore[no-untyped-def]
    assert "users: created" in cli("jobs", "apply", "jobs.yaml").stdout
    assert "users: unchanged" in cli("jobs", "apply", "jobs.yaml").stdout
    listed = json.loads(cli("jobs", "list", "--json").stdout)
    assert [j["name"] for j in listed] == ["broken", "cities", "users"]
    assert next(j for j in listed if j["name"] == "cities")["next_fire"].endswith(":00:00Z")
    assert "succeeded: 1 records written" in cli("run", "users").stdout
    assert json.loads(cli("data", "users", "--json").stdout) == [
        {"id": 2, "name": "Ervin Howell", "username": "Antonette", "role": "user"}
    ]
    cli("run", "cities")
    cli("run", "cities")
    versions = json.loads(cli("versions", "cities", "--json").stdout)
    assert [v["version"] for v in versions] == [1, 2]
    assert json.loads(cli("data", "cities", "--version", "1", "--json").stdout) == [
        {"name": "Zurich"}, {"name": "Basel"},
    ]  # fmt: skip
    runs = json.loads(cli("history", "cities", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert "history rebuilt from" in cli("rebuild-history").stdout
    assert len(json.loads(cli("history", "--json").stdout)) == 3


def test_errors_are_one_clear_line(cli) -> None:  # type: ignore[no-untyped-def]
    cli("jobs", "apply", "jobs.yaml")
    failed = cli("run", "broken", ok=False)
    assert "record at position 0: upsert key 'id' is missing" in failed.stderr
    assert json.loads(cli("history", "broken", "--json").stdout)[0]["status"] == "failed"
    assert cli("run", "nope", ok=False).stderr.strip() == (
        "error: no job named 'nope'; apply a job file first (slurp jobs apply FILE)"
    )
    assert "no collection named 'nope'" in cli("data", "nope", ok=False).stderr
    cli("run", "users")
    assert "kept versions: none" in cli("data", "users", "--version", "3", ok=False).stderr
    cli("jobs", "pause", "cities")
    paused = json.loads(cli("jobs", "list", "--json").stdout)
    assert next(j for j in paused if j["name"] == "cities")["paused"] is True
    assert "no job named 'nope'" in cli("jobs", "pause", "nope", ok=False).stderr
    cli("jobs", "delete", "broken")
    assert "broken" not in cli("jobs", "list").stdout
    assert "would drop 0 retired" in cli("gc", "--dry-run").stdout


def test_dev_once_on_the_shipped_examples(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = Path(__file__).resolve().parent.parent / "examples"
    (tmp_path / "examples").symlink_to(examples)
    done = cli("dev", "--once")
    assert "users" in done.stdout and "cities" in done.stdout and "failed" not in done.stdout
    assert json.loads(cli("data", "cities", "--json", "--limit", "0").stdout)
    (tmp_path / "bad.yaml").write_text(JOBS)
    failing = cli("dev", "bad.yaml", "--once", ok=False)
    assert "1 of 3 job(s) failed" in failing.stderr


FLAKY = """
jobs:
  - name: flaky
    datasources:
      - {name: none, type: inline, records: []}
    slurper: examples.slurpers:slow_numbers
    params: {count: 3, fail_at: 1}
    retry: {max_retries: 3}
    collection: {type: normal, name: flaky}
"""


def test_a_failed_in_process_run_ends_failed_not_retrying(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Nothing would deliver a retry to a CLI process: the run must end ``failed``
    (it once stayed ``retrying`` with no finish time forever)."""
    (tmp_path / "flaky.yaml").write_text(FLAKY)
    cli("jobs", "apply", "flaky.yaml")
    failed = cli("run", "flaky", ok=False)
    assert "not retried" in failed.stdout
    assert "asked to fail at record 1" in failed.stderr
    (doc,) = json.loads(cli("history", "flaky", "--json").stdout)
    assert doc["status"] == "failed" and doc["finished_at"]
    once = cli("dev", "flaky.yaml", "--once", ok=False)
    assert "1 of 1 job(s) failed" in once.stderr
    docs = json.loads(cli("history", "flaky", "--json").stdout)
    assert [d["status"] for d in docs] == ["failed", "failed"]
    assert all(d["finished_at"] for d in docs)


def test_cli_conventions(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--version; history readable when piped (whole values, no truncation) and its
    --json without internal fields; `data JOB` points to the job's collection;
    `versions` of a non-versioned collection says so; `run` with Redis down: one line."""
    import re

    from slurp import __version__

    assert cli("--version").stdout.strip() == f"slurp {__version__}"
    cli("jobs", "apply", "jobs.yaml")
    cli("run", "users")
    piped = cli("history").stdout.splitlines()  # stdout is a pipe here
    assert piped[0].split("\t")[:4] == ["run", "job", "trigger", "status"]
    run_id = piped[1].split("\t")[0]
    assert re.fullmatch(r"[0-9a-f-]{36}", run_id), piped  # whole, not cut at 80 columns
    (doc,) = json.loads(cli("history", "users", "--json").stdout)
    assert doc["run_id"] == run_id and "_id" not in doc and "order" not in doc
    assert doc["attempt_log"]["1:1"]["outcome"] == "succeeded"
    (tmp_path / "renamed.yaml").write_text(
        "jobs:\n  - name: people\n    datasources: [{name: a, type: inline, records: [{x: 1}]}]\n"
        "    collection: {type: normal, name: persons}\n"
    )
    cli("jobs", "apply", "renamed.yaml")
    hint = cli("data", "people", ok=False).stderr
    assert "'people' is a job: its records are in collection 'persons'" in hint
    not_versioned = cli("versions", "users", ok=False).stderr
    assert "type 'upserted', which keeps no versions" in not_versioned
    down = cli("run", "users", ok=False, extra_env={"SLURP_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.stderr.startswith("error: cannot queue the run: Redis at redis://127.0.0.1:1")
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
