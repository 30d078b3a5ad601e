"""Resource limits of the API, as two pure ASGI middlewares.

- ``BodyLimitMiddleware``: a request body larger than ``max_body_bytes`` is refused
  with 413 *before it is read*: a ``Content-Length`` over the limit is answered
  without passing a byte of the body to the app; a chunked body is counted as it
  streams in and refused as soon as the count passes the limit. Memory per request
  stays at the limit (plus the server's read buffer), whatever the client sends.
  Before answering, up to ``DRAIN_BYTES`` of the rest are read and discarded: a
  client that writes its whole body before reading (most do) then gets the 413;
  after a larger rest the connection is closed at once (the client may only see the
  connection reset).
- ``ConcurrencyLimitMiddleware``: at most ``per_user`` requests of one user (the
  ``user_id`` of a valid bearer token) and ``total`` requests overall are in
  progress at once, streamed answers included until their last byte. Over the
  user's cap: 429; over the total: 503; both with ``Retry-After``. Requests are
  refused at once, never queued, so a burst costs nothing but the refusals.
  ``EXEMPT_PATHS`` (health, metrics) are never counted nor refused.

Both count per process (one event loop): ``N`` uvicorn workers allow ``N`` times the
caps. The counters are touched only on the event loop, so they need no lock.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DRAIN_BYTES",
    "EXEMPT_PATHS",
    "RETRY_AFTER_S",
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "ConcurrencyLimitMiddleware",
    "ConcurrencyLimits",
]

#: Paths neither counted nor refused by the concurrency caps (cheap, no database).
EXEMPT_PATHS = frozenset({"/api/health", "/metrics"})
#: ``Retry-After`` of a refusal by a concurrency cap, in seconds.
RETRY_AFTER_S = 1
#: Bytes of a refused body read and discarded so its client can read the 413.
DRAIN_BYTES = 8 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit. An ``HTTPException``,
    so FastAPI's body parsing lets it through to the app's handler (413 as JSON)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body too large: the limit is {limit} bytes (SLURP_API_MAX_BODY_BYTES)",
        )


async def _send_json(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, budget: int) -> None:
    """Read and discard the rest of a body, at most ``budget`` bytes of it."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``, before they are read (see above)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            await _send_json(
                send, 413, BodyTooLarge(self.max_bytes).detail, {"Connection": "close"}
            )
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_BYTES)
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # read outside FastAPI's body parsing
            if started:
                raise
            await _send_json(send, 413, exc.detail, {"Connection": "close"})


class ConcurrencyLimits:
    """Requests in progress: per user and in total, with their caps."""

    def __init__(self, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self.in_flight = 0
        self.by_user: Counter[str] = Counter()

    def enter(self, user: str | None) -> tuple[int, str] | None:
        """Count a request in; or (status, reason) if a cap is full (nothing counted)."""
        if user is not None and self.by_user[user] >= self.per_user:
            return 429, (
                f"too many requests of user {user!r} in progress (at most "
                f"{self.per_user}, SLURP_API_MAX_CONCURRENT_PER_USER); retry when one "
                "has finished"
            )
        if self.in_flight >= self.total:
            return 503, (
                f"the API is busy: {self.in_flight} requests in progress (at most "
                f"{self.total}, SLURP_API_MAX_CONCURRENT); try again shortly"
            )
        self.in_flight += 1
        if user is not None:
            self.by_user[user] += 1
        return None

    def leave(self, user: str | None) -> None:
        self.in_flight -= 1
        if user is not None:
            self.by_user[user] -= 1
            if self.by_user[user] <= 0:
                del self.by_user[user]


class ConcurrencyLimitMiddleware:
    """Applies ``limits`` to every HTTP request outside ``EXEMPT_PATHS``.

    ``user_of(token)`` names the user of a bearer token, or None if it is not valid
    (such a request counts only in the total; the route then answers 401).
    """

    def __init__(
        self, app: ASGIApp, limits: ConcurrencyLimits, user_of: Callable[[str], str | None]
    ) -> None:
        self.app = app
        self.limits = limits
        self.user_of = user_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        user = self._user(scope)
        refused = self.limits.enter(user)
        if refused is not None:
            status, reason = refused
            await _send_json(send, status, reason, {"Retry-After": str(RETRY_AFTER_S)})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limits.leave(user)

    def _user(self, scope: Scope) -> str | None:
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.user_of(token.strip())
