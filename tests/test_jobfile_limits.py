"""Job files are bounded before they are parsed (size, YAML aliases, depth); schedules
that never fire are refused; one bad stored job never breaks listing the others.
The CLI runs as real subprocesses, the API on a real uvicorn server."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from api_harness import client_for, running_api

from contracts.errors import JobFileError
from contracts.jobfile import MAX_DEPTH, MAX_JOB_FILE_BYTES, load_jobs, parse_jobs
from contracts.jobs import Schedule
from storage.jobs import JOBS_COLLECTION, JobRegistry
from storage.store import Store

ROOT = Path(__file__).parents[1]
#: A child process may use at most this much address space: were a bomb expanded,
#: the child would die here instead of eating the machine's memory.
CHILD_ADDRESS_SPACE = 1024**3

# "Billion laughs": 9 levels of 9 aliases each = 9^9 = 387M strings, from ~440 bytes.
BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{level}: &{level} [{','.join([f'*{previous}'] * 9)}]\n"
        for previous, level in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "jobs: *i\n"
)

JOB = """\
jobs:
  - name: {name}
    datasources: [{{name: rows, type: inline, records: [{{id: 1}}]}}]
    schedule: {{cron: "{cron}"}}
    collection: {{type: normal, name: {name}}}
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def test_an_alias_bomb_is_refused_at_its_first_anchor() -> None:
    assert len(BOMB) < 500
    # In this process only a small bomb (729 strings): should the refusal ever break,
    # the full one is expanded only in the memory-limited children below.
    small = BOMB.split("d:")[0] + "jobs: *c\n"
    with pytest.raises(JobFileError) as raised:
        parse_jobs(small, source="bomb.yaml")
    assert raised.value.problems == [
        "bomb.yaml:1: YAML anchors and aliases (&name, *name) are not allowed in job files; "
        "write the values out"
    ]
    alias_only = "x: 1\njobs:\n  - *undefined\n"
    with pytest.raises(JobFileError, match=r"<jobs>:3: YAML anchors and aliases"):
        parse_jobs(alias_only)
    merge = "base: &base {type: normal}\njobs: [{name: a, collection: {<<: *base, name: a}}]\n"
    with pytest.raises(JobFileError, match=r"<jobs>:1: YAML anchors"):
        parse_jobs(merge)


def test_nesting_and_size_are_bounded(tmp_path: Path) -> None:
    deep = "jobs:\n  - params: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(JobFileError, match=rf"<jobs>:2: nested deeper than {MAX_DEPTH} levels"):
        parse_jobs(deep)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"jobs: []\n" + b"#" * MAX_JOB_FILE_BYTES)
    with pytest.raises(JobFileError) as raised:
        load_jobs(big)
    assert raised.value.problems == [
        f"{big}: the file is larger than {MAX_JOB_FILE_BYTES} bytes, the limit of a job file "
        "(split it into several files)"
    ]
    with pytest.raises(JobFileError, match="larger than 100 bytes"):
        parse_jobs("jobs: []\n" + " " * 100, max_bytes=100)
    fits = tmp_path / "fits.yaml"
    fits.write_text(JOB.format(name="a", cron="0 4 * * *"))
    assert [job.name for job in load_jobs(fits)] == ["a"]


@pytest.fixture
def cli(
    mongo_url: str, mongo_db_name: str, redis_url: str, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURP_")}
    env.update(SLURP_MONGO_URL=mongo_url, SLURP_MONGO_DB=mongo_db_name, SLURP_LOG_LEVEL="WARNING")

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "slurp", *args], env={**env, **extra_env}, cwd=tmp_path,
            capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory,
        )  # fmt: skip

    return run


