"""The one way slurp connects to Redis: ``redis_client(SLURP_REDIS_URL)``.

Every Redis connection of slurp is made here: dramatiq's broker (``workers.app``),
the workers' leases and admission scripts, the ticker's slot claims and queue
metrics, the API and the CLI. So TLS and Sentinel work for all of them alike,
Lua scripts included (a script missing on a newly promoted master is loaded again
by redis-py on its ``NOSCRIPT`` answer).

URL forms (``[user:password@]`` is optional everywhere; percent-encode special
characters):

==============================================================  ===========================
``redis://[user:password@]host[:port][/db]``                    plain TCP
``rediss://[user:password@]host[:port][/db]?ssl_ca_certs=...``  TLS
``unix:///path/to/redis.sock?db=0``                             Unix socket
``redis+sentinel://[user:password@]h1:26379,h2:26379/master[/db]``  the current master of
                                                                the service ``master``,
                                                                asked from the sentinels
``rediss+sentinel://...``                                       the same, every connection
                                                                (sentinels too) over TLS
==============================================================  ===========================

Query options are redis-py's (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs`` = ``required`` | ``optional`` | ``none``, ``ssl_check_hostname``,
``socket_timeout``, ``socket_connect_timeout``, ``health_check_interval``, ...). They
win over slurp's defaults (``DEFAULTS``). For Sentinel they apply to the data nodes and
to the sentinels; the sentinels' own credentials, if they need any, are
``sentinel_username`` and ``sentinel_password``. A URL carries a password: keep it in
a secret (``SLURP_REDIS_URL_FILE``), and log it only through ``redacted``.

With Sentinel, the client asks the sentinels for the master when it (re)connects;
after a failover the next command fails on the old connection (connection error, or
``READONLY`` from a demoted master) and is retried (``RETRIES``, within a second) on
a new connection to the promoted master. While no master answers (the sentinels'
``down-after-milliseconds`` plus the election), commands fail with
``redis.ConnectionError``, which each component survives on its own: dramatiq's
consumers reconnect every 3 s and retry their acks, the ticker retries at its next
pass, a run whose lease cannot be renewed stops and is retried.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.retry import Retry
from redis.sentinel import Sentinel

__all__ = [
    "DEFAULTS",
    "DEFAULT_SENTINEL_PORT",
    "RETRIES",
    "SCHEMES",
    "SentinelURL",
    "parse_sentinel_url",
    "redacted",
    "redis_client",
    "retry_policy",
    "sentinel_url",
]

#: Connection defaults, overridden by the URL's query options.
DEFAULTS: Mapping[str, Any] = {
    "socket_connect_timeout": 10.0,  # seconds to open a connection
    "socket_keepalive": True,
    "health_check_interval": 30,  # seconds idle before a connection is PINGed on reuse
}
#: Retries of a command failing with a connection error or timeout (each reconnects;
#: redis-py retries the connect itself as often, so a dead server costs 16 attempts).
RETRIES = 3
#: Backoff between retries: exponential from this, with jitter ...
RETRY_BASE_S = 0.1
#: ... up to this (3 retries wait at most about 0.1 + 0.2 + 0.4 s).
RETRY_CAP_S = 1.0
#: The port of a sentinel given without one.
DEFAULT_SENTINEL_PORT = 26379
#: Sentinel URL scheme -> TLS on every connection.
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
#: Every URL scheme ``redis_client`` accepts.
SCHEMES = ("redis", "rediss", "unix", *_SENTINEL_SCHEMES)
#: Query options that configure the sentinel connections only.
_SENTINEL_ONLY = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` or ``rediss+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    #: redis-py connection options from the query, for data nodes and sentinels.
    options: dict[str, Any] = field(default_factory=dict)
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def redis_client(url: str) -> redis.Redis:
    """A redis-py client for ``url`` (see the module docstring); no I/O yet.

    Commands failing with a connection error or timeout are retried ``RETRIES`` times
    with exponential backoff (``retry_policy``), reconnecting each time: a restarted
    server or, with Sentinel, a newly promoted master is found again.
    """
    scheme = _scheme(url)
    if scheme in _SENTINEL_SCHEMES:
        return _sentinel_client(parse_sentinel_url(url))
    if scheme not in SCHEMES:
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r} in {redacted(url)}; use one of "
            + ", ".join(f"{name}://" for name in SCHEMES)
        )
    query = _query(url)
    _check_tls_options(scheme == "rediss", query, url)
    defaults = {name: value for name, value in DEFAULTS.items() if name not in query}
    # redis-py lets options in the URL win over keyword arguments.
    return redis.Redis.from_url(url, retry=retry_policy(), **defaults)


def retry_policy() -> Retry:
    """Retry a command ``RETRIES`` times on connection errors and timeouts, backing
    off exponentially (with jitter) up to ``RETRY_CAP_S`` between tries."""
    return Retry(ExponentialWithJitterBackoff(base=RETRY_BASE_S, cap=RETRY_CAP_S), RETRIES)


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse ``redis+sentinel://[user:pw@]host[:port][,host[:port]...]/service[/db]``.

    Raises ``ValueError`` naming what is wrong (never echoing the password).
    """
    scheme = _scheme(url)
    if scheme not in _SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL: {redacted(url)}")
    rest = url.split("://", 1)[1]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, password = _userinfo(userinfo)
    sentinels = tuple(_host_port(entry, url) for entry in hosts.split(",") if entry)
    if not sentinels:
        raise ValueError(f"no sentinel host in {redacted(url)}")
    parts = [part for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError(
            f"{redacted(url)}: the path must be /<master name>[/<db>], e.g. /mymaster/0"
        )
    service = unquote(parts[0])
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ValueError(f"{redacted(url)}: the database must be a number") from None
    query = _parse_query(query_text, url)
    _check_tls_options(_SENTINEL_SCHEMES[scheme], query, url)
    db = int(query.pop("db", db))
    sentinel_username = query.pop("sentinel_username", None)
    sentinel_password = query.pop("sentinel_password", None)
    return SentinelURL(
        sentinels=sentinels,
        service=service,
        db=db,
        username=username,
        password=password,
        ssl=_SENTINEL_SCHEMES[scheme],
        options=query,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
    )


def redacted(url: str) -> str:
    """``url`` with its password (and ``*password=`` query values) replaced by ``***``."""
    text = re.sub(r"(://[^/@?]*?:)[^/@?]*@", r"\1***@", url)
    return re.sub(r"((?:^|[?&])[a-z_]*password=)[^&]*", r"\1***", text, flags=re.I)


# -- internals -------------------------------------------------------------------------


def _check_tls_options(tls: bool, options: Mapping[str, object], url: str) -> None:
    if not tls and any(name.startswith("ssl") for name in options):
        raise ValueError(
            f"{redacted(url)}: ssl_* options need TLS: use rediss:// or rediss+sentinel://"
        )


def _sentinel_client(parsed: SentinelURL) -> redis.Redis:
    common = {**DEFAULTS, "retry": retry_policy(), **parsed.options}
    if parsed.ssl:
        common["ssl"] = True
    sentinel_kwargs = {
        key: value
        for key, value in common.items()
        if key.startswith(("socket_", "ssl")) or key in ("health_check_interval", "retry")
    }
    if parsed.sentinel_username:
        sentinel_kwargs["username"] = parsed.sentinel_username
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    # ``Any``: redis-py annotates Sentinel from 8.2 on only; typed the same either way.
    sentinel: Any = cast(Any, Sentinel)(
        list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs, **common
    )
    client: redis.Redis = sentinel.master_for(
        parsed.service,
        redis_class=redis.Redis,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
    )
    return client


def _scheme(url: str) -> str:
    if "://" not in url:
        raise ValueError(f"not a Redis URL (no scheme): {redacted(url)}")
    return url.split("://", 1)[0].lower()


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(url.partition("?")[2], keep_blank_values=True))


