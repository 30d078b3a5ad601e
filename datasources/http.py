"""An httpx client with retries, backoff, ``Retry-After`` and secret masking.

Retried (up to ``Backoff.retries`` times, then ``FetchError(retryable=True)``):
connection errors, timeouts, and the statuses in ``RETRY_STATUSES`` (408, 429 and 5xx
except 501/505). The wait before retry ``n`` (0-based) is ``Retry-After`` when the
answer has one (seconds or an HTTP date), else ``min(max_s, base_s * 2**n)`` scaled
by a random factor in [0.5, 1]. A ``Retry-After`` longer than ``retry_after_max_s``
fails at once (retryable: the job's own retry policy waits longer). Other 4xx/5xx
answers fail at once with ``FetchError(retryable=False)`` carrying the status and the
start of the body. A 401 makes an ``Authenticator`` refresh its token once.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from datasources.errors import ConfigError, FetchError
from datasources.redaction import Redactor

__all__ = ["RETRY_STATUSES", "Authenticator", "Backoff", "HttpClient", "retry_after_s"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429} | set(range(500, 600)) - {501, 505})
#: Characters of an error answer's body quoted in the error message.
BODY_SNIPPET_CHARS = 300


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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.redact = redactor
        self._sleep = sleep
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=True)

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
        self._client.close()

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
        while True:
            all_headers = dict(headers or {})
            if auth is not None:
                credentials = auth.headers(self)
                names = {name.lower() for name in credentials}
                all_headers = {k: v for k, v in all_headers.items() if k.lower() not in names}
                all_headers.update(credentials)
            try:
                request = self._client.build_request(
                    method, url, params=params, headers=all_headers, json=json,
                    content=content, data=data,
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
                problem = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
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
                    self.redact(f"{label}: {problem} (gave up after {attempt + 1} attempts)"),
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
            self._sleep(delay_s)


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
