"""``sql``: one query against PostgreSQL (psycopg 3) or SQLite, streamed in batches.

- PostgreSQL (``postgresql://user@host:port/db``): a read-only transaction and a
  server-side cursor (``DECLARE ... CURSOR``, then ``FETCH`` of ``batch_size`` rows),
  so memory holds one batch whatever the result's size. Bind parameters are written
  ``%(name)s``. The password comes from the environment variable ``password_env``
  (a URL with a password is refused by the config). The connection's
  ``application_name`` is ``slurp:<job>``.
- SQLite (``sqlite:///relative/path``, ``sqlite:////absolute/path``): the file is opened
  read-only; rows are stepped ``batch_size`` at a time. Bind parameters: ``:name``.

String parameter values may use run-time templates (``${yesterday}``); the query text
itself is never templated (use parameters). Each row becomes an object keyed by column
name (names must be unique: alias them). Values: numbers, strings, booleans, null,
arrays and JSON as they are; ``uuid`` and network addresses -> string; ``bytea``/BLOB ->
base64 string; ``time`` -> ``HH:MM:SS[.ffffff]``; ``interval`` -> seconds (float);
``numeric``, ``date`` and ``timestamp`` are converted by storage (see
``storage.records``). Connection failures are retryable; SQL errors are not.
"""

from __future__ import annotations

import base64
import ipaddress
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from datetime import time, timedelta
from typing import Any
from urllib.parse import quote, unquote

from contracts.datasources import SqlSource
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import DatasourceError, FetchError, ResponseFormatError
from datasources.progress import SourceProgress
from datasources.redaction import Redactor
from datasources.templates import TemplateValues, render_tree

__all__ = ["CONNECT_TIMEOUT_S", "SqlItems", "jsonable"]

#: How long connecting to PostgreSQL may take.
CONNECT_TIMEOUT_S = 10
_PLAIN = (str, int, float, bool, type(None))
_ADDRESSES = (
    ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network,
    ipaddress.IPv4Interface, ipaddress.IPv6Interface,
)  # fmt: skip


def jsonable(value: Any) -> Any:
    """``value`` with driver types storage does not know converted (see above)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (uuid.UUID, *_ADDRESSES)):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _unique(names: Sequence[str]) -> list[str]:
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ResponseFormatError(
            f"the query returns repeated column names: {', '.join(repeated)} (alias them)"
        )
    return list(names)


class SqlItems(Source[SqlSource]):
    type = "sql"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        config = self.config
        redactor = Redactor(self.runtime.environ)
        password = (
            redactor.secret(config.password_env, "database password")
            if config.password_env
            else None
        )
        params = render_tree(config.params, TemplateValues(ctx), "params")
        scheme = config.url.partition("://")[0].lower()
        try:
            if scheme == "sqlite":
                yield from self._sqlite(params, progress)
            else:
                yield from self._postgres(ctx, params, password, progress)
        except DatasourceError as exc:
            exc.redact(redactor)
            raise

    def _postgres(
        self, ctx: RunContext, params: Any, password: str | None, progress: SourceProgress
    ) -> Iterator[Item]:
        import psycopg  # only jobs with a PostgreSQL source pay for the import

        config = self.config
        options: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": f"slurp:{ctx.job}"[:63],
        }
        if password is not None:
            options["password"] = password
        try:
            connection = psycopg.connect(config.url, **options)
        except psycopg.Error as exc:
            raise FetchError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from None
        try:
            connection.read_only = True
            name = f"slurp_{uuid.uuid4().hex[:16]}"
            with connection.cursor(name=name) as cursor:
                cursor.execute(config.query, params or None)
                names = _unique([column.name for column in cursor.description or []])
                while rows := cursor.fetchmany(config.batch_size):
                    progress.page()
                    for row in rows:
                        yield {n: jsonable(v) for n, v in zip(names, row, strict=True)}
        except psycopg.OperationalError as exc:
            raise FetchError(f"PostgreSQL connection failed: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise FetchError(f"query failed: {_first_line(exc)}", retryable=False) from None
        finally:
            connection.close()

    def _sqlite(self, params: Any, progress: SourceProgress) -> Iterator[Item]:
        config = self.config
        path = unquote(config.url.partition("://")[2][1:])  # sqlite:///x -> x, ////x -> /x
        try:
            connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise FetchError(f"cannot open SQLite database {path!r}: {exc}") from None
        try:
            cursor = connection.execute(config.query, params)
            names = _unique([column[0] for column in cursor.description or []])
            while rows := cursor.fetchmany(config.batch_size):
                progress.page()
                for row in rows:
                    yield {n: jsonable(v) for n, v in zip(names, row, strict=True)}
        except sqlite3.OperationalError as exc:
            retryable = "unable to open" in str(exc) or "locked" in str(exc)
            raise FetchError(f"SQLite query failed: {exc}", retryable=retryable) from None
        except sqlite3.Error as exc:
            raise FetchError(f"SQLite query failed: {exc}", retryable=False) from None
        finally:
            connection.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