def _parse_query(text: str, url: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        parser = cast("Callable[[str], Any] | None", URL_QUERY_ARGUMENT_PARSERS.get(name))
        try:
            options[name] = parser(value) if parser is not None else value
        except (TypeError, ValueError):
            raise ValueError(f"{redacted(url)}: invalid value for {name!r}") from None
    return options


def _userinfo(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _host_port(entry: str, url: str) -> tuple[str, int]:
    host, port = entry, DEFAULT_SENTINEL_PORT
    if entry.startswith("["):  # [::1]:26379
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], url)
    elif entry.count(":") == 1:
        host, _, text = entry.partition(":")
        port = _port(text, url)
    if not host:
        raise ValueError(f"empty sentinel host in {redacted(url)}")
    return host, port


def _port(text: str, url: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad sentinel port {text!r} in {redacted(url)}")
    return int(text)


def sentinel_url(
    sentinels: list[tuple[str, int]],
    service: str,
    db: int = 0,
    password: str | None = None,
    tls: bool = False,
    **options: str,
) -> str:
    """Build a Sentinel URL (the inverse of ``parse_sentinel_url``; tests, docs)."""
    scheme = "rediss+sentinel" if tls else "redis+sentinel"
    auth = f":{quote(password, safe='')}@" if password else ""
    hosts = ",".join(f"{host}:{port}" for host, port in sentinels)
    query = "&".join(f"{name}={quote(value, safe='/')}" for name, value in options.items())
    return f"{scheme}://{auth}{hosts}/{quote(service, safe='')}/{db}" + (
        f"?{query}" if query else ""
    )
