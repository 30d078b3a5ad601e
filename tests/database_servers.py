"""Real database and broker servers for the datasource tests, found or started.

Each ``find_*`` returns a URL: the first reachable of an explicit ``SLURP_TEST_*``
variable and the usual local address, else the URL of a private instance started by the
project's own script (``scripts/postgres``, ``scripts/mariadb``, ``scripts/rabbitmq``;
each installs Debian's package when it is missing). When none can be had the tests
needing it are skipped locally and *fail* when ``CI`` is set. ``odbc_drivers`` runs
``scripts/odbc`` (unixODBC + Debian's PostgreSQL and MariaDB ODBC drivers).

Servers started here are left running for the next session (the scripts reuse them).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

__all__ = [
    "find_mariadb",
    "find_postgres",
    "find_rabbitmq",
    "odbc_drivers",
    "password_of",
    "unavailable",
    "without_password",
]

ROOT = Path(__file__).resolve().parents[1]
#: How long a script may take (installing a Debian package included).
SCRIPT_TIMEOUT_S = 900


def unavailable(message: str) -> None:
    """Skip the test, or fail it under CI (where every server must be had)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _script(name: str) -> tuple[str, str]:
    done = subprocess.run(
        [str(ROOT / "scripts" / name), "start"],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    url = lines[-1] if done.returncode == 0 and lines else ""
    return url, done.stderr[-2000:]


def _find(
    what: str, variable: str, defaults: list[str], script: str, reachable: Callable[[str], bool]
) -> str:
    for url in filter(None, [os.environ.get(variable, ""), *defaults]):
        if reachable(url):
            return url
    url, log = _script(script)
    if not url or not reachable(url):
        unavailable(f"no {what} reachable and scripts/{script} failed:\n{log}")
    return url


def _postgres_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def find_postgres() -> str:
    return _find(
        "PostgreSQL",
        "SLURP_TEST_POSTGRES_URL",
        ["postgresql://postgres@127.0.0.1:5432/postgres"],
        "postgres",
        _postgres_reachable,
    )


def password_of(url: str) -> str:
    """The (URL-decoded) password in ``url``, or ``""``."""
    return unquote(urlsplit(url).password or "")


def without_password(url: str) -> str:
    """``url`` with its password removed (the user stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}@{host}").geturl()


def _mariadb_reachable(url: str) -> bool:
    import pymysql

    parts = urlsplit(url)
    try:
        connection = pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=password_of(url),
            connect_timeout=3,
        )
    except pymysql.Error:
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS slurp_test")
        return True
    except pymysql.Error:
        return False
    finally:
        connection.close()


def find_mariadb() -> str:
    """``mysql://user[:password]@host:port/slurp_test`` of a MariaDB (or MySQL) server."""
    url = _find(
        "MariaDB",
        "SLURP_TEST_MARIADB_URL",
        ["mysql://root@127.0.0.1:3306/slurp_test"],
        "mariadb",
        _mariadb_reachable,
    )
    parts = urlsplit(url)
    return parts._replace(path="/slurp_test").geturl()


def _rabbitmq_reachable(url: str) -> bool:
    import pika
    import pika.exceptions

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 3
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
        return True
    except pika.exceptions.AMQPError:
        return False


def find_rabbitmq() -> str:
    """``amqp://user:password@host:port/vhost`` of a RabbitMQ broker."""
    return _find(
        "RabbitMQ",
        "SLURP_TEST_RABBITMQ_URL",
        ["amqp://guest:guest@127.0.0.1:5672/%2F"],
        "rabbitmq",
        _rabbitmq_reachable,
    )


def odbc_drivers() -> list[str]:
    """The registered ODBC driver names (after ``scripts/odbc`` installed them)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "odbc")],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    drivers = done.stdout.split("\n")
    if done.returncode != 0:
        unavailable(f"scripts/odbc failed:\n{done.stderr[-2000:]}")
    return [d.strip() for d in drivers if d.strip()]
