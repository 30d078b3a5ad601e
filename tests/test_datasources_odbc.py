"""The ``odbc`` source through unixODBC with Debian's PostgreSQL (psqlodbc) and MariaDB
(Connector/ODBC) drivers, against the real PostgreSQL and MariaDB servers of the other
SQL tests (``scripts/odbc`` installs the drivers when they are missing)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from pydantic import ValidationError

from contracts.datasources import OdbcSource
from datasources import FetchError, NotAllowedError, Progress, RunContext, run_slurper
from datasources.odbc import connection_string
from storage.records import normalise
from tests.database_servers import find_mariadb, find_postgres, odbc_drivers, password_of
from tests.datasource_servers import fast_runtime, make_job, records_of
from tests.test_datasources_sqlalchemy import COLUMNS, EXPECTED, mariadb_connect


@pytest.fixture(scope="module")
def drivers() -> list[str]:
    found = odbc_drivers()
    pytest.importorskip("pyodbc", reason="pyodbc (slurp[odbc]) is not installed")
    return found


@pytest.fixture(scope="module")
def pg(drivers: list[str]) -> str:
    """A psqlodbc connection string (no password: the test server trusts)."""
    if "PostgreSQL Unicode" not in drivers:
        pytest.fail(f"scripts/odbc did not register 'PostgreSQL Unicode' ({drivers})")
    url = urlsplit(find_postgres())
    database = url.path.lstrip("/") or "postgres"
    return (
        f"DRIVER={{PostgreSQL Unicode}};SERVER={url.hostname or '127.0.0.1'};"
        f"PORT={url.port or 5432};DATABASE={database};UID={unquote(url.username or 'postgres')};"
        "BoolsAsChar=0;ConnSettings={SET TIME ZONE 'UTC'}"
    )


@pytest.fixture(scope="module")
def mariadb(drivers: list[str]) -> tuple[str, str, str]:
    """(MariaDB ODBC connection string with PWD=${env.DB_PW}, the password, its URL)."""
    if "MariaDB Unicode" not in drivers:
        pytest.fail(f"scripts/odbc did not register 'MariaDB Unicode' ({drivers})")
    raw = find_mariadb()
    url = urlsplit(raw)
    password = "PWD=${env.DB_PW};" if password_of(raw) else ""  # a server without one
    text = (
        f"DRIVER={{MariaDB Unicode}};SERVER={url.hostname};PORT={url.port or 3306};"
        f"DATABASE=slurp_test;UID={url.username};{password}"
        "INITSTMT={SET time_zone='+00:00'}"
    )
    return text, password_of(raw), raw


def odbc_job(query: str, **source: Any) -> Any:
    return make_job([{"name": "db", "type": "odbc", "query": query, **source}])


@pytest.fixture
def pg_table() -> Iterator[str]:
    name = f"slurp_o_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(find_postgres(), autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {name}")


def test_postgres_types_over_odbc_match_the_table(pg: str, pg_table: str) -> None:
    with psycopg.connect(find_postgres(), autocommit=True) as connection:
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
    job = odbc_job(f"SELECT {COLUMNS} FROM {pg_table} WHERE id = ?", connection_string=pg,
                   params=[1])  # fmt: skip
    (record,) = records_of(job)
    assert normalise(record, 0) == {**EXPECTED, "flag": True}


def test_postgres_over_odbc_streams_with_a_server_side_cursor(pg: str, pg_table: str) -> None:
    with psycopg.connect(find_postgres(), autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {pg_table} (id int PRIMARY KEY, name text)")
        connection.execute(
            f"INSERT INTO {pg_table} SELECT i, 'n' || i FROM generate_series(1, 5000) AS i"
        )
    job = odbc_job(f"SELECT id, name FROM {pg_table} ORDER BY id", connection_string=pg,
                   batch_size=1000)  # fmt: skip
    progress = Progress()
    records = run_slurper(job, RunContext(job="job", run_id="r"), fast_runtime(), progress)
    first = [next(records) for _ in range(1001)]  # one batch, and one of the next
    assert first[0] == {"id": 1, "name": "n1"} and first[-1]["id"] == 1001
    with psycopg.connect(find_postgres()) as observer:
        queries = [
            str(row[0]).lower()
            for row in observer.execute(
                "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            ).fetchall()
        ]
    # psqlodbc declared a cursor and fetches from it batch by batch
    assert any("fetch 1000 in" in q for q in queries), queries
    rest = list(records)
    assert len(rest) == 3999 and progress.snapshot()["db"].pages == 5


def test_mariadb_types_over_odbc_match_the_table(mariadb: tuple[str, str, str]) -> None:
    text, password, raw = mariadb
    table = f"slurp_o_{uuid.uuid4().hex[:10]}"
    connection = mariadb_connect(raw)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE {table} (id int, amount decimal(12,2), ratio double, "
                "flag boolean, name varchar(50), note text, raw varbinary(16), day date, "
                "at timestamp NULL, local datetime, clock time, absent varchar(5))"
            )
            cursor.execute("SET time_zone = '+01:00'")
            cursor.execute(
                f"INSERT INTO {table} VALUES (1, 12.50, 0.25, true, 'Zoë', 'a long text', "
                "x'00ff', '2026-03-01', '2026-03-01 04:00:00', '2026-03-01 03:00:00', "
                "'12:30:05', NULL)"
            )
        runtime = fast_runtime(environ={"DB_PW": password or "unused"})
        job = odbc_job(f"SELECT {COLUMNS} FROM {table}", connection_string=text)
        (record,) = records_of(job, runtime)
        assert normalise(record, 0) == {**EXPECTED, "flag": 1}
        exact = odbc_job(f"SELECT amount FROM {table}", connection_string=text, decimals="string")
        assert records_of(exact, runtime) == [{"amount": "12.50"}]
        if password:
            with pytest.raises(NotAllowedError, match="DB_PW"):
                records_of(job, fast_runtime(environ={"DB_PW": "x"}, env_allow=[]))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        connection.close()


def test_odbc_errors(pg: str, mariadb: tuple[str, str, str]) -> None:
    with pytest.raises(FetchError, match=r"ODBC query failed: .*no_such_table") as bad:
        records_of(odbc_job("SELECT * FROM no_such_table_here", connection_string=pg))
    assert not bad.value.retryable
    closed = re.sub(r"PORT=\d+", "PORT=1", pg)
    with pytest.raises(FetchError, match="cannot connect through ODBC") as down:
        records_of(odbc_job("SELECT 1", connection_string=closed))
    assert down.value.retryable
    text, password, _ = mariadb
    if password:
        wrong = fast_runtime(environ={"DB_PW": "wrong-pa55word"})
        with pytest.raises(FetchError, match="cannot connect through ODBC") as denied:
            records_of(odbc_job("SELECT 1", connection_string=text), wrong)
        assert "wrong-pa55word" not in str(denied.value)
    with pytest.raises(FetchError, match=r"interrupted|cancel") as slow:
        records_of(odbc_job("SELECT pg_sleep(5)", connection_string=pg, timeout_s=1))
    assert slow.value.retryable


def test_connection_strings_are_checked_and_completed() -> None:
    def source(**fields: Any) -> OdbcSource:
        return OdbcSource.model_validate({"name": "db", "type": "odbc", "query": "SELECT 1",
                                          **fields})  # fmt: skip

    for refused, message in (
        ({"connection_string": "DRIVER=/tmp/evil.so;SERVER=x"}, "not a library path"),
        ({"connection_string": "FILEDSN=/etc/x.dsn"}, "names a file"),
        ({"connection_string": "DRIVER={PostgreSQL Unicode};PWD=hunter2"}, "written literally"),
        ({"connection_string": "DRIVER={x};SERVER=${params.host}"}, "password only"),
        ({"dsn": "shop", "connection_string": "DRIVER={x}"}, "exactly one"),
        ({"connection_string": "DRIVER={x};PWD=${env.A}", "password_env": "B"}, "once"),
    ):
        with pytest.raises(ValidationError, match=message):
            source(**refused)
    config = source(connection_string="DRIVER={PostgreSQL Unicode};SERVER=db;PWD=${env.PW}",
                    batch_size=500)  # fmt: skip
    assert connection_string(config, "se;cret}") == (
        "DRIVER=PostgreSQL Unicode;SERVER=db;UseDeclareFetch=1;Fetch=500;PWD={se;cret}}}"
    )
    maria = source(connection_string="DRIVER={MariaDB Unicode};SERVER=db")
    assert connection_string(maria, None) == "DRIVER=MariaDB Unicode;SERVER=db;NO_CACHE=1"
    assert connection_string(source(dsn="shop"), "pw") == "DSN=shop;PWD=pw"
