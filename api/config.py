"""API settings: ``SLURP_API_*`` environment variables (pydantic-settings).

=========================================  =========================================================
``SLURP_API_HOST``                         bind address (default ``127.0.0.1``)
``SLURP_API_PORT``                         TCP port (default 8000; 0 = any free port)
``SLURP_API_JWT_SECRET``                   HS256 signing key, at least 32 characters (required)
``SLURP_API_ACCESS_TTL_S``                 access token lifetime (default 300)
``SLURP_API_REFRESH_TTL_S``                refresh token lifetime (default 86400)
``SLURP_API_USERS``                        JSON list of users (below)
``SLURP_API_LOGIN_MAX_FAILURES``           failed logins per (username, client IP) (5) ...
``SLURP_API_LOGIN_MAX_FAILURES_PER_IP``    ... per client IP, any usernames (20) ...
``SLURP_API_LOGIN_MAX_FAILURES_PER_USER``  ... per username, any client IP (50) ...
``SLURP_API_LOGIN_MAX_FAILURES_TOTAL``     ... all together (500) ...
``SLURP_API_LOGIN_WINDOW_S``               ... within this sliding window (default 60)
``SLURP_API_TRUSTED_PROXIES``              JSON list of IPs or networks (CIDR) of proxies whose
                                           X-Forwarded-For is trusted (default none: the peer is
                                           the client)
``SLURP_API_QUERY_TIMEOUT_MS``             maxTimeMS of each query on records (10000); then 503
``SLURP_API_MAX_CONCURRENT_PER_USER``      requests of one user in progress (8); more: 429
``SLURP_API_MAX_CONCURRENT``               requests in progress in total (32); more: 503
``SLURP_API_MAX_BODY_BYTES``               largest request body (1 MiB); larger: 413, unread
=========================================  =========================================================

A user: ``{"username": "ops", "password_hash": "$argon2id$v=19$...", "role": "admin",
"collections": ["*"]}``; ``role`` is ``admin`` (everything) or ``reader`` (GET
only); ``collections`` is the read ACL: ``["*"]`` or a list of collection names.
Password hashes (argon2id, or scrypt from earlier versions) come from ``python -m
api.passwords``; a plain password is refused. These users are the *bootstrap* users:
read-only, always present, and they win over a database user of the same name
(``api.users``); everyone else is managed in the database with ``slurp users``.
Unknown ``SLURP_API_*`` variables are refused, like the rest of slurp's settings.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from typing import Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from api.passwords import parse_hash
from slurp.secretfiles import API_SECRETS, read_secret_files
from slurp.settings import ExplicitSettings

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_CONCURRENT_PER_USER",
    "DEFAULT_QUERY_TIMEOUT_MS",
    "ENV_PREFIX",
    "ROLES",
    "ApiConfig",
    "ApiConfigError",
    "Role",
    "UserSpec",
    "load_api_config",
    "load_bootstrap_users",
]

ENV_PREFIX = "SLURP_API_"
USERS_VARIABLE = ENV_PREFIX + "USERS"
#: Fields given as JSON in the environment.
_JSON_FIELDS = ("users", "trusted_proxies")
#: Server-side time limit of one query on user data, in milliseconds.
DEFAULT_QUERY_TIMEOUT_MS = 10_000
#: Requests one user may have in progress at once.
DEFAULT_MAX_CONCURRENT_PER_USER = 8
#: Requests in progress at once, all users together. Below the 40 worker threads
#: Starlette runs sync routes on, so capped requests never occupy them all.
DEFAULT_MAX_CONCURRENT = 32
#: Largest request body in bytes (a job definition; MongoDB stores up to 16 MiB).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


#: ``admin`` may do everything; ``reader`` may only GET.
Role = Literal["admin", "reader"]
ROLES: tuple[str, ...] = get_args(Role)


class ApiConfigError(ValueError):
    """The ``SLURP_API_*`` environment is unusable; the message names each variable."""


class UserSpec(BaseModel):
    """One API user."""

    # Errors never repeat the input: it could be a password pasted by mistake.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str = Field(min_length=1, max_length=150, pattern=r"^[\w.@+-]+$")
    password_hash: SecretStr = Field(
        description="An argon2id PHC string (or an older 'scrypt$...' hash), never a password."
    )
    role: Role = "reader"
    collections: tuple[str, ...] = Field(
        default=("*",), description="Collections this user may read: ['*'] or names."
    )

    @field_validator("password_hash")
    @classmethod
    def _is_hash(cls, value: SecretStr) -> SecretStr:
        parse_hash(value.get_secret_value())  # ValueError without echoing the value
        return value

    def may_read(self, collection: str) -> bool:
        """Whether the read ACL covers ``collection``."""
        return "*" in self.collections or collection in self.collections


def _check_unique(users: tuple[UserSpec, ...]) -> None:
    names = [user.username for user in users]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"usernames must be unique; repeated: {', '.join(repeated)}")


class ApiConfig(ExplicitSettings):
    """The API service's configuration. Build it directly, or ``load_api_config()``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    jwt_secret: SecretStr = Field(min_length=32, description="HS256 key, >= 32 characters.")
    access_ttl_s: float = Field(default=300.0, gt=0, le=86400)
    refresh_ttl_s: float = Field(default=86400.0, gt=0, le=90 * 86400)
    users: tuple[UserSpec, ...] = ()
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    login_max_failures_per_ip: int = Field(default=20, ge=1, le=100_000)
    login_max_failures_per_user: int = Field(default=50, ge=1, le=100_000)
    login_max_failures_total: int = Field(default=500, ge=1, le=1_000_000)
    login_window_s: float = Field(default=60.0, gt=0, le=86400)
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="IP addresses or networks (CIDR) of trusted reverse proxies."
    )
    query_timeout_ms: int = Field(default=DEFAULT_QUERY_TIMEOUT_MS, ge=1, le=3_600_000)
    max_concurrent_per_user: int = Field(default=DEFAULT_MAX_CONCURRENT_PER_USER, ge=1, le=10_000)
    max_concurrent: int = Field(default=DEFAULT_MAX_CONCURRENT, ge=1, le=100_000)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024**3)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry)  # an address is a one-address network
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. '10.0.0.1', "
                    "'10.0.0.0/8'; host bits must be zero); '*' is not allowed: it would "
                    "let any client choose the address the login limits count"
                ) from None
        return value

    @model_validator(mode="after")
    def _unique_users(self) -> Self:
        _check_unique(self.users)
        return self

    def user(self, username: str) -> UserSpec | None:
        """The user named ``username`` (exact match), or None."""
        return next((u for u in self.users if u.username == username), None)


