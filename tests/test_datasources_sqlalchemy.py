"""The ``sql`` source over SQLAlchemy against real servers: PostgreSQL, MariaDB (found
or started by ``scripts/postgres`` / ``scripts/mariadb``), SQLite files; Oracle only when
``SLURP_TEST_ORACLE_DSN`` names one (no Oracle server runs on these machines: its
URL handling, driver loading and type mapping are tested without a server).

The same table of types is read from every database and must give the same records
(the table in docs/datasources.md, "Types").
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest
from pydantic import ValidationError

from datasources import (
    ConfigError,
    FetchError,
    NotAllowedError,
    Progress,
    RunContext,
    run_slurper,
)
from datasources.rows import jsonable
from datasources.sql import engine_url, split_password
from storage.records import normalise
from tests.database_servers import find_mariadb, find_postgres, password_of, without_password
from tests.datasource_servers import fast_runtime, make_job, records_of

#: One row of every type, as storage stores it, from every database. Booleans are the
#: documented exception: MySQL/MariaDB and SQLite have none (0/1 integers).
EXPECTED = {
    "id": 1,
    "amount": 12.5,
    "ratio": 0.25,
    "name": "Zoë",
    "note": "a long text",
    "raw": "AP8=",
    "day": "2026-03-01",
    "at": "2026-03-01T03:00:00Z",
    "local": "2026-03-01T03:00:00Z",
    "clock": "12:30:05",
    "absent": None,
}
COLUMNS = "id, amount, ratio, flag, name, note, raw, day, at, local, clock, absent"


def sql_job(url: str, query: str, **extra: Any) -> Any:
    return make_job([{"name": "db", "type": "sql", "url": url, "query": query, **extra}])


def stored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [normalise(record, i) for i, record in enumerate(records)]


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> str:
    return find_postgres()


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    name = f"slurp_t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {name}")
        connection.execute(f"DROP SEQUENCE IF EXISTS {name}_seq")


def test_postgres_types_match_the_table(postgres_url: str, pg_table: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE {pg_table} (id int, amount numeric(12,2), ratio double precision, "
            "flag boolean, name varchar(50), note text, raw bytea, day date, at timestamptz, "
            "local timestamp, clock time, absent varchar(5))"
        )
        connection.execute(
            f"INSERT INTO {pg_table} VALUES (1, 12.50, 0.25, true, 'Zoë', 'a long text', "
            "'\\x00ff', '2026-03-01', '2026-03-01 04:00:00+01', '2026-03-01 03:00:00', "
            "'12:30:05', NULL)"
        )
    query = f"SELECT {COLUMNS} FROM {pg_table}"
    assert stored(records_of(sql_job(postgres_url, query))) == [{**EXPECTED, "flag": True}]
    (exact,) = records_of(sql_job(postgres_url, query, decimals="string"))
    assert exact["amount"] == "12.50"


def test_postgres_session_is_read_only_and_time_limited(postgres_url: str, pg_table: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {pg_table} (id int)")
        connection.execute(f"CREATE SEQUENCE {pg_table}_seq")
    # A cursor can only be declared for a query (DECLARE refuses INSERT ... RETURNING),
    # and the transaction is read-only: even a function that writes is refused.
    with pytest.raises(FetchError, match="syntax error"):
        records_of(sql_job(postgres_url, f"INSERT INTO {pg_table} VALUES (1) RETURNING id"))
    with pytest.raises(FetchError, match="read-only transaction") as refused:
        records_of(sql_job(postgres_url, f"SELECT nextval('{pg_table}_seq') AS n"))
    assert not refused.value.retryable
    with pytest.raises(FetchError, match="statement timeout") as slow:
        records_of(sql_job(postgres_url, "SELECT pg_sleep(5)", timeout_s=0.3))
    assert slow.value.retryable


def test_postgres_named_params_and_percent_signs(postgres_url: str) -> None:
    job = sql_job(
        postgres_url, "SELECT %(n)s::int * 2 AS twice, 'a%%' AS literal", params={"n": 21}
    )
    assert records_of(job) == [{"twice": 42, "literal": "a%"}]
    no_params = sql_job(postgres_url, "SELECT 'a%' AS literal")
    assert records_of(no_params) == [{"literal": "a%"}]


# -- MariaDB ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mariadb_url() -> str:
    return find_mariadb()


def mariadb_connect(url: str) -> Any:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=password_of(url),
        database="slurp_test",
        autocommit=True,
    )


@pytest.fixture
def mariadb_table(mariadb_url: str) -> Iterator[str]:
    name = f"slurp_t_{uuid.uuid4().hex[:10]}"
    yield name
    connection = mariadb_connect(mariadb_url)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
    connection.close()


def mariadb_source(url: str, **extra: Any) -> tuple[str, Any]:
    """A job URL with the password as ``${env.DB_PW}``, and a runtime that has it."""
    user_url = without_password(url)
    if password_of(url):
        scheme, _, rest = user_url.partition("://")
        user, _, host = rest.partition("@")
        user_url = f"{scheme}://{user}:${{env.DB_PW}}@{host}"
    return user_url, fast_runtime(environ={"DB_PW": password_of(url) or "unused"}, **extra)


def test_mariadb_types_match_the_table(mariadb_url: str, mariadb_table: str) -> None:
    connection = mariadb_connect(mariadb_url)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {mariadb_table} (id int, amount decimal(12,2), ratio double, "
            "flag boolean, name varchar(50), note text, raw varbinary(16), day date, "
            "at timestamp NULL, local datetime, clock time, absent varchar(5))"
        )
        cursor.execute("SET time_zone = '+01:00'")
        cursor.execute(
            f"INSERT INTO {mariadb_table} VALUES (1, 12.50, 0.25, true, 'Zoë', 'a long text', "
            "x'00ff', '2026-03-01', '2026-03-01 04:00:00', '2026-03-01 03:00:00', "
            "'12:30:05', NULL)"
        )
    connection.close()
    url, runtime = mariadb_source(mariadb_url)
    query = f"SELECT {COLUMNS} FROM {mariadb_table}"
    assert stored(records_of(sql_job(url, query), runtime)) == [{**EXPECTED, "flag": 1}]
    (exact,) = records_of(sql_job(url, query, decimals="string"), runtime)
    assert exact["amount"] == "12.50"
    json_query = "SELECT JSON_OBJECT('k', 1) AS doc"
    (doc,) = records_of(sql_job(url, json_query), runtime)
    assert doc["doc"] in ({"k": 1}, '{"k": 1}')  # MariaDB's JSON is LONGTEXT: a string


def test_mariadb_streams_unbuffered(mariadb_url: str, mariadb_table: str) -> None:
    connection = mariadb_connect(mariadb_url)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {mariadb_table} (id int PRIMARY KEY, pad varchar(300))")
        cursor.execute(
            f"INSERT INTO {mariadb_table} SELECT seq, REPEAT('x', 300) FROM seq_1_to_60000"
        )
    url, runtime = mariadb_source(mariadb_url)
    marker = uuid.uuid4().hex[:8]
    query = f"SELECT id, pad, '{marker}' AS marker FROM {mariadb_table} ORDER BY id"
    job = sql_job(url, query, params={}, batch_size=500)
    progress = Progress()
    records = run_slurper(job, RunContext(job="job", run_id="r"), runtime, progress)
    assert next(records)["id"] == 1
    with connection.cursor() as cursor:  # the server is still sending: 18 MB, unbuffered
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
            [f"%'{marker}'%"],
        )
        assert cursor.fetchone()[0] >= 1
    rest = list(records)
    connection.close()
    assert len(rest) == 59_999 and rest[-1]["id"] == 60_000
    assert progress.snapshot()["db"].pages == 120


def test_mariadb_errors_read_only_and_params(mariadb_url: str, mariadb_table: str) -> None:
    url, runtime = mariadb_source(mariadb_url)
    with pytest.raises(FetchError, match=r"MySQL query failed: .*doesn't exist") as missing:
        records_of(sql_job(url, "SELECT * FROM no_such_table_here"), runtime)
    assert not missing.value.retryable
    connection = mariadb_connect(mariadb_url)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {mariadb_table} (id int)")
    connection.close()
    with pytest.raises(FetchError, match="READ ONLY") as refused:
        records_of(sql_job(url, f"INSERT INTO {mariadb_table} VALUES (1)"), runtime)
    assert not refused.value.retryable
    with pytest.raises(FetchError, match="interrupted") as slow:
        records_of(sql_job(url, "SELECT SLEEP(5) AS s FROM DUAL", timeout_s=0.5), runtime)
    assert slow.value.retryable
    params = sql_job(url, "SELECT %(n)s * 2 AS twice", params={"n": 21})
    assert records_of(params, runtime) == [{"twice": 42}]
    if password_of(mariadb_url):
        with pytest.raises(NotAllowedError, match="DB_PW"):
            records_of(sql_job(url, "SELECT 1"), fast_runtime(environ={"DB_PW": "x"}, env_allow=[]))
        bad = fast_runtime(environ={"DB_PW": "wrong-pa55word"})
        with pytest.raises(FetchError, match="cannot connect to MySQL") as denied:
            records_of(sql_job(url, "SELECT 1"), bad)
        assert "wrong-pa55word" not in str(denied.value)


# -- SQLite ----------------------------------------------------------------------------


def test_sqlite_types_match_the_table(tmp_path: Path) -> None:
    database = tmp_path / "types.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TABLE t (id INTEGER, amount NUMERIC, ratio REAL, flag BOOLEAN, name TEXT, "
            "note TEXT, raw BLOB, day TEXT, at TEXT, local TEXT, clock TEXT, absent TEXT)"
        )
        connection.execute(
            "INSERT INTO t VALUES (1, 12.50, 0.25, 1, 'Zoë', 'a long text', x'00ff', "
            "'2026-03-01', '2026-03-01T03:00:00Z', '2026-03-01T03:00:00Z', '12:30:05', NULL)"
        )
    job = sql_job(f"sqlite:///{database}", f"SELECT {COLUMNS} FROM t")
    assert stored(records_of(job)) == [{**EXPECTED, "flag": 1}]


def test_sqlite_stays_read_only_without_attach_and_time_limited(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (id INTEGER)")
    with pytest.raises(FetchError, match="readonly"):
        records_of(sql_job(f"sqlite:///{database}", "INSERT INTO t VALUES (1) RETURNING id"))
    with pytest.raises(FetchError, match="too many attached"):
        records_of(sql_job(f"sqlite:///{database}", f"ATTACH '{tmp_path / 'b.db'}' AS b"))
    assert not (tmp_path / "b.db").exists()
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    with pytest.raises(FetchError, match="interrupted") as slow:
        records_of(sql_job(f"sqlite:///{database}", endless, timeout_s=0.3))
    assert slow.value.retryable


def test_sqlite_outside_the_roots_is_refused(tmp_path: Path) -> None:
    job = sql_job("sqlite:////etc/passwd.db", "SELECT 1")
    with pytest.raises(NotAllowedError, match="SLURP_FILE_ROOTS"):
        records_of(job, fast_runtime(file_roots=[tmp_path]))


# -- URLs, drivers, Oracle -------------------------------------------------------------


def test_urls_name_a_known_dialect_and_driver() -> None:
    for url in (
        "postgresql://u@h/db",
        "postgres://u@h/db",
        "postgresql+psycopg://u@h/db",
        "mysql://u@h/db",
        "mariadb+pymysql://u@h/db",
        "oracle://u@h:1521/?service_name=FREEPDB1",
        "oracle+oracledb://u@h:1521/?service_name=FREEPDB1",
        "mssql://u@h:1433/db",
        "mssql+pymssql://u@h:1433/db",
        "sqlite:///x.db",
    ):
        sql_job(url, "SELECT 1")
    with pytest.raises(ValidationError, match="must start with one of"):
        sql_job("db2://u@h/db", "SELECT 1")
    with pytest.raises(ValidationError, match="driver must be one of oracledb"):
        sql_job("oracle+cx_oracle://u@h/db", "SELECT 1")
    with pytest.raises(ValidationError, match="written literally"):
        sql_job("oracle://scott:tiger@h:1521/?service_name=x", "SELECT 1")


def test_engine_urls() -> None:
    url, variable = split_password(
        "oracle://scott:${env.ORA_PW}@db.example:1521/?service_name=P1", None
    )
    assert (url, variable) == ("oracle://scott@db.example:1521/?service_name=P1", "ORA_PW")
    oracle = engine_url(url, "s3cret")
    assert oracle.drivername == "oracle+oracledb"
    assert (oracle.username, oracle.password, oracle.host, oracle.port) == (
        "scott", "s3cret", "db.example", 1521,
    )  # fmt: skip
    assert oracle.query == {"service_name": "P1"}
    assert engine_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert engine_url("mariadb://u@h/db").drivername == "mariadb+pymysql"
    assert engine_url("mssql://u@h/db").drivername == "mssql+pymssql"


def test_oracle_driver_is_thin_and_maps_types_without_a_server() -> None:
    oracledb = pytest.importorskip("oracledb")
    import sqlalchemy as sa

    engine = sa.create_engine(engine_url("oracle://scott@db.example:1521/?service_name=P1"))
    assert engine.dialect.driver == "oracledb"
    assert oracledb.is_thin_mode()  # pure Python: no Oracle client libraries loaded
    # The dialect fetches CLOB/NCLOB as strings and BLOB as raw bytes (no LOB locators,
    # no round trip per value); NUMBER(p, s>0) as Decimal.
    handler = engine.dialect._generate_connection_outputtype_handler()  # type: ignore[attr-defined]
    made: list[tuple[Any, ...]] = []

    class Cursor:
        arraysize = 500

        def var(self, *args: Any, **kwargs: Any) -> str:
            made.append(args)
            return "var"

    for kind in (oracledb.DB_TYPE_CLOB, oracledb.DB_TYPE_NCLOB, oracledb.DB_TYPE_BLOB):
        assert handler(Cursor(), "c", kind, 0, 0, 0) == "var"
    assert made[0][0] in (
        oracledb.DB_TYPE_LONG,
        oracledb.DB_TYPE_NVARCHAR,
        oracledb.DB_TYPE_VARCHAR,
        str,
    )
    assert made[2][0] is oracledb.DB_TYPE_RAW
    # What the driver then hands over becomes the documented values.
    assert jsonable(Decimal("12.50")) == Decimal("12.50")  # storage: 12.5
    assert jsonable(Decimal("12.50"), "string") == "12.50"
    assert normalise({"d": datetime(2026, 3, 1, 3)}, 0) == {"d": "2026-03-01T03:00:00Z"}

    class Lob:  # a LOB locator, when a query turns the conversion off
        def __init__(self, value: Any) -> None:
            self.value = value

        def read(self) -> Any:
            return self.value

    assert jsonable(Lob("text " * 3)) == "text text text "
    assert jsonable(Lob(b"\x00\xff")) == "AP8="


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pymssql(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.partition(".")[0] == "pymssql":
            raise ModuleNotFoundError("No module named 'pymssql'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pymssql)
    job = sql_job("mssql://reporter@127.0.0.1:1/db", "SELECT 1")
    with pytest.raises(ConfigError, match=r"install slurp\[mssql\]") as missing:
        records_of(job)
    assert not missing.value.retryable


def test_against_a_real_oracle_when_one_is_named() -> None:
    dsn = os.environ.get("SLURP_TEST_ORACLE_DSN")
    if not dsn:
        pytest.skip(
            "opt-in: set SLURP_TEST_ORACLE_DSN=oracle://user:password@host:1521/?service_name=X "
            "(no Oracle server runs on these machines)"
        )
    oracledb = pytest.importorskip("oracledb")
    parts = engine_url(dsn)
    connection = oracledb.connect(
        user=parts.username,
        password=parts.password,
        dsn=f"{parts.host}:{parts.port or 1521}/{parts.query.get('service_name', parts.database)}",
    )
    table = f"SLURP_T_{uuid.uuid4().hex[:8]}".upper()
    cursor = connection.cursor()
    cursor.execute(
        f"CREATE TABLE {table} (id NUMBER(10), amount NUMBER(12,2), ratio BINARY_DOUBLE, "
        "name VARCHAR2(50), note CLOB, raw BLOB, day DATE, at TIMESTAMP WITH TIME ZONE, "
        "nothing VARCHAR2(5))"
    )
    try:
        big = "x" * 100_000
        cursor.execute(
            f"INSERT INTO {table} VALUES (1, 12.50, 0.25, 'Zoë', :note, HEXTORAW('00FF'), "
            "DATE '2026-03-01', TIMESTAMP '2026-03-01 04:00:00 +01:00', NULL)",
            note=big,
        )
        cursor.execute(
            f"INSERT INTO {table} (id) SELECT LEVEL + 1 FROM DUAL CONNECT BY LEVEL < 5000"
        )
        connection.commit()
        password = parts.password or ""
        url = without_password(dsn).replace("oracle://", "oracle://", 1)
        scheme, _, rest = url.partition("://")
        user, _, host = rest.partition("@")
        job = sql_job(
            f"{scheme}://{user}:${{env.ORA_PW}}@{host}",
            f"SELECT id, amount, ratio, name, note, raw, day, "
            f"SYS_EXTRACT_UTC(at) AS at, nothing FROM {table} ORDER BY id",
            batch_size=1000,
        )
        records = records_of(job, fast_runtime(environ={"ORA_PW": password}))
        assert len(records) == 5000
        first = normalise(records[0], 0)
        assert first == {
            "id": 1, "amount": 12.5, "ratio": 0.25, "name": "Zoë", "note": big,
            "raw": "AP8=", "day": "2026-03-01T00:00:00Z", "at": "2026-03-01T03:00:00Z",
            "absent": None,
        }  # fmt: skip
    finally:
        cursor.execute(f"DROP TABLE {table} PURGE")
        connection.close()


def test_date_values_are_kept_for_storage() -> None:
    assert jsonable(date(2026, 3, 1)) == date(2026, 3, 1)
    assert jsonable(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)


MEMORY_CHILD = """
import json, resource, sys
import sqlalchemy, datasources.sql  # imported before measuring, like every module used
from contracts.jobs import JobDefinition
from datasources import JobPolicy, RunContext, Runtime, run_slurper

source = json.loads(sys.argv[1])
job = JobDefinition.model_validate(
    {"name": "big", "datasources": [source], "collection": {"type": "normal", "name": "big"}}
)
runtime = Runtime(environ={}, policy=JobPolicy(file_roots=[sys.argv[2]]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(1 for _ in run_slurper(job, RunContext(job="big", run_id="r"), runtime))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "growth_kb": after - before}))
"""


@pytest.mark.slow
def test_a_large_result_streams_with_flat_memory(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    database = tmp_path / "big.db"
    rows = 300_000
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (id INTEGER, pad TEXT)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 200) for i in range(rows)))
    assert database.stat().st_size > 60 * 2**20  # loading it whole would show
    source = {"name": "db", "type": "sql", "url": f"sqlite:///{database}",
              "query": "SELECT id, pad FROM t", "batch_size": 1000}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, json.dumps(source), str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["count"] == rows
    assert report["growth_kb"] / 1024 < 10
