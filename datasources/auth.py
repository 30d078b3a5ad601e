"""HTTP credentials: basic, bearer, and OAuth2 tokens cached until they expire.

Secrets are read from the environment variables the ``Auth`` config names, when a
source starts fetching, through the source's ``Redactor`` (so they are masked in every
message). OAuth2 (``client_credentials`` and ``password`` grants) posts a form to
``token_url`` and caches the ``access_token`` in the process-wide ``TokenCache`` until
``expires_in`` runs out (less a margin of 10 % of the lifetime, at most 60 s), so
later pages and later runs reuse it; an answer without ``expires_in`` is cached until
the API answers 401. A 401 from the API drops the cached token and fetches a new one,
once per request.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from contracts.datasources import Auth
from datasources.errors import FetchError, ResponseFormatError
from datasources.http import Authenticator, HttpClient
from datasources.redaction import Redactor

__all__ = ["MAX_EXPIRY_MARGIN_S", "OAuth2", "StaticAuth", "Token", "TokenCache", "authenticator"]

#: A token is renewed this long (at most) before it expires.
MAX_EXPIRY_MARGIN_S = 60.0

TokenKey = tuple[str, ...]


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: float | None  # on the cache's clock; None = until a 401


class TokenCache:
    """OAuth2 tokens by (grant, token URL, client id, username, scope); thread-safe.

    One per worker process (``Runtime.token_cache``). ``clock`` is monotonic seconds.
    ``fetches`` counts the tokens fetched (for tests and metrics).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[TokenKey, Token] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def get(self, key: TokenKey, fetch: Callable[[], tuple[str, float | None]]) -> Token:
        """The cached token of ``key`` if still fresh, else ``fetch()``'s (token,
        lifetime in seconds or None), cached."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and (token.expires_at is None or self.clock() < token.expires_at):
                return token
            started = self.clock()
            access_token, lifetime_s = fetch()
            self.fetches += 1
            expires_at = None
            if lifetime_s is not None:
                margin_s = min(MAX_EXPIRY_MARGIN_S, lifetime_s * 0.1)
                expires_at = started + lifetime_s - margin_s
            token = Token(access_token, expires_at)
            self._tokens[key] = token
            return token

    def invalidate(self, key: TokenKey, token: Token) -> None:
        """Drop ``token`` (if it is still the cached one for ``key``)."""
        with self._lock:
            if self._tokens.get(key) == token:
                del self._tokens[key]


class StaticAuth:
    """Basic or bearer credentials: fixed headers."""

    def __init__(self, header: str) -> None:
        self._header = header

    def headers(self, http: HttpClient) -> dict[str, str]:
        return {"Authorization": self._header}

    def invalidate(self) -> bool:
        return False


class OAuth2:
    """A bearer token from an OAuth2 token URL, through the shared ``TokenCache``."""

    def __init__(self, config: Auth, redactor: Redactor, cache: TokenCache) -> None:
        assert config.token_url is not None
        self.config = config
        self.cache = cache
        self.redact = redactor
        form = {"grant_type": "client_credentials"}
        client_id = client_secret = username = ""
        if config.type == "oauth2_password":
            assert config.username_env is not None and config.password_env is not None
            username = redactor.secret(config.username_env, "username")
            password = redactor.secret(config.password_env, "password")
            form = {"grant_type": "password", "username": username, "password": password}
        if config.client_id_env is not None:
            client_id = redactor.secret(config.client_id_env, "client id")
        if config.client_secret_env is not None:
            client_secret = redactor.secret(config.client_secret_env, "client secret")
        self._client_headers: dict[str, str] = {}
        if config.client_auth == "basic" and client_id:
            redactor.add_basic(client_id, client_secret)
            pair = f"{client_id}:{client_secret}".encode()
            self._client_headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form.update({"client_id": client_id, "client_secret": client_secret})
            form = {k: v for k, v in form.items() if v}
        if config.scope:
            form["scope"] = config.scope
        self._form = form
        self._key: TokenKey = (
            config.type, config.token_url, client_id, username, config.scope or ""
        )  # fmt: skip
        self._token: Token | None = None
        self._http: HttpClient | None = None

    def headers(self, http: HttpClient) -> dict[str, str]:
        self._http = http
        self._token = self.cache.get(self._key, self._fetch)
        self.redact.add(self._token.access_token)
        return {"Authorization": f"Bearer {self._token.access_token}"}

    def invalidate(self) -> bool:
        if self._token is None:
            return False
        self.cache.invalidate(self._key, self._token)
        self._token = None
        return True

    def _fetch(self) -> tuple[str, float | None]:
        assert self._http is not None and self.config.token_url is not None
        url = self.config.token_url
        headers = {"Accept": "application/json", **self._client_headers}
        response = self._http.send("POST", url, data=self._form, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            raise ResponseFormatError(
                self.redact(f"token URL {url} did not answer JSON ({response.status_code})")
            ) from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            keys = ", ".join(sorted(answer)) if isinstance(answer, dict) else type(answer).__name__
            raise FetchError(
                self.redact(f"token URL {url} answered without an access_token (got: {keys})"),
                retryable=False,
            )
        self.redact.add(token)
        lifetime = answer.get("expires_in")
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        valid = isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
        return token, float(lifetime) if valid and lifetime > 0 else None


def authenticator(
    config: Auth | None, redactor: Redactor, cache: TokenCache
) -> Authenticator | None:
    """The authenticator for ``config`` (secrets read now, from the environment)."""
    if config is None:
        return None
    if config.type == "basic":
        assert config.username_env is not None and config.password_env is not None
        username = redactor.secret(config.username_env, "username")
        password = redactor.secret(config.password_env, "password")
        redactor.add_basic(username, password)
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        return StaticAuth(f"Basic {pair}")
    if config.type == "bearer":
        assert config.token_env is not None
        return StaticAuth(f"Bearer {redactor.secret(config.token_env, 'token')}")
    return OAuth2(config, redactor, cache)
