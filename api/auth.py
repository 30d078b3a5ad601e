"""Authentication and authorisation, the way Django REST framework + simplejwt do it.

- ``POST /api/token/`` with ``{"username", "password"}`` returns ``{"access",
  "refresh"}``; ``POST /api/token/refresh/`` with ``{"refresh"}`` returns a new
  ``{"access"}``. Both are HS256 JWTs signed with ``jwt_secret`` carrying simplejwt's
  claims: ``token_type`` (access | refresh), ``user_id`` (the username), ``exp``,
  ``iat``, ``jti``.
- Every other endpoint except health, metrics and the schema wants ``Authorization:
  Bearer <access>``. The user is looked up in the configuration on every request, so
  removing a user or changing their role or ACL applies at once.
- Roles: ``reader`` may only GET; ``admin`` may do everything. The per-user
  collection ACL limits which collections' data a user may read (any role), and
  which jobs and runs a reader may see (those of jobs writing a readable collection).
- Failures say nothing about why: a missing token, a bad signature, an expired token,
  a refresh token used as access token, or a deleted user all answer the same 401.
- Failed logins are limited per (username, client IP): after ``login_max_failures``
  within ``login_window_s`` the next attempts get 429 with ``Retry-After``, even with
  the right password. Attempts are counted before the password is checked, so
  concurrent guesses cannot overshoot the limit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiConfig, UserSpec
from api.context import ApiContext, get_context
from api.errors import NotAuthenticated, PermissionDenied, RateLimited
from api.passwords import hash_password, parse_hash, verify_password

__all__ = [
    "ALGORITHM",
    "Admin",
    "Authenticator",
    "CurrentUser",
    "LoginRateLimiter",
    "TokenPair",
    "TokenService",
    "client_ip",
    "current_user",
    "require_admin",
]

log = logging.getLogger(__name__)

#: The only signing algorithm accepted (``alg: none`` and others are refused).
ALGORITHM = "HS256"
#: simplejwt's answers, word for word.
BAD_CREDENTIALS = "No active account found with the given credentials"
BAD_TOKEN = "Given token not valid for any token type"
_REQUIRED_CLAIMS = ["exp", "iat", "jti", "token_type", "user_id"]
#: How many (username, IP) keys the limiter remembers at most (oldest forgotten first).
MAX_LIMITER_KEYS = 100_000


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


class TokenService:
    """Issue and verify access and refresh tokens."""

    def __init__(
        self,
        secret: str,
        access_ttl_s: float,
        refresh_ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._clock = clock

    def _encode(self, username: str, kind: str, ttl_s: float) -> str:
        now = int(self._clock())
        claims = {
            "token_type": kind,
            "user_id": username,
            "iat": now,
            "exp": now + max(1, int(ttl_s)),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def issue(self, username: str) -> TokenPair:
        return TokenPair(
            access=self._encode(username, "access", self.access_ttl_s),
            refresh=self._encode(username, "refresh", self.refresh_ttl_s),
        )

    def access_for(self, username: str) -> str:
        return self._encode(username, "access", self.access_ttl_s)

    def verify(self, token: str, kind: str) -> str:
        """The username in a valid, unexpired ``kind`` token; ``NotAuthenticated`` else."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": _REQUIRED_CLAIMS},
                leeway=0,
            )
        except jwt.PyJWTError:
            raise NotAuthenticated(BAD_TOKEN) from None
        username = claims.get("user_id")
        if claims.get("token_type") != kind or not isinstance(username, str):
            raise NotAuthenticated(BAD_TOKEN)
        return username


class LoginRateLimiter:
    """At most ``max_failures`` failed logins per key within a sliding ``window_s``."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_LIMITER_KEYS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, key: tuple[str, str]) -> None:
        """Count an attempt as a failure up front; ``RateLimited`` if over the limit.

        Call ``succeeded(key)`` when the credentials turn out right.
        """
        now = self._clock()
        with self._lock:
            times = self._failures.pop(key, None) or deque()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            self._failures[key] = times  # (re)inserted last: most recently used
            if len(times) >= self.max_failures:
                raise RateLimited(times[0] + self.window_s - now)
            times.append(now)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the key's failures (a successful login)."""
        with self._lock:
            self._failures.pop(key, None)


class Authenticator:
    """Logins against the configured users; token checks; the rate limit."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.tokens = TokenService(
            config.jwt_secret.get_secret_value(), config.access_ttl_s, config.refresh_ttl_s
        )
        self.limiter = LoginRateLimiter(config.login_max_failures, config.login_window_s)
        # Unknown usernames are checked against this, so they cost as much as known ones.
        self._dummy = parse_hash(hash_password(uuid.uuid4().hex))
        self._hashes = {
            user.username: parse_hash(user.password_hash.get_secret_value())
            for user in config.users
        }

    def login(self, username: str, password: str, client_ip: str) -> TokenPair:
        """Tokens for valid credentials; ``NotAuthenticated`` or ``RateLimited`` else."""
        key = (username.casefold(), client_ip)
        self.limiter.attempt(key)
        user = self.config.user(username)
        expected = self._hashes.get(username, self._dummy)
        if not verify_password(password, expected) or user is None:
            log.warning("failed login for %r from %s", username[:150], client_ip)
            raise NotAuthenticated(BAD_CREDENTIALS)
        self.limiter.succeeded(key)
        return self.tokens.issue(user.username)

    def refresh(self, refresh_token: str) -> str:
        """A new access token for a valid refresh token of a user that still exists."""
        username = self.tokens.verify(refresh_token, "refresh")
        if self.config.user(username) is None:
            raise NotAuthenticated(BAD_TOKEN)
        return self.tokens.access_for(username)

    def user_for(self, access_token: str) -> UserSpec:
        user = self.config.user(self.tokens.verify(access_token, "access"))
        if user is None:
            raise NotAuthenticated(BAD_TOKEN)
        return user


_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /api/token/ (expires after access_ttl_s).",
)


def current_user(
    context: Annotated[ApiContext, Depends(get_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserSpec:
    """The user of the request's bearer token; 401 without a valid one."""
    if credentials is None or not credentials.credentials:
        raise NotAuthenticated()
    return context.auth.user_for(credentials.credentials)


CurrentUser = Annotated[UserSpec, Depends(current_user)]


def require_admin(user: CurrentUser) -> UserSpec:
    """The user, if an admin; 403 else."""
    if user.role != "admin":
        raise PermissionDenied()
    return user


Admin = Annotated[UserSpec, Depends(require_admin)]


def client_ip(request: Request) -> str:
    """The peer address (uvicorn rewrites it from X-Forwarded-For of trusted proxies)."""
    return request.client.host if request.client else "unknown"
