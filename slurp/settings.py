"""Settings from ``SLURP_*`` environment variables (pydantic-settings).

Unknown ``SLURP_*`` variables are rejected (a typo must not silently fall back to a
default). ``SLURP_TEST_*`` (the test suite) and ``SLURP_API_*`` (the HTTP API, see
``api.config``) are validated by their own components and ignored here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from slurp.errors import SettingsError

__all__ = ["ENV_PREFIX", "ExplicitSettings", "Settings", "load_settings"]

ENV_PREFIX = "SLURP_"
#: Read by their own components: the test suite, and the HTTP API (``api.config``).
_RESERVED_PREFIXES = ("SLURP_TEST_", "SLURP_API_")


class ExplicitSettings(BaseSettings):
    """Settings validated only from the values given to the model: the loaders
    (``load_settings``, ``api.config.load_api_config``) read the environment
    themselves, to name every unknown and invalid variable."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class Settings(ExplicitSettings):
    """Runtime configuration. Every field is set by ``SLURP_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="Redis broker URL; unset = in-process broker (slurp dev only).",
    )
    mongo_url: str | None = Field(
        default=None,
        description="MongoDB URL; unset = the embedded SecantusDB server in data_dir.",
    )
    mongo_db: str = Field(default="slurp", min_length=1, max_length=63, pattern=r"^[^/\\. \"$]+$")
    data_dir: Path = Field(
        default=Path(".slurp"), description="Local data folder of the embedded default."
    )
    queue_name: str = Field(default="slurp", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    metrics_port: int = Field(default=9191, ge=0, le=65535, description="0 disables /metrics.")
    metrics_host: str = "0.0.0.0"
    slurper_modules: list[str] = Field(
        default_factory=lambda: ["examples"],
        description="Module prefixes a slurper may be imported from (JSON list).",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

    jobs_file: Path | None = Field(
        default=None,
        description="A job file (YAML/JSON) `slurp ticker` and `slurp dev` apply at start.",
    )
    http_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    http_retries: int = Field(default=3, ge=0, description="Retries on 429/5xx/connection errors.")
    ticker_poll_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the ticker re-reads job definitions."
    )
    lease_ttl_s: float = Field(
        default=60.0,
        gt=0,
        description="A run's job lease expires this long after its holder's "
        "last renewal (the holder renews every ttl/3).",
    )
    worker_processes: int = Field(default=2, ge=1, le=64, description="`slurp worker` processes.")
    worker_threads: int = Field(default=4, ge=1, le=64, description="Threads per worker process.")
    worker_heartbeat_timeout_s: float = Field(
        default=15.0,
        ge=1,
        description="A worker silent this long is dead; its messages are redelivered to others.",
    )
    history_max_age_days: float = Field(
        default=90.0, gt=0, description="Execution history older than this is deleted."
    )
    history_max_runs: int = Field(
        default=1000, ge=1, description="At most this many history entries are kept per job."
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``environ`` (default ``os.environ``).

    Raises ``SettingsError`` naming every unknown or invalid ``SLURP_*`` variable.
    """
    env = dict(os.environ if environ is None else environ)
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    problems = [
        f"{key}: unknown setting; known: {', '.join(sorted(known))}"
        for key in sorted(env)
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in known
        and not key.upper().startswith(_RESERVED_PREFIXES)
    ]
    values = {
        key[len(ENV_PREFIX) :].lower(): _decode(key[len(ENV_PREFIX) :].lower(), value)
        for key, value in env.items()
        if key.upper() in known
    }
    try:
        # model_validate validates exactly ``values``: no second read of os.environ.
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
    if not problems:
        return settings
    raise SettingsError("invalid environment:\n  " + "\n  ".join(problems))


def _decode(field: str, value: str) -> object:
    # List settings are JSON arrays or comma-separated values.
    if field == "slurper_modules":
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
