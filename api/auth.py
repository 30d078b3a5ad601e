"""Authentication and authorisation, the way Django REST framework + simplejwt do it.

- ``POST /api/token/`` with ``{"username", "password"}`` (JSON or a form) returns
  ``{"access", "refresh"}``; ``POST /api/token/refresh/`` with ``{"refresh"}`` returns
  a new ``{"access", "refresh"}`` (simplejwt's ``ROTATE_REFRESH_TOKENS``). Both are
  HS256 JWTs signed with ``jwt_secret`` carrying simplejwt's claims: ``token_type``
  (access | refresh), ``user_id`` (the username), ``exp``, ``iat``, ``jti``.
- Refresh tokens are rotated and revocable (``storage.refresh_tokens``): each is good
  for one refresh; using one twice revokes its whole family (every token descending
  from the same login); ``POST /api/token/blacklist/`` (alias ``/api/token/logout/``)
  revokes the family; removing a user or changing their password or role revokes all
  their tokens. Access tokens are not stored: they live out their ``access_ttl_s``,
  but the user is looked up on every request, so a removed user is refused at once.
- ``POST /api/token/verify/`` with ``{"token"}``: 200 ``{}`` for a token that would be
  accepted now, 401 otherwise.
- Users are the bootstrap users of the settings and the users in the database
  (``api.users``). Every other endpoint except health, metrics and the schema wants
  ``Authorization: Bearer <access>``.
- Roles: ``reader`` may only GET; ``admin`` may do everything. The per-user
  collection ACL limits which collections' data a user may read (any role), and
  which jobs and runs a reader may see (those of jobs writing a readable collection).
- Failures say nothing about why: a missing token, a bad signature, an expired token,
  a refresh token used as access token, a revoked token, or a deleted user all answer
  the same 401.
- Failed logins are limited within a sliding ``login_window_s``, by four counters
  (``api.loginlimits.LoginLimits``): per (username, client IP) ``login_max_failures``,
  per client IP whatever the usernames ``login_max_failures_per_ip``, per username from
  any address ``login_max_failures_per_user``, and all together
  ``login_max_failures_total``. Once one is full the next attempts it covers get 429
  with ``Retry-After``, even with the right password. Attempts are counted before the
  password is checked, so concurrent guesses cannot overshoot a limit; a successful
  login takes its attempt back.
- The client IP is the TCP peer, or, for a peer in ``trusted_proxies``, the address
  its ``X-Forwarded-For`` names (uvicorn's proxy-headers middleware, configured by
  ``api.server``). Without trusted proxies the header is ignored (and logged once).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiConfig, UserSpec
from api.context import ApiContext, get_context
from api.errors import NotAuthenticated, PermissionDenied
from api.loginlimits import LoginLimits, LoginRateLimiter
from api.passwords import hash_password, parse_hash
from api.users import KnownUser, UserDirectory
from storage.refresh_tokens import RefreshTokenStore
from storage.store import Store

__all__ = [
    "ALGORITHM",
    "Admin",
    "Authenticator",
    "CurrentUser",
    "LoginLimits",
    "LoginRateLimiter",
    "TokenClaims",
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


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    #: The refresh token's ``jti`` and ``exp`` (for ``storage.refresh_tokens``).
    refresh_jti: str = ""
    refresh_expires_at: float = 0.0


@dataclass(frozen=True)
class TokenClaims:
    """The claims slurp reads from a verified token."""

    kind: str
    username: str
    jti: str
    expires_at: float


class TokenService:
    """Issue and verify access and refresh tokens (signatures and expiry only)."""

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

    def _encode(self, username: str, kind: str, ttl_s: float) -> tuple[str, dict[str, Any]]:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "token_type": kind,
            "user_id": username,
            "iat": now,
            "exp": now + max(1, int(ttl_s)),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), claims

    def issue(self, username: str) -> TokenPair:
        access, _ = self._encode(username, "access", self.access_ttl_s)
        refresh, claims = self._encode(username, "refresh", self.refresh_ttl_s)
        return TokenPair(access, refresh, claims["jti"], float(claims["exp"]))

    def access_for(self, username: str) -> str:
        return self._encode(username, "access", self.access_ttl_s)[0]

    def decode(self, token: str, kind: str | None = None) -> TokenClaims:
        """The claims of a valid, unexpired token (of type ``kind`` if given);
        ``NotAuthenticated`` else."""
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
        found = claims.get("token_type")
        username, jti, exp = claims.get("user_id"), claims.get("jti"), claims.get("exp")
        if (
            found not in ("access", "refresh")
            or (kind is not None and found != kind)
            or not isinstance(username, str)
            or not isinstance(jti, str)
            or not isinstance(exp, int | float)
        ):
            raise NotAuthenticated(BAD_TOKEN)
        return TokenClaims(str(found), username, jti, float(exp))

    def verify(self, token: str, kind: str) -> str:
        """The username in a valid, unexpired ``kind`` token; ``NotAuthenticated`` else."""
        return self.decode(token, kind).username


class Authenticator:
    """Logins against the known users; token issue, rotation, revocation and checks;
    the login limits."""

    def __init__(self, config: ApiConfig, store: Store) -> None:
        self.config = config
        self.tokens = TokenService(
            config.jwt_secret.get_secret_value(), config.access_ttl_s, config.refresh_ttl_s
        )
        self.limits = LoginLimits(config)
        self.users = UserDirectory(config.users, store)
        self.refresh_tokens = RefreshTokenStore(store)
        self.warned_untrusted_forwarding = False
        # Unknown usernames are checked against this, so they cost as much as known ones.
        self._dummy = parse_hash(hash_password(uuid.uuid4().hex))

    def user(self, username: str) -> UserSpec | None:
        """The user named ``username`` (exact match), or None."""
        known = self.users.get(username)
        return None if known is None else known.spec

    def login(self, username: str, password: str, client_ip: str) -> TokenPair:
        """Tokens for valid credentials (a new refresh family); ``NotAuthenticated``
        or ``RateLimited`` else."""
        known = self._authenticate(username, password, client_ip)
        return self._issue(known, family=uuid.uuid4().hex)

    def check_password(self, username: str, password: str, client_ip: str) -> UserSpec:
        """The user, for valid credentials: ``login`` without tokens (the console's
        sign-in, which opens a session instead)."""
        return self._authenticate(username, password, client_ip).spec

    def _authenticate(self, username: str, password: str, client_ip: str) -> KnownUser:
        attempt = self.limits.attempt(username, client_ip)
        known = self.users.get(username)
        expected = known.parsed_hash if known is not None else self._dummy
        if not expected.verify(password) or known is None:
            log.warning("failed login for %r from %s", username[:150], client_ip)
            raise NotAuthenticated(BAD_CREDENTIALS)
        self.limits.succeeded(username, client_ip, attempt)
        self.users.upgrade_hash(known, password)
        return known

    def refresh(self, refresh_token: str) -> TokenPair:
        """A new access *and* refresh token for a refresh token that was never used,
        of a user that still exists with the same password and role. A token used
        before revokes its family."""
        claims = self.tokens.decode(refresh_token, "refresh")
        state, stored = self.refresh_tokens.use(claims.jti)
        if state == "unknown" or stored is None:
            raise NotAuthenticated(BAD_TOKEN)
        if state == "reused":
            self.refresh_tokens.revoke_family(stored.family)
            log.warning(
                "refresh token of %r used a second time: every token of its login is "
                "revoked (a copy in other hands?)",
                stored.username,
            )
            raise NotAuthenticated(BAD_TOKEN)
        known = self.users.get(claims.username)
        if known is None or stored.username != claims.username or stored.epoch != known.epoch:
            self.refresh_tokens.revoke_family(stored.family)
            raise NotAuthenticated(BAD_TOKEN)
        return self._issue(known, stored.family)

    def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's family (this login's tokens, however often they
        were rotated); ``NotAuthenticated`` for a token that is not valid (any more)."""
        claims = self.tokens.decode(refresh_token, "refresh")
        stored = self.refresh_tokens.get(claims.jti)
        if stored is None:
            raise NotAuthenticated(BAD_TOKEN)
        self.refresh_tokens.revoke_family(stored.family)

    def verify(self, token: str) -> None:
        """``NotAuthenticated`` unless ``token`` would be accepted now: an access token
        of an existing user, or an unused, unrevoked refresh token of the same epoch."""
        claims = self.tokens.decode(token)
        known = self.users.get(claims.username)
        if known is None:
            raise NotAuthenticated(BAD_TOKEN)
        if claims.kind == "refresh":
            stored = self.refresh_tokens.get(claims.jti)
            if stored is None or stored.used or stored.epoch != known.epoch:
                raise NotAuthenticated(BAD_TOKEN)

    def token_user(self, access_token: str) -> str | None:
        """The username in a valid access token (the user may no longer exist), or None."""
        try:
            return self.tokens.verify(access_token, "access")
        except NotAuthenticated:
            return None

    def user_for(self, access_token: str) -> UserSpec:
        user = self.user(self.tokens.verify(access_token, "access"))
        if user is None:
            raise NotAuthenticated(BAD_TOKEN)
        return user

    def _issue(self, known: KnownUser, family: str) -> TokenPair:
        pair = self.tokens.issue(known.username)
        expires = datetime.fromtimestamp(pair.refresh_expires_at, UTC)
        self.refresh_tokens.add(pair.refresh_jti, family, known.username, known.epoch, expires)
        return pair


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
    """The client's address: the TCP peer, rewritten by uvicorn from X-Forwarded-For
    only when the peer is one of ``trusted_proxies`` (``api.server``)."""
    host = request.client.host if request.client else "unknown"
    if "x-forwarded-for" in request.headers:
        context: ApiContext = request.app.state.slurp
        if not context.config.trusted_proxies:
            _warn_untrusted_forwarding(context.auth, host)
    return host


def _warn_untrusted_forwarding(auth: Authenticator, peer: str) -> None:
    if auth.warned_untrusted_forwarding:
        return
    auth.warned_untrusted_forwarding = True
    log.warning(
        "X-Forwarded-For from %s ignored: SLURP_API_TRUSTED_PROXIES is empty. Behind a "
        "reverse proxy every client then has the proxy's address, so the per-IP login "
        "limits count all clients together; set it to the proxy's address.",
        peer,
    )
