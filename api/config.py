"""API settings: ``SLURP_API_*`` environment variables (pydantic-settings).

==========================  =========================================================
``SLURP_API_HOST``          bind address (default ``127.0.0.1``)
``SLURP_API_PORT``          TCP port (default 8000; 0 = any free port)
``SLURP_API_JWT_SECRET``    HS256 signing key, at least 32 characters (required)
``SLURP_API_ACCESS_TTL_S``  access token lifetime (default 300)
``SLURP_API_REFRESH_TTL_S`` refresh token lifetime (default 86400)
``SLURP_API_USERS``         JSON list of users (below)
``SLURP_API_LOGIN_MAX_FAILURES``  failed logins allowed per window (default 5) ...
``SLURP_API_LOGIN_WINDOW_S``      ... per username and client IP (default 60)
``SLURP_API_TRUSTED_PROXIES``     JSON list of proxy IPs whose X-Forwarded-For is
                                  trusted (default none: the socket's peer is the client)
==========================  =========================================================

A user: ``{"username": "ops", "password_hash": "scrypt$...", "role": "admin",
"collections": ["*"]}``; ``role`` is ``admin`` (everything) or ``reader`` (GET
only); ``collections`` is the read ACL: ``["*"]`` or a list of collection names.
Password hashes come from ``python -m api.passwords``; a plain password is refused.
Unknown ``SLURP_API_*`` variables are refused, like the rest of slurp's settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Literal, Self

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
from slurp.settings import ExplicitSettings

__all__ = ["ENV_PREFIX", "ApiConfig", "ApiConfigError", "UserSpec", "load_api_config"]

ENV_PREFIX = "SLURP_API_"
#: Fields given as JSON in the environment.
_JSON_FIELDS = ("users", "trusted_proxies")


class ApiConfigError(ValueError):
    """The ``SLURP_API_*`` environment is unusable; the message names each variable."""


class UserSpec(BaseModel):
    """One API user."""

    # Errors never repeat the input: it could be a password pasted by mistake.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str = Field(min_length=1, max_length=150, pattern=r"^[\w.@+-]+$")
    password_hash: SecretStr = Field(description="'scrypt$n$r$p$salt$hash', never a password.")
    role: Literal["admin", "reader"] = "reader"
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
    login_window_s: float = Field(default=60.0, gt=0, le=86400)
    trusted_proxies: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _unique_users(self) -> Self:
        names = [user.username for user in self.users]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"usernames must be unique; repeated: {', '.join(repeated)}")
        return self

    def user(self, username: str) -> UserSpec | None:
        """The user named ``username`` (exact match), or None."""
        return next((u for u in self.users if u.username == username), None)


def load_api_config(environ: Mapping[str, str] | None = None) -> ApiConfig:
    """Build ``ApiConfig`` from ``SLURP_API_*`` in ``environ`` (default ``os.environ``).

    Raises ``ApiConfigError`` naming every unknown or invalid variable (values of the
    secret fields are never repeated in the message).
    """
    env = dict(os.environ if environ is None else environ)
    known = {ENV_PREFIX + name.upper() for name in ApiConfig.model_fields}
    problems = [
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
