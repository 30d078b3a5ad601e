"""Datasource benchmark: records/s of each database/queue/SOAP kind through slurp
(``run_slurper``, no storage) against a direct read of the same rows with the same
driver, and the peak memory of streaming ``--rows`` vs ``--big`` rows.

Kinds (each skipped with the reason when its server cannot be had; the servers are
found or started like the tests do, ``tests/database_servers.py``):

========== =============================== =============================================
kind       slurp                            direct read (the same rows, as dicts)
========== =============================== =============================================
pg         ``sql`` postgresql://            psycopg named cursor, ``fetchmany``
mariadb    ``sql`` mysql://                 PyMySQL ``SSCursor``, ``fetchmany``
sqlite     ``sql`` sqlite:///               sqlite3 ``fetchmany``
odbc-pg    ``odbc`` PostgreSQL Unicode      pyodbc ``fetchmany`` (same connection string)
rabbitmq   ``rabbitmq`` (dedupe none)       pika ``consume``, JSON bodies, one ack
soap       ``soap``, 1,000 items per page   zeep, the same calls, ``serialize_object``
========== =============================== =============================================

Throughput: ``--repeat`` alternated pairs (direct, slurp) on ``--rows`` rows; the median
ratio slurp/direct is printed with its spread. Memory: a child process streams the
rows through ``run_slurper`` and reports its peak RSS growth (``ru_maxrss`` after
minus before the read) and its absolute peak, for ``--rows`` and ``--big``: printed as
``peak (+growth)`` in MB.

    .venv/bin/python -m bench.datasources [--rows 20000] [--big 200000] [--repeat 3]
        [--kinds pg,mariadb,sqlite,odbc-pg,rabbitmq,soap]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KINDS = ("pg", "mariadb", "sqlite", "odbc-pg", "rabbitmq", "soap")
PAD = "x" * 60


# -- fixtures: the same rows in every database -------------------------------------------


def _pg_setup(rows: int) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
    import psycopg

    from tests.database_servers import find_postgres

    url = find_postgres()
    table = f"bench_{rows}"
    with psycopg.connect(url, autocommit=True) as connection:
        exists = connection.execute("SELECT to_regclass(%s)", [table]).fetchone()
        if exists is None or exists[0] is None:
            connection.execute(f"CREATE TABLE {table} (id int, name text, amount numeric(12,2))")
            connection.execute(
                f"INSERT INTO {table} SELECT i, 'name {PAD}' || i, i / 4.0 "
                f"FROM generate_series(1, {rows}) AS i"
            )
    query = f"SELECT id, name, amount FROM {table}"

    def direct() -> Iterator[dict[str, Any]]:
        with psycopg.connect(url) as connection, connection.cursor(name="direct") as cursor:
            cursor.execute(query)
            names = [c.name for c in cursor.description or []]
            while batch := cursor.fetchmany(1000):
                for row in batch:
                    yield dict(zip(names, row, strict=True))

    return {"type": "sql", "url": url, "query": query}, direct


def _mariadb_setup(rows: int) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
    import pymysql
    import pymysql.cursors

    from tests.database_servers import find_mariadb, password_of
    from tests.test_datasources_sqlalchemy import mariadb_connect

    url = find_mariadb()
    table = f"bench_{rows}"
    connection = mariadb_connect(url)
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW TABLES LIKE '{table}'")
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE TABLE {table} (id int, name text, amount decimal(12,2))")
            cursor.execute(
                f"INSERT INTO {table} SELECT seq, CONCAT('name {PAD}', seq), seq / 4 "
                f"FROM seq_1_to_{rows}"
            )
    connection.close()
    query = f"SELECT id, name, amount FROM {table}"

    def direct() -> Iterator[dict[str, Any]]:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        conn = pymysql.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username,
            password=password_of(url), database="slurp_test",
            cursorclass=pymysql.cursors.SSCursor,
        )  # fmt: skip
        try:
            with conn.cursor() as cursor:
                cursor.execute(query)
                names = [c[0] for c in cursor.description]
                while batch := cursor.fetchmany(1000):
                    for row in batch:
                        yield dict(zip(names, row, strict=True))
        finally:
            conn.close()

    source_url = url
    if password_of(url):
        os.environ["BENCH_DB_PW"] = password_of(url)
        scheme, _, rest = url.partition("://")
        userinfo, _, host = rest.rpartition("@")
        source_url = f"{scheme}://{userinfo.partition(':')[0]}:${{env.BENCH_DB_PW}}@{host}"
    return {"type": "sql", "url": source_url, "query": query}, direct


def _sqlite_setup(rows: int) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
    import sqlite3

    path = Path(tempfile.gettempdir()) / f"slurp-bench-{rows}.db"
    if not path.exists():
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE t (id INTEGER, name TEXT, amount REAL)")
            connection.executemany(
                "INSERT INTO t VALUES (?, ?, ?)",
                ((i, f"name {PAD}{i}", i / 4) for i in range(1, rows + 1)),
            )
    query = "SELECT id, name, amount FROM t"

    def direct() -> Iterator[dict[str, Any]]:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cursor = connection.execute(query)
            names = [c[0] for c in cursor.description]
            while batch := cursor.fetchmany(1000):
                for row in batch:
                    yield dict(zip(names, row, strict=True))
        finally:
            connection.close()

    return {"type": "sql", "url": f"sqlite:///{path}", "query": query}, direct


def _odbc_setup(rows: int) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
    from urllib.parse import urlsplit

    from datasources.odbc import connection_string
    from tests.database_servers import find_postgres, odbc_drivers

    odbc_drivers()
    import pyodbc

    from contracts.datasources import OdbcSource

    source, _ = _pg_setup(rows)
    url = urlsplit(find_postgres())
    text = (
        f"DRIVER={{PostgreSQL Unicode}};SERVER={url.hostname};PORT={url.port or 5432};"
        f"DATABASE={url.path.lstrip('/') or 'postgres'};UID={url.username or 'postgres'}"
    )
    config = {"type": "odbc", "connection_string": text, "query": source["query"]}
    full = connection_string(OdbcSource.model_validate({"name": "b", **config}), None)

    def direct() -> Iterator[dict[str, Any]]:
        connection = pyodbc.connect(full)
        try:
            cursor = connection.cursor()
            cursor.execute(source["query"])
            names = [c[0] for c in cursor.description]
            while batch := cursor.fetchmany(1000):
                for row in batch:
                    yield dict(zip(names, row, strict=True))
        finally:
            connection.close()

    return config, direct


def _rabbitmq_setup(rows: int) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
    import pika

    from tests.database_servers import find_rabbitmq, password_of

    url = find_rabbitmq()
    queue = f"slurp-bench-{uuid.uuid4().hex[:8]}"
    os.environ["BENCH_RMQ_PW"] = password_of(url)
    scheme, _, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")

    def fill() -> None:
        with pika.BlockingConnection(pika.URLParameters(url)) as connection:
            channel = connection.channel()
            channel.queue_declare(queue, durable=True)
            channel.queue_purge(queue)
            channel.confirm_delivery()
            for i in range(rows):
                body = json.dumps({"id": i, "name": f"name {PAD}{i}", "amount": i / 4})
                channel.basic_publish("", queue, body.encode())

    fill()

    def delete() -> None:
        with pika.BlockingConnection(pika.URLParameters(url)) as connection:
            connection.channel().queue_delete(queue)

    atexit.register(delete)

    def direct() -> Iterator[dict[str, Any]]:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        last = 0
        for count, (method, _, body) in enumerate(
            channel.consume(queue, inactivity_timeout=0.5), start=1
        ):
            if method is None:
                break
            last = method.delivery_tag
            yield json.loads(body)
            if count == rows:
                break
        channel.cancel()
        channel.basic_nack(last, multiple=True, requeue=True)  # leave them for the next read
        connection.close()

    config = {
        "type": "rabbitmq", "url": f"{scheme}://{userinfo.partition(':')[0]}:"
        "${env.BENCH_RMQ_PW}@" + host, "queue": queue, "dedupe": "none",
        "max_messages": rows, "prefetch": 1000, "max_wait_s": 2,
    }  # fmt: skip
    return config, direct


def _soap_setup(rows: int) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
    import zeep
    import zeep.helpers

    from tests.soap_server import SoapServer

    server = SoapServer(total=rows).start()
    wsdl = server.url() + "?wsdl"

    def direct() -> Iterator[dict[str, Any]]:
        client = zeep.Client(wsdl)
        page = 1
        while True:
            result = client.service.GetUsers(page=page, pageSize=1000)
            document = zeep.helpers.serialize_object(result, target_cls=dict)
            users = (document.get("users") or {}).get("user") or []
            if not users:
                return
            yield from users
            if len(users) < 1000:
                return
            page += 1

    config = {
        "type": "soap", "wsdl": wsdl, "operation": "GetUsers", "result_path": "users.user",
        "pagination": {"style": "page", "param": "page", "size_param": "pageSize", "size": 1000},
        "max_pages": 100_000,
    }  # fmt: skip
    return config, direct


SETUPS: dict[str, Callable[[int], tuple[dict[str, Any], Callable[[], Iterator[Any]]]]] = {
    "pg": _pg_setup,
    "mariadb": _mariadb_setup,
    "sqlite": _sqlite_setup,
    "odbc-pg": _odbc_setup,
    "rabbitmq": _rabbitmq_setup,
    "soap": _soap_setup,
}


# -- measuring -------------------------------------------------------------------------


def _runtime() -> Any:
    from datasources import JobPolicy, Runtime
    from datasources.policy import LOOPBACK_NETWORKS

    return Runtime(
        policy=JobPolicy(
            file_roots=[tempfile.gettempdir()],
            env_allow=["BENCH_*"],
            http_allow_hosts=["*", *LOOPBACK_NETWORKS],
        )
    )


def _slurp(config: dict[str, Any]) -> Callable[[], Iterator[Any]]:
    from contracts.jobs import JobDefinition
    from datasources import RunContext, run_slurper

    job = JobDefinition.model_validate(
        {"name": "bench", "datasources": [{"name": "b", **config}],
         "collection": {"type": "normal", "name": "bench"}}
    )  # fmt: skip
    runtime = _runtime()

    def read() -> Iterator[Any]:
        return run_slurper(job, RunContext(job="bench", run_id=str(uuid.uuid4())), runtime)

    return read


def _rate(read: Callable[[], Iterator[Any]], rows: int) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in read())
    elapsed = time.perf_counter() - started
    if count != rows:
        raise RuntimeError(f"read {count} rows, expected {rows}")
    return count / elapsed


CHILD = """
import json, resource, sys
from bench.datasources import SETUPS, _slurp
kind, rows = sys.argv[1], int(sys.argv[2])
config, _ = SETUPS[kind](rows)
read = _slurp(config)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(1 for _ in read())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "growth_kb": after - before, "peak_kb": after}))
"""


def _memory(kind: str, rows: int) -> tuple[float, float]:
    """(peak RSS of the reading child process, its growth during the read), in MB."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(rows)],
        capture_output=True, text=True, timeout=3600, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["count"] != rows:
        raise RuntimeError(f"read {report['count']} rows, expected {rows}")
    return float(report["peak_kb"]) / 1024, float(report["growth_kb"]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"rows={args.rows} big={args.big} repeat={args.repeat}")
    print(f"{'kind':<10} {'slurp rec/s':>12} {'direct rec/s':>13} {'ratio':>12} "
          f"{'peak MB @rows':>14} {'peak MB @big':>14}")  # fmt: skip
    for kind in args.kinds.split(","):
        try:
            config, direct = SETUPS[kind](args.rows)
        except BaseException as exc:  # a server that cannot be had: say why, go on
            print(f"{kind:<10} skipped: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        slurp = _slurp(config)
        ratios, rates, directs = [], [], []
        for _ in range(args.repeat):
            raw = _rate(direct, args.rows)
            ours = _rate(slurp, args.rows)
            directs.append(raw)
            rates.append(ours)
            ratios.append(ours / raw)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        small = big = "-"
        if not args.no_memory:
            small = "{:.0f} (+{:.1f})".format(*_memory(kind, args.rows))
            big = "{:.0f} (+{:.1f})".format(*_memory(kind, args.big))
        print(
            f"{kind:<10} {statistics.median(rates):>12,.0f} {statistics.median(directs):>13,.0f} "
            f"{statistics.median(ratios):>5.2f} ({spread}) {small:>14} {big:>14}",
            flush=True,
        )
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"(this process: peak RSS grew {growth:.0f} MB)")


if __name__ == "__main__":
    main()