def test_every_reader_of_job_files_refuses_the_bomb(
    cli: Callable[..., subprocess.CompletedProcess[str]], redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB)
    runs = {
        "validate": cli("validate", "bomb.yaml"),
        "jobs apply": cli("jobs", "apply", "bomb.yaml"),
        "ticker": cli("ticker", "--once", SLURP_REDIS_URL=redis_url, SLURP_JOBS_FILE="bomb.yaml"),
        "dev": cli("dev", "bomb.yaml", "--once"),
    }
    for command, result in runs.items():
        assert result.returncode != 0, command
        assert "bomb.yaml:1: YAML anchors and aliases" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr, command


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "0 12 31 4,6,9,11 *"])
def test_a_schedule_that_never_fires_is_refused_naming_the_field(cron: str) -> None:
    with pytest.raises(JobFileError) as raised:
        parse_jobs(JOB.format(name="never", cron=cron), source="jobs.yaml")
    [problem] = raised.value.problems
    assert problem.startswith(f"jobs.yaml:4: job 'never': schedule.cron: '{cron}' matches no date")
    assert "February 30" in problem


def test_rare_but_real_dates_are_accepted() -> None:
    for cron in ("0 0 29 2 *", "0 0 31 * *", "0 0 L 2 *", "@yearly"):
        assert Schedule(cron=cron).cron == cron


def _stored(store: Store) -> JobRegistry:
    """Two good jobs, and two bad documents written past validation."""
    registry = JobRegistry(store)
    for name in ("alpha", "omega"):
        registry.put(parse_jobs(JOB.format(name=name, cron="0 4 * * *"))[0])
    registry.put(parse_jobs(JOB.format(name="never", cron="0 4 * * *"))[0])
    docs = store.db[JOBS_COLLECTION]
    docs.update_one({"_id": "never"}, {"$set": {"definition.schedule.cron": "0 0 31 2 *"}})
    docs.insert_one({"_id": "garbage", "definition": {"name": 7}, "revision": "x"})
    return registry


def test_a_bad_stored_job_never_breaks_the_cli(
    store: Store, cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    _stored(store)
    listed = cli("jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in json.loads(listed.stdout)] == ["alpha", "omega"]
    assert "warning: stored job 'never' is invalid: schedule.cron" in listed.stderr
    assert "warning: stored job 'garbage' is invalid" in listed.stderr
    table = cli("jobs", "list")
    assert table.returncode == 0 and "alpha" in table.stdout and "invalid" in table.stdout
    shown = cli("jobs", "show", "omega")
    assert shown.returncode == 0 and "next fire: 20" in shown.stdout
    bad = cli("jobs", "show", "never")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: stored job 'never' is invalid: schedule.cron")
    (tmp_path / "fix.yaml").write_text(JOB.format(name="never", cron="0 5 * * *"))
    fixed = cli("jobs", "apply", "fix.yaml")
    assert "never: replaced (the stored definition was invalid)" in fixed.stdout, fixed.stderr
    assert cli("jobs", "show", "never").returncode == 0
    for result in (listed, table, shown, bad, fixed):
        assert "Traceback" not in result.stderr


def test_a_bad_stored_job_never_breaks_the_api(store: Store) -> None:
    _stored(store)
    with (
        running_api(store) as server,
        client_for(server, "admin") as admin,
        client_for(server, "reader") as reader,
    ):
        for client in (admin, reader):
            listing = client.get("/api/jobs")
            assert listing.status_code == 200
            assert [job["name"] for job in listing.json()] == ["alpha", "omega"]
            assert client.get("/api/jobs/alpha").status_code == 200
        invalid = admin.get("/api/jobs/never")
        assert invalid.status_code == 409
        assert "no longer validates" in invalid.json()["detail"]
        assert "31 2" not in invalid.json()["detail"]  # stored values stay in the log
        assert admin.get("/api/jobs/never/runs").json() == []
        assert reader.get("/api/jobs/never").status_code == 404  # as if absent
        assert admin.delete("/api/jobs/garbage").status_code == 204
        fixed = parse_jobs(JOB.format(name="never", cron="0 5 * * *"))[0]
        replaced = admin.put("/api/jobs/never", json=fixed.model_dump(mode="json"))
        assert replaced.status_code == 200, replaced.text
        assert admin.get("/api/jobs/never").json()["definition"]["schedule"]["cron"] == "0 5 * * *"
