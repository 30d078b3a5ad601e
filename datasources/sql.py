"""``sql``: one query through SQLAlchemy Core, streamed with a server-side cursor.

One path for every database SQLAlchemy's dialects and the driver extras cover:

=============== ============================= ================ ========================
URL scheme      driver (default first)        extra            placeholders
=============== ============================= ================ ========================
``postgresql``  psycopg 3                     (always)         ``%(name)s``
``mysql``,      PyMySQL, mysqlclient           ``slurp[mysql]`` ``%(name)s``
``mariadb``
``oracle``      python-oracledb (thin: pure    ``slurp[oracle]`` ``:name``
                Python, no client libraries)
``mssql``       pymssql, pyodbc               ``slurp[mssql]`` ``%(name)s``
``sqlite``      sqlite3                       (always)         ``:name``
=============== ============================= ================ ========================

- The query runs as written, through the driver (``exec_driver_sql``): parameters are
  bound by the driver in its own placeholder style, never interpolated; the query text
  is never templated (string parameter values may be). Without parameters the query
  goes to the driver without any, so a ``%`` in it needs no doubling.
- Rows are streamed (``stream_results`` + ``yield_per``: PostgreSQL ``DECLARE``/``FETCH``,
  MySQL/MariaDB unbuffered ``SSCursor``, Oracle and SQL Server array fetches, SQLite
  stepping), ``batch_size`` rows per fetch: memory holds one batch.
- Each row becomes an item by ``datasources.rows.RowConverter`` (types as documented
  there; MySQL ``JSON`` columns are parsed). Repeated column names are an error.
- Read-only where the database has it: PostgreSQL and MySQL/MariaDB sessions are read
  only; SQLite files are opened read-only with ``ATTACH`` disabled and must lie below
  the policy's file roots (symlinks resolved). Oracle and SQL Server: give the job a
  read-only account.
- ``timeout_s``: PostgreSQL ``statement_timeout`` (each ``FETCH``), MySQL
  ``max_execution_time`` / MariaDB ``max_statement_time`` (the whole statement, rows
  streamed included), Oracle ``call_timeout`` (each round trip), SQL Server the
  driver's query timeout, SQLite the whole read.
- PostgreSQL sessions are named ``slurp:<job>`` (``application_name``).
- The password comes from an environment variable: ``scheme://user:${env.NAME}@host/db``
  or ``password_env`` (the config refuses literal passwords; the policy decides which
  variables may be read). A missing driver is a ``ConfigError`` naming the extra.

Connection failures, timeouts and other operational errors are retryable; SQL errors
(syntax, missing table, permissions) are not.

A cancelled run (``ctx.cancel``) stops at the next fetched batch; a PostgreSQL or SQLite
statement in progress is interrupted at once (``_interruptible``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from contracts.datasources import SQL_DIALECTS, SqlSource
from contracts.masking import env_references
from datasources.base import Item, Source
from datasources.cancel import CancelToken
from datasources.context import RunContext
from datasources.errors import ConfigError, DatasourceError, FetchError
from datasources.policy import sqlite_path
from datasources.progress import SourceProgress
from datasources.rows import RowConverter
from datasources.templates import TemplateValues, render_tree

__all__ = ["CONNECT_TIMEOUT_S", "DIALECTS", "Dialect", "SqlItems", "engine_url", "split_password"]

#: How long connecting to a database server may take.
CONNECT_TIMEOUT_S = 10
#: MySQL's type code of ``JSON`` columns (PyMySQL returns their text).
_MYSQL_JSON = 245
#: MySQL/MariaDB error numbers worth a retry: connection lost or refused, server going
#: away or shutting down, too many connections, lock waits and deadlocks, time limits.
_MYSQL_TRANSIENT = frozenset(
    {1040, 1053, 1205, 1213, 1927, 1969, 2002, 2003, 2006, 2013, 2055, 3024}
)
#: MySQL's type code of ``TIME`` columns (PyMySQL returns a ``timedelta``).
_MYSQL_TIME = 11
#: SQLite's progress handler runs every this many virtual-machine steps.
_SQLITE_STEPS = 10_000


@dataclass(frozen=True)
class Dialect:
    """What slurp knows about one URL scheme: its label in messages, the pip extra
    holding its drivers, and the Python modules of those drivers."""

    label: str
    extra: str | None
    modules: Mapping[str, str]


DIALECTS: dict[str, Dialect] = {
    "postgresql": Dialect("PostgreSQL", None, {"psycopg": "psycopg"}),
    "mysql": Dialect("MySQL", "mysql", {"pymysql": "pymysql", "mysqldb": "MySQLdb"}),
    "mariadb": Dialect("MariaDB", "mysql", {"pymysql": "pymysql", "mysqldb": "MySQLdb"}),
    "oracle": Dialect("Oracle", "oracle", {"oracledb": "oracledb"}),
    "mssql": Dialect("SQL Server", "mssql", {"pymssql": "pymssql", "pyodbc": "pyodbc"}),
    "sqlite": Dialect("SQLite", None, {"pysqlite": "sqlite3"}),
}


def split_password(url: str, password_env: str | None) -> tuple[str, str | None]:
    """``url`` without a ``${env.NAME}`` password, and the variable holding the password
    (from the URL, else ``password_env``)."""
    scheme, _, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and (names := env_references(userinfo)):  # user:${env.NAME}@host
        user = userinfo.partition(":")[0]
        return f"{scheme}://{user}@{host}{slash}{tail}", names[0]
    return url, password_env


def engine_url(url: str, password: str | None = None) -> URL:
    """The SQLAlchemy URL of a (non-SQLite) ``sql`` source URL: ``postgres`` spelled
    ``postgresql``, the default driver named, the password set. ``ConfigError`` when
    the URL cannot be parsed."""
    scheme = url.partition("://")[0].lower()
    dialect, _, driver = scheme.partition("+")
    dialect = "postgresql" if dialect == "postgres" else dialect
    driver = driver or SQL_DIALECTS[dialect][0]
    try:
        parsed = make_url(f"{dialect}+{driver}://{url.partition('://')[2]}")
    except (exc.ArgumentError, ValueError) as error:
        raise ConfigError(f"url cannot be parsed: {error}") from None
    return parsed.set(password=password) if password is not None else parsed


class SqlItems(Source[SqlSource]):
    type = "sql"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        config = self.config
        redactor = self.runtime.redactor()
        url, password_env = split_password(config.url, config.password_env)
        password = redactor.secret(password_env, "database password") if password_env else None
        params = render_tree(config.params, TemplateValues(ctx), "params")
        try:
            yield from self._stream(ctx, url, password, params, progress)
        except DatasourceError as error:
            error.redact(redactor)
            raise

    def _stream(
        self,
        ctx: RunContext,
        url: str,
        password: str | None,
        params: dict[str, Any],
        progress: SourceProgress,
    ) -> Iterator[Item]:
        config = self.config
        name = url.partition("://")[0].lower().partition("+")[0]
        name = "postgresql" if name == "postgres" else name
        dialect = DIALECTS[name]
        engine = self._engine(ctx, name, url, password)
        try:
            try:
                connection = engine.connect()
            except exc.DBAPIError as error:
                raise self._connect_error(name, url, error) from None
            with connection, _interruptible(ctx, name, connection):
                if ctx.cancel is not None:  # cancelled before the interrupt was in place
                    ctx.cancel.check()
                options: dict[str, Any] = {
                    "stream_results": True,
                    "max_row_buffer": config.batch_size,
                }
                if not params:
                    options["no_parameters"] = True
                if name == "postgresql":
                    options["postgresql_readonly"] = True
                streaming = connection.execution_options(**options)
                try:
                    result = (
                        streaming.exec_driver_sql(config.query, params)
                        if params
                        else streaming.exec_driver_sql(config.query)
                    ).yield_per(config.batch_size)
                    convert = RowConverter(
                        list(result.keys()), config.decimals, _column_parsers(name, result)
                    )
                    for rows in result.partitions():
                        progress.page()
                        if ctx.cancel is not None:
                            ctx.cancel.check()  # between fetched batches
                        yield from convert.batch(rows)
                except exc.DBAPIError as error:
                    raise _query_error(name, dialect.label, error) from None
        finally:
            engine.dispose()

    def _engine(self, ctx: RunContext, name: str, url: str, password: str | None) -> Engine:
        timeout_s = self.config.timeout_s
        if name == "sqlite":
            path = sqlite_path(url)
            resolved = str(self.runtime.policy.resolve_file(path, "url"))

            def creator() -> sqlite3.Connection:
                return _sqlite_connect(resolved, timeout_s, ctx.cancel)

            return sa.create_engine("sqlite+pysqlite://", creator=creator, poolclass=NullPool)
        dialect = DIALECTS[name]
        target = engine_url(url, password)
        try:
            engine = sa.create_engine(
                target, poolclass=NullPool, connect_args=_connect_args(name, ctx, timeout_s)
            )
        except ImportError as error:
            module = dialect.modules.get(target.get_driver_name(), target.get_driver_name())
            extra = f"slurp[{dialect.extra}]" if dialect.extra else "slurp"
            raise ConfigError(
                f"the {dialect.label} driver {module!r} is not installed on this worker "
                f"({type(error).__name__}: {error}); install {extra} "
                f"(pip install '{extra}')"
            ) from None
        on_connect = _ON_CONNECT.get(name)
        if on_connect is not None:

            def setup(dbapi_connection: Any, _record: Any) -> None:
                on_connect(dbapi_connection, timeout_s)

            event.listen(engine, "connect", setup)
        return engine

    def _connect_error(self, name: str, url: str, error: exc.DBAPIError) -> FetchError:
        if name == "sqlite":
            path = sqlite_path(url)
            return FetchError(f"cannot open SQLite database {path!r}: {_first_line(error)}")
        return FetchError(f"cannot connect to {DIALECTS[name].label}: {_first_line(error)}")


def _interruptible(
    ctx: RunContext, name: str, connection: sa.Connection
) -> contextlib.AbstractContextManager[None]:
    """While a cancellable run reads: cancelling it interrupts the running statement
    (PostgreSQL: a cancel request, psycopg's ``cancel_safe``; SQLite: ``interrupt``).
    Other databases stop at the next fetched batch."""
    if ctx.cancel is None:
        return contextlib.nullcontext()
    dbapi: Any = connection.connection.dbapi_connection
    interrupt: Callable[[], None] | None = None
    if name == "sqlite":
        interrupt = dbapi.interrupt
    elif name == "postgresql":
        interrupt = getattr(dbapi, "cancel_safe", None) or getattr(dbapi, "cancel", None)
    if interrupt is None:
        return contextlib.nullcontext()
    return ctx.cancel.interrupting(interrupt)


def _connect_args(name: str, ctx: RunContext, timeout_s: float | None) -> dict[str, Any]:
    if name == "postgresql":
        args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": f"slurp:{ctx.job}"[:63],
        }
        if timeout_s is not None:
            args["options"] = f"-c statement_timeout={int(timeout_s * 1000)}"
        return args
    if name in ("mysql", "mariadb"):
        return {"connect_timeout": CONNECT_TIMEOUT_S, "program_name": f"slurp:{ctx.job}"[:32]}
    if name == "oracle":
        return {"tcp_connect_timeout": CONNECT_TIMEOUT_S}
    if name == "mssql":
        args = {"login_timeout": CONNECT_TIMEOUT_S}
        if timeout_s is not None:
            args["timeout"] = max(1, int(timeout_s))
        return args
    return {}


def _mysql_on_connect(dbapi_connection: Any, timeout_s: float | None) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT VERSION()")
        mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
        cursor.execute("SET time_zone = '+00:00'")  # TIMESTAMP values arrive in UTC
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        if timeout_s is not None:
            if mariadb:
                cursor.execute(f"SET SESSION max_statement_time = {float(timeout_s):.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {int(timeout_s * 1000)}")
    finally:
        cursor.close()


def _oracle_on_connect(dbapi_connection: Any, timeout_s: float | None) -> None:
    if timeout_s is not None:
        dbapi_connection.call_timeout = int(timeout_s * 1000)


_ON_CONNECT: dict[str, Callable[[Any, float | None], None]] = {
    "mysql": _mysql_on_connect,
    "mariadb": _mysql_on_connect,
    "oracle": _oracle_on_connect,
}


def _sqlite_connect(
    path: str, timeout_s: float | None, cancel: CancelToken | None = None
) -> sqlite3.Connection:
    connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, check_same_thread=False)
    # ATTACH could open (or create) any other file: the database is the only one.
    connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    if deadline is not None or cancel is not None:
        # Also stops a statement that began just after the run was cancelled, which
        # ``interrupt()`` (a no-op while nothing runs) would miss.
        def stop() -> int:
            late = deadline is not None and time.monotonic() > deadline
            return int(late or (cancel is not None and cancel.cancelled))

        connection.set_progress_handler(stop, _SQLITE_STEPS)
    return connection


def _column_parsers(name: str, result: Any) -> dict[int, Callable[[Any], Any]]:
    """Per-column conversions the driver leaves to us: MySQL ``JSON`` text is parsed."""
    if name not in ("mysql", "mariadb"):
        return {}
    import json

    description = getattr(result.cursor, "description", None) or []
    parsers: dict[int, Callable[[Any], Any]] = {}
    for index, column in enumerate(description):
        if column[1] == _MYSQL_JSON:
            parsers[index] = json.loads
        elif column[1] == _MYSQL_TIME:
            parsers[index] = _clock
    return parsers


def _clock(value: Any) -> Any:
    """A MySQL ``TIME`` (a ``timedelta``) as ``[-]HH:MM:SS[.ffffff]``, like other
    databases' time of day."""
    if not isinstance(value, timedelta):
        return value
    sign = "-" if value < timedelta(0) else ""
    total = abs(value)
    seconds = total.days * 86_400 + total.seconds
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{total.microseconds:06d}" if total.microseconds else text


def _query_error(name: str, label: str, error: exc.DBAPIError) -> FetchError:
    text = _first_line(error)
    if name in ("mysql", "mariadb"):
        code = getattr(error.orig, "args", (None,))[0]
        retryable = code in _MYSQL_TRANSIENT or error.connection_invalidated
        what = "connection or query interrupted" if retryable else "query failed"
        return FetchError(f"{label} {what}: {text}", retryable=retryable)
    if name == "sqlite":
        operational = isinstance(error, exc.OperationalError)
        transient = ("unable to open", "locked", "interrupted")
        retryable = operational and any(word in text for word in transient)
        return FetchError(f"SQLite query failed: {text}", retryable=retryable)
    if isinstance(error, exc.OperationalError) or error.connection_invalidated:
        return FetchError(f"{label} connection or query interrupted: {text}")
    return FetchError(f"{label} query failed: {text}", retryable=False)


def _first_line(error: BaseException) -> str:
    """The driver's own message (not SQLAlchemy's wrapper with the statement)."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    return text.splitlines()[0] if text else type(original).__name__
