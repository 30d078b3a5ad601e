"""Settings from ``SLURP_*`` environment variables (pydantic-settings).

Unknown ``SLURP_*`` variables are rejected (a typo must not silently fall back to a
default). ``SLURP_TEST_*`` (the test suite) and ``SLURP_API_*`` (the HTTP API, see
``api.config``) are validated by their own components and ignored here.

List settings are a JSON array or comma-separated values. ``file_roots``,
``job_env_allow``, ``http_allow_hosts``, ``http_allow_private`` and ``slurper_modules``
are what a job may reach on the host; ``datasources.policy.JobPolicy`` enforces them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from slurp.errors import SettingsError
from slurp.secretfiles import SETTINGS_SECRETS, read_secret_files

__all__ = [
    "ENV_PREFIX",
    "LOOPBACK_NETWORKS",
    "ExplicitSettings",
    "HostEntry",
    "Settings",
    "load_settings",
    "parse_env_pattern",
    "parse_host_entry",
]

ENV_PREFIX = "SLURP_"
#: Read by their own components: the test suite, and the HTTP API (``api.config``).
_RESERVED_PREFIXES = ("SLURP_TEST_", "SLURP_API_")
#: Settings given as a JSON array or comma-separated values.
_LIST_FIELDS = frozenset({"slurper_modules", "file_roots", "job_env_allow", "http_allow_hosts"})
#: The loopback networks (``slurp dev`` lets jobs reach them).
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")

_ENV_PATTERN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")

#: An entry of ``http_allow_hosts``: ``"*"``, a host name, ``"*.suffix"``, or a network.
HostEntry = str | ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host_entry(entry: str) -> HostEntry:
    """``*`` (any host), a host name (lower-cased), ``*.example.org`` (its subdomains) or
    an address/network (``10.1.0.0/16``, ``::1``); ``ValueError`` otherwise."""
    text = entry.strip().lower().rstrip(".")
    if text == "*":
        return text
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    name = text[2:] if text.startswith("*.") else text
    if not _HOSTNAME_RE.match(name):
        raise ValueError(
            f"{entry!r} is not '*', a host name, '*.domain' or an address/network (CIDR)"
        )
    return text


def parse_env_pattern(entry: str) -> str:
    """A variable name (``SHOP_DB_PASSWORD``) or prefix (``MYAPP_*``); ``ValueError``
    otherwise (a bare ``*`` too: name the variables jobs need)."""
    text = entry.strip()
    if not _ENV_PATTERN_RE.match(text):
        raise ValueError(
            f"{entry!r} is not a variable name or a prefix ending in '*' (e.g. MYAPP_*)"
        )
    return text


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
    file_roots: list[Path] = Field(
        default_factory=lambda: [Path(".")],
        description="Folders jobs may read files from (csv/json/jsonl/xml paths, SQLite "
        "databases), symlinks resolved; relative ones from the working directory.",
    )
    job_env_allow: list[str] = Field(
        default_factory=list,
        description="Environment variables jobs may read (${env.NAME}, *_env fields): "
        "names and PREFIX* patterns; SLURP_* never.",
    )
    http_allow_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Hosts jobs may reach over HTTP: * (any), names, *.domain, addresses "
        "and networks (CIDR; these may also be private).",
    )
    http_allow_private: bool = Field(
        default=False,
        description="Let jobs reach loopback, private, link-local and other non-public "
        "addresses over HTTP.",
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
    start_report_delay_s: float = Field(
        default=0.5,
        ge=0,
        description="A run still going after this long is recorded as started (visible "
        "as running, progress published); shorter runs record start and end at once.",
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

    @field_validator("job_env_allow")
    @classmethod
    def _env_patterns(cls, value: list[str]) -> list[str]:
        return [parse_env_pattern(entry) for entry in value]

    @field_validator("http_allow_hosts")
    @classmethod
    def _host_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_host_entry(entry)
        return [entry.strip() for entry in value]

    def for_dev(self, jobs_file: Path) -> Self:
        """These settings plus ``slurp dev``'s allowances (a local development tool):
        the job file's folder and the data folder are file roots, and jobs may reach
        loopback addresses over HTTP."""
        return self.model_copy(
            update={
                "file_roots": [*self.file_roots, Path(jobs_file).absolute().parent, self.data_dir],
                "http_allow_hosts": [*self.http_allow_hosts, *LOOPBACK_NETWORKS],
            }
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``environ`` (default ``os.environ``).

    Raises ``SettingsError`` naming every unknown or invalid ``SLURP_*`` variable.
    """
    # SLURP_REDIS_URL_FILE etc.: secrets from files (slurp.secretfiles).
    env, problems = read_secret_files(os.environ if environ is None else environ, SETTINGS_SECRETS)
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    problems += [
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
    if field in _LIST_FIELDS:
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