def load_api_config(environ: Mapping[str, str] | None = None) -> ApiConfig:
    """Build ``ApiConfig`` from ``SLURP_API_*`` in ``environ`` (default ``os.environ``).

    Raises ``ApiConfigError`` naming every unknown or invalid variable (values of the
    secret fields are never repeated in the message).
    """
    # SLURP_API_JWT_SECRET_FILE etc.: secrets from files (slurp.secretfiles).
    env, problems = read_secret_files(os.environ if environ is None else environ, API_SECRETS)
    known = {ENV_PREFIX + name.upper() for name in ApiConfig.model_fields}
    problems += [
        f"{key}: unknown setting; known: {', '.join(sorted(known))}"
        for key in sorted(env)
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known
    ]
    values: dict[str, object] = {}
    for key, raw in env.items():
        if key.upper() not in known:
            continue
        field = key[len(ENV_PREFIX) :].lower()
        if field in _JSON_FIELDS:
            try:
                values[field] = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"{key.upper()}: not valid JSON ({exc.msg} at {exc.pos})")
                continue
        else:
            values[field] = raw
    try:
        config = ApiConfig.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "?"
            problems.append(f"{ENV_PREFIX}{where.upper()}: {error['msg']}")
    if not problems:
        return config
    raise ApiConfigError("invalid API environment:\n  " + "\n  ".join(problems))


def load_bootstrap_users(environ: Mapping[str, str] | None = None) -> tuple[UserSpec, ...]:
    """The users of ``SLURP_API_USERS`` (or ``SLURP_API_USERS_FILE``) alone, for tools
    that need them without the rest of the API's settings (``slurp users``).

    Raises ``ApiConfigError`` for a value that is not a valid list of users."""
    env, problems = read_secret_files(os.environ if environ is None else environ, (USERS_VARIABLE,))
    raw = next((value for key, value in env.items() if key.upper() == USERS_VARIABLE), None)
    if not problems and raw is not None:
        try:
            listed = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"{USERS_VARIABLE}: not valid JSON ({exc.msg} at {exc.pos})")
        else:
            try:
                return _UsersOnly.model_validate({"users": listed}).users
            except ValidationError as exc:
                for error in exc.errors():
                    where = ".".join(str(part) for part in error["loc"]) or "?"
                    problems.append(f"{ENV_PREFIX}{where.upper()}: {error['msg']}")
    if problems:
        raise ApiConfigError("invalid API environment:\n  " + "\n  ".join(problems))
    return ()


class _UsersOnly(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    users: tuple[UserSpec, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _check_unique(self.users)
        return self
