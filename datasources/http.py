"""An httpx client with retries, backoff, ``Retry-After`` and secret masking.

Retried (up to ``Backoff.retries`` times, then ``FetchError(retryable=True)``):
connection errors, timeouts, and the statuses in ``RETRY_STATUSES`` (408, 429 and 5xx
except 501/505). The wait before retry ``n`` (0-based) is ``Retry-After`` when the
answer has one (seconds or an HTTP date), else ``min(max_s, base_s * 2**n)`` scaled
by a random factor in [0.5, 1]. A ``Retry-After`` longer than ``retry_after_max_s``
fails at once (retryable: the job's own retry policy waits longer). Other 4xx/5xx
answers fail at once with ``FetchError(retryable=False)`` carrying the status and the
start of the body. A 401 makes an ``Authenticator`` refresh its token once.

Every request (redirects included) goes through ``datasources.egress.EgressTransport``:
only hosts and addresses the job policy allows are reached. httpx's own request log
lines get the userinfo and credential-like query values of their URLs masked.

With a ``cancel`` token (``datasources.cancel``) a client stops for a cancelled run:
before each request and retry (``RunCancelled``), during a retry's wait, and *during*
a request: the sockets the client opened are recorded (httpcore's ``trace``
extension reports each new connection) and shut down when the run is cancelled, which
wakes a blocked connect, send or read at once, however slow the server. The request
then fails, and the client raises ``RunCancelled`` instead of retrying.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from contracts.masking import scrub_urls
from datasources.cancel import CancelToken
from datasources.egress import EgressTransport
from datasources.errors import ConfigError, FetchError
from datasources.policy import JobPolicy
from datasources.redaction import Redactor

__all__ = ["RETRY_STATUSES", "Authenticator", "Backoff", "HttpClient", "retry_after_s"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429} | set(range(500, 600)) - {501, 505})
#: Characters of an error answer's body quoted in the error message.
BODY_SNIPPET_CHARS = 300


class _ScrubUrls(logging.Filter):
    """Masks URL userinfo and credential-like query values in a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub_urls(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _scrub_httpx_log() -> None:
    """Install ``_ScrubUrls`` on httpx's logger (once; it logs every request's URL)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _ScrubUrls) for f in logger.filters):
        logger.addFilter(_ScrubUrls())


class Authenticator(Protocol):
    """Adds credentials to requests (see ``datasources.auth``)."""

    def headers(self, http: HttpClient) -> dict[str, str]:
        """Headers to send with the next request."""
        ...

    def invalidate(self) -> bool:
        """Forget a cached token after a 401; True if a new one may help."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Retry schedule of one client."""

    retries: int = 3
    base_s: float = 0.5
    max_s: float = 30.0
    retry_after_max_s: float = 120.0

    def delay_s(self, attempt: int) -> float:
        """Wait before retry number ``attempt`` (0-based) without a Retry-After."""
        return min(self.max_s, self.base_s * 2.0**attempt) * random.uniform(0.5, 1.0)


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The answer's ``Retry-After`` in seconds (>= 0), or None if absent or invalid."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpClient:
    """One source's HTTP client; use as a context manager (closes connections)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        backoff: Backoff,
        redactor: Redactor,
        policy: JobPolicy,
        sleep: Callable[[float], None] = time.sleep,
        cancel: CancelToken | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.redact = redactor
        self._sleep = sleep
        self.cancel = cancel
        self._sockets: list[socket.socket] = []
        self._sockets_lock = threading.Lock()
        # While the client is open, cancelling the run shuts its sockets down (streamed
        # bodies read after ``send`` returned included).
        self._interrupts = contextlib.ExitStack()
        if cancel is not None:
            self._interrupts.enter_context(cancel.interrupting(self._interrupt))
        _scrub_httpx_log()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            transport=EgressTransport(policy),
            trust_env=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._interrupts.close()
        self._client.close()
        with self._sockets_lock:
            self._sockets.clear()

    def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace hook: note the socket of every new connection."""
        if not event.endswith(".complete") or not event.startswith(
            ("connection.connect_tcp", "connection.start_tls")
        ):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._sockets_lock:
            self._sockets.append(sock)
        if self.cancel is not None and self.cancel.cancelled:
            self._interrupt()

    def _interrupt(self) -> None:
        """Shut every socket of this client down (called from the cancelling thread):
        a thread blocked reading or writing one wakes with an error at once."""
        with self._sockets_lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)

    def _check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.check()

    def _wait(self, seconds: float) -> None:
        if self.cancel is None:
            self._sleep(seconds)
        elif self.cancel.wait(seconds):
            self.cancel.check()

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        data: Mapping[str, str] | None = None,
        auth: Authenticator | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with retries; a 2xx/3xx answer, else ``FetchError``. With ``stream``
        the body is not read: the caller must close the answer."""
        attempt, refreshed = 0, False
        extensions = {"trace": self._trace} if self.cancel is not None else None
        while True:
            self._check_cancel()
            all_headers = dict(headers or {})
            if auth is not None:
                credentials = auth.headers(self)
                names = {name.lower() for name in credentials}
                all_headers = {k: v for k, v in all_headers.items() if k.lower() not in names}
                all_headers.update(credentials)
            try:
                request = self._client.build_request(
                    method, url, params=params, headers=all_headers, json=json,
                    content=content, data=data, extensions=extensions,
                )  # fmt: skip
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise ConfigError(self.redact(f"invalid URL {url!r}: {exc}")) from None
            label = f"{method} {request.url}"
            status: int | None = None
            wait_s: float | None = None
            try:
                response = self._client.send(request, stream=stream)
            except httpx.UnsupportedProtocol as exc:
                raise ConfigError(self.redact(f"{label}: {exc}")) from None
            except httpx.TimeoutException as exc:
                self._check_cancel()
                problem = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                self._check_cancel()  # a socket shut down for a cancelled run
                problem = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status == 401 and auth is not None and not refreshed and auth.invalidate():
                    refreshed = True
                    response.close()
                    continue
                if status not in RETRY_STATUSES and status < 400:
                    return response
                if status not in RETRY_STATUSES:
                    snippet = _snippet(response, stream)
                    raise FetchError(
                        self.redact(f"{label}: HTTP {status} {response.reason_phrase}: {snippet}"),
                        retryable=False,
                        status=status,
                    ) from None
                problem = f"HTTP {status} {response.reason_phrase}"
                wait_s = retry_after_s(response)
                response.close()
                if wait_s is not None and wait_s > self.backoff.retry_after_max_s:
                    raise FetchError(
                        self.redact(
                            f"{label}: {problem} with Retry-After {wait_s:g} s, more than "
                            f"the {self.backoff.retry_after_max_s:g} s a run waits"
                        ),
                        status=status,
                    ) from None
            if attempt >= self.backoff.retries:
                raise FetchError(
                    self.redact(
                        f"{label}: {problem} (gave up after {attempt + 1} "
                        f"attempt{'s' if attempt else ''})"
                    ),
                    status=status,
                ) from None
            delay_s = self.backoff.delay_s(attempt) if wait_s is None else wait_s
            attempt += 1
            log.warning(
                "%s",
                self.redact(
                    f"{label}: {problem}; retry {attempt}/{self.backoff.retries} in {delay_s:.2f} s"
                ),
            )
            self._wait(delay_s)


def _snippet(response: httpx.Response, streamed: bool) -> str:
    try:
        if not streamed:
            raw = response.content[: BODY_SNIPPET_CHARS * 4]
        else:
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= BODY_SNIPPET_CHARS * 4:
                    break
    except httpx.HTTPError:
        return "(body unreadable)"
    finally:
        response.close()
    text = " ".join(raw.decode("utf-8", "replace").split())
    if len(text) > BODY_SNIPPET_CHARS:
        text = text[:BODY_SNIPPET_CHARS] + "..."
    return text or "(empty body)"
