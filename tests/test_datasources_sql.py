"""SQL datasource on a real PostgreSQL server and on SQLite files.

PostgreSQL: the first reachable of ``SLURP_TEST_POSTGRES_URL``, the libpq ``PG*``
environment, and ``postgresql://postgres@127.0.0.1:5432/postgres``; else a private
cluster started by ``scripts/postgres`` (installing Debian's package if needed). When
none can be had the PostgreSQL tests are skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from datasources import (
    FetchError,
    NotAllowedError,
    Progress,
    ResponseFormatError,
    RunContext,
    run_slurper,
)
from datasources.progress import SourceCounts
from storage.records import normalise
from tests.datasource_servers import fast_runtime, make_job, records_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    candidates = [os.environ.get("SLURP_TEST_POSTGRES_URL", "")]
    if any(key.startswith("PG") for key in os.environ):
        candidates.append("postgresql://")  # libpq reads PGHOST, PGUSER, ... itself
    candidates.append(DEFAULT_URL)
    for url in filter(None, candidates):
        if _reachable(url):
            yield url
            return
    script = ROOT / "scripts" / "postgres"
    done = subprocess.run(
        [str(script), "start"], capture_output=True, text=True, timeout=900, check=False
    )
    url = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not _reachable(url):
        message = f"no PostgreSQL reachable and scripts/postgres failed:\n{done.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield url
    subprocess.run([str(script), "stop"], capture_output=True, timeout=120, check=False)


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    """A fresh table name, dropped after the test."""
    name = f"slurp_t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {name}")


def pg_job(url: str, query: str, **extra: Any) -> Any:
    return make_job([{"name": "db", "type": "sql", "url": url, "query": query, **extra}])


def test_postgres_streams_through_a_server_side_cursor(postgres_url: str, pg_table: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {pg_table} (id int PRIMARY KEY, name text)")
        connection.execute(
            f"INSERT INTO {pg_table} SELECT i, 'n' || i FROM generate_series(1, 5000) AS i"
        )
    job = pg_job(postgres_url, f"SELECT id, name FROM {pg_table} ORDER BY id", batch_size=1000)
    job = job.model_copy(update={"name": f"sqljob-{uuid.uuid4().hex[:8]}"})
    progress = Progress()
    records = run_slurper(job, RunContext(job=job.name, run_id="r"), fast_runtime(), progress)
    assert next(records) == {"id": 1, "name": "n1"}
    with psycopg.connect(postgres_url) as observer:
        state, query = observer.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
            [f"slurp:{job.name}"],
        ).fetchone() or ("gone", "")
    # the server holds the result: the client asked for one batch of 1000 rows
    assert state == "idle in transaction"
    fetched = re.match(r'FETCH FORWARD (\d+) FROM "', query)
    assert fetched is not None and int(fetched.group(1)) <= 1000, query
    rest = list(records)
    assert len(rest) == 4999 and rest[-1] == {"id": 5000, "name": "n5000"}
    assert progress.snapshot()["db"] == SourceCounts(items=5000, pages=5, done=True)


def test_postgres_types_become_storable_values(postgres_url: str) -> None:
    query = """
        SELECT 42::int8 AS big, 1.50::numeric(5,2) AS price, true AS flag, NULL::text AS nothing,
               '2026-03-01T04:00:00+01:00'::timestamptz AS at, '2026-03-01'::date AS day,
               '12:30:05'::time AS clock, '1 day 2 hours'::interval AS span,
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, '\\x0102ff'::bytea AS raw,
               ARRAY[1, 2, 3] AS nums, '{"k": [1, {"x": null}]}'::jsonb AS doc,
               '10.0.0.1'::inet AS addr
    """
    (record,) = records_of(pg_job(postgres_url, query))
    assert normalise(record, 0) == {
        "big": 42, "price": 1.5, "flag": True, "nothing": None,
        "at": "2026-03-01T03:00:00Z", "day": "2026-03-01", "clock": "12:30:05",
        "span": 93600.0, "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "raw": "AQL/",
        "nums": [1, 2, 3], "doc": {"k": [1, {"x": None}]}, "addr": "10.0.0.1",
    }  # fmt: skip


def test_postgres_params_take_templates(postgres_url: str) -> None:
    job = pg_job(
        postgres_url,
        "SELECT %(day)s::date AS day, %(n)s::int AS n",
        params={"day": "${yesterday}", "n": 7},
    )
    ctx = RunContext(job="job", run_id="r", now=datetime(2026, 5, 1, 8, tzinfo=UTC))
    assert records_of(job, ctx=ctx) == [{"day": datetime(2026, 4, 30).date(), "n": 7}]


def test_postgres_errors(postgres_url: str) -> None:
    with pytest.raises(FetchError, match=r"query failed: .*does not exist") as bad_sql:
        records_of(pg_job(postgres_url, "SELECT * FROM no_such_table_here"))
    assert not bad_sql.value.retryable
    with pytest.raises(ResponseFormatError, match="repeated column names: a"):
        records_of(pg_job(postgres_url, "SELECT 1 AS a, 2 AS a"))
    closed = "postgresql://postgres@127.0.0.1:1/postgres"
    runtime = fast_runtime(environ={"PGPASS_FOR_TEST": "db-pa55-secret"})
    with pytest.raises(FetchError, match="cannot connect to PostgreSQL") as down:
        records_of(pg_job(closed, "SELECT 1", password_env="PGPASS_FOR_TEST"), runtime)
    assert down.value.retryable and "db-pa55-secret" not in str(down.value)


def test_a_password_in_the_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not contain a password"):
        pg_job("postgresql://app:hunter2@db/app", "SELECT 1")


def test_a_url_password_from_an_allowed_variable(postgres_url: str) -> None:
    if "@" not in postgres_url:
        pytest.skip("the test server's URL names no user")
    scheme, _, rest = postgres_url.partition("://")
    user, _, host = rest.partition("@")
    job = pg_job(f"{scheme}://{user.partition(':')[0]}:${{env.PG_PW}}@{host}", "SELECT 1 AS one")
    password = user.partition(":")[2] or "unused-by-trust-auth"
    allowed = fast_runtime(environ={"PG_PW": password})
    assert records_of(job, allowed) == [{"one": 1}]
    with pytest.raises(NotAllowedError, match="PG_PW"):
        records_of(job, fast_runtime(environ={"PG_PW": password}, env_allow=[]))


def test_sqlite_relative_and_absolute_paths(tmp_path: Path, monkeypatch: Any) -> None:
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE items (id INTEGER, name TEXT, price REAL, raw BLOB)")
        connection.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(i, f"item {i}", i * 1.5, b"\x00\x01") for i in range(1, 2501)],
        )
    query = "SELECT id, name, price, raw FROM items WHERE id > :min ORDER BY id"
    absolute = pg_job(f"sqlite:///{database}", query, params={"min": 10}, batch_size=500)
    progress = Progress()
    records = records_of(absolute, progress=progress)
    assert len(records) == 2490
    assert records[0] == {"id": 11, "name": "item 11", "price": 16.5, "raw": "AAE="}
    assert progress.snapshot()["db"].pages == 5
    monkeypatch.chdir(tmp_path)
    relative = pg_job("sqlite:///shop.db", "SELECT count(*) AS n FROM items")
    assert records_of(relative) == [{"n": 2500}]


def test_sqlite_errors(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot open SQLite database"):
        records_of(pg_job(f"sqlite:///{tmp_path / 'missing.db'}", "SELECT 1"))
    database = tmp_path / "empty.db"
    sqlite3.connect(database).close()
    with pytest.raises(FetchError, match="SQLite query failed: no such table") as info:
        records_of(pg_job(f"sqlite:///{database}", "SELECT * FROM nope"))
    assert not info.value.retryable
