"""``odbc``: one query through ODBC (pyodbc on unixODBC), streamed in batches.

- The connection: ``dsn`` (a data source the operator configured in ``odbc.ini``) or a
  ``connection_string`` naming a driver registered in ``odbcinst.ini``
  (``DRIVER={PostgreSQL Unicode};SERVER=db;PORT=5432;DATABASE=shop;UID=reporter``).
  The config refuses library paths as ``DRIVER`` and the file keywords ``FILEDSN`` and
  ``SAVEFILE``: a job names drivers, it does not load libraries or write files. The
  password comes from an environment variable: ``PWD=${env.NAME}`` in the string or
  ``password_env`` (the policy decides which variables may be read).
- The query runs as written with ``?`` placeholders bound to ``params`` (a list;
  string values may use templates); rows are fetched ``batch_size`` at a time and
  become items by ``datasources.rows.RowConverter`` (types as for ``sql``).
- Streaming is the driver's business: some buffer a whole result unless told not to.
  For the drivers known here the missing option is added to a connection string
  (psqlodbc ``UseDeclareFetch=1;Fetch=<batch_size>``: a server-side cursor; MariaDB
  Connector/ODBC ``NO_CACHE=1``: an unbuffered result); a DSN must set it itself.
- The connection asks for read-only access (``SQL_ATTR_ACCESS_MODE``; drivers may
  ignore it: give the job a read-only account). ``timeout_s`` limits the whole read:
  past it the statement is cancelled (``SQLCancel``, which every driver has; driver
  time-limit attributes are not used, many drivers refuse them).
- Errors by SQLSTATE: connection failures (class ``08``), timeouts (``HYT00``,
  ``HYT01``), cancellations (``57014``) and serialization failures are retryable;
  everything else (syntax, missing table, permissions) is not.

pyodbc needs unixODBC's ``libodbc`` (Debian: ``unixodbc``); both are optional
(``slurp[odbc]``): without them the source fails with a ``ConfigError`` saying so.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from contracts.datasources import OdbcSource, odbc_pairs
from contracts.masking import env_references
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ConfigError, DatasourceError, FetchError
from datasources.progress import SourceProgress
from datasources.rows import RowConverter
from datasources.templates import TemplateValues, render_tree

__all__ = ["CONNECT_TIMEOUT_S", "OdbcItems", "connection_string", "streaming_options"]

#: How long logging in to the server may take (``SQL_ATTR_LOGIN_TIMEOUT``).
CONNECT_TIMEOUT_S = 10
_RETRYABLE_STATES = frozenset({"HYT00", "HYT01", "57014", "40001", "40P01", "HY008"})
_PASSWORD_KEYS = frozenset({"pwd", "password"})


def _quote(value: str) -> str:
    """An ODBC connection-string value, braced when it needs to be."""
    if any(c in value for c in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def streaming_options(pairs: list[tuple[str, str]], batch_size: int) -> list[tuple[str, str]]:
    """The keywords to add so that the named driver streams (see the module docstring)."""
    keys = {key.lower() for key, _ in pairs}
    driver = next((value.lower() for key, value in pairs if key.lower() == "driver"), "")
    if "postgresql" in driver and "usedeclarefetch" not in keys:
        return [("UseDeclareFetch", "1"), ("Fetch", str(batch_size))]
    if ("mariadb" in driver or "mysql" in driver) and "no_cache" not in keys:
        return [("NO_CACHE", "1")]
    return []


def connection_string(config: OdbcSource, password: str | None) -> str:
    """The string pyodbc connects with: the DSN or the configured string, the password
    (``PWD``) filled in, the streaming options added."""
    if config.dsn is not None:
        pairs = [("DSN", config.dsn)]
    else:
        assert config.connection_string is not None
        pairs = [
            (key, value)
            for key, value in odbc_pairs(config.connection_string)
            if key.lower() not in _PASSWORD_KEYS
        ]
        pairs += streaming_options(pairs, config.batch_size)
    if password is not None:
        pairs.append(("PWD", password))
    return ";".join(f"{key}={_quote(value)}" for key, value in pairs)


def _password_variable(config: OdbcSource) -> str | None:
    if config.connection_string is not None:
        for key, value in odbc_pairs(config.connection_string):
            if key.lower() in _PASSWORD_KEYS and (names := env_references(value)):
                return names[0]
    return config.password_env


class OdbcItems(Source[OdbcSource]):
    type = "odbc"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        config = self.config
        redactor = self.runtime.redactor()
        variable = _password_variable(config)
        password = redactor.secret(variable, "database password") if variable else None
        params = render_tree(list(config.params), TemplateValues(ctx), "params")
        try:
            yield from self._stream(ctx, connection_string(config, password), params, progress)
        except DatasourceError as error:
            error.redact(redactor)
            raise

    def _stream(
        self, ctx: RunContext, text: str, params: list[Any], progress: SourceProgress
    ) -> Iterator[Item]:
        config = self.config
        try:
            import pyodbc
        except ImportError as error:
            raise ConfigError(
                f"ODBC is not available on this worker ({error}): install slurp[odbc] "
                "(pip install 'slurp[odbc]') and unixODBC (Debian: unixodbc) with the "
                "database's ODBC driver"
            ) from None
        try:
            connection = pyodbc.connect(
                text, autocommit=False, readonly=True, timeout=CONNECT_TIMEOUT_S
            )
        except pyodbc.Error as error:
            raise FetchError(
                f"cannot connect through ODBC: {_message(error)}",
                retryable=_state(error).startswith("08") or _state(error) in _RETRYABLE_STATES,
            ) from None
        timer: threading.Timer | None = None
        expired = threading.Event()
        try:
            cursor = connection.cursor()

            def expire() -> None:
                expired.set()
                cursor.cancel()

            if config.timeout_s is not None:  # SQLCancel from a timer works with any driver
                timer = threading.Timer(config.timeout_s, expire)
                timer.daemon = True
                timer.start()
            interrupt = (
                ctx.cancel.interrupting(cursor.cancel)
                if ctx.cancel is not None
                else contextlib.nullcontext()
            )
            with interrupt:
                cursor.execute(config.query, *params)
                names = [column[0] for column in cursor.description or []]
                convert = RowConverter(names, config.decimals)
                while rows := cursor.fetchmany(config.batch_size):
                    progress.page()
                    if ctx.cancel is not None:
                        ctx.cancel.check()  # between fetched batches
                    yield from convert.batch(rows)
        except pyodbc.Error as error:
            if expired.is_set():
                raise FetchError(
                    f"ODBC query cancelled: it ran longer than timeout_s={config.timeout_s:g} s "
                    f"({_message(error)})"
                ) from None
            state = _state(error)
            retryable = state.startswith("08") or state in _RETRYABLE_STATES
            what = "connection or query interrupted" if retryable else "query failed"
            raise FetchError(f"ODBC {what}: {_message(error)}", retryable=retryable) from None
        finally:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(Exception):
                connection.rollback()  # nothing was written; end the read transaction
            connection.close()


def _state(error: Exception) -> str:
    first = error.args[0] if error.args else ""
    return first if isinstance(first, str) and len(first) == 5 else ""


def _message(error: Exception) -> str:
    """The driver's message (pyodbc: ``(state, message)``), on one line."""
    text = str(error.args[1]) if len(error.args) > 1 else str(error)
    return " ".join(text.split()) or type(error).__name__
