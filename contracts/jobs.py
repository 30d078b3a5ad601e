"""The job definition: datasources, slurper, schedule, collection, policies."""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from contracts.base import CollectionName, Contract, JobName
from contracts.datasources import Datasource

__all__ = [
    "CRON_ALIASES",
    "CRON_MAX_YEARS_BETWEEN_FIRES",
    "GUARD_NAMES",
    "SHRINKING_TYPES",
    "SIZE_GUARD_TYPES",
    "CollectionSpec",
    "CollectionType",
    "Guards",
    "JobDefinition",
    "RetryPolicy",
    "Schedule",
]

#: Aliases accepted in ``schedule.cron`` besides standard 5-field expressions.
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: A cron expression must match a date within this many years (Feb 29 does: every 4).
CRON_MAX_YEARS_BETWEEN_FIRES = 5
# Where the check starts: a fixed instant (2000 was a leap year), so whether an
# expression is valid never depends on when it is checked.
_CRON_CHECK_START = datetime(2000, 1, 1)
_CRON_CACHE_SIZE = 4096

_SLURPER_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectionType(StrEnum):
    """What a successful run does to the stored data (see README, 'Collections')."""

    NORMAL = "normal"
    UPSERTED = "upserted"
    ACCUMULATIVE = "accumulative"
    VERSIONED = "versioned"
    UPSERTED_VERSIONED = "upserted_versioned"
    ACCUMULATIVE_VERSIONED = "accumulative_versioned"

    @property
    def upserts(self) -> bool:
        return self in (CollectionType.UPSERTED, CollectionType.UPSERTED_VERSIONED)

    @property
    def versioned(self) -> bool:
        return self in (
            CollectionType.VERSIONED,
            CollectionType.UPSERTED_VERSIONED,
            CollectionType.ACCUMULATIVE_VERSIONED,
        )


class CollectionSpec(_Model):
    """Where a job's records go and how they combine with what is stored."""

    type: CollectionType
    name: CollectionName
    upsert_key: str | None = Field(
        default=None,
        description="Field (dotted path allowed) identifying a record; upserted types only.",
        pattern=r"^[^$.\x00][^$\x00]*$",
    )
    keep_versions: int | None = Field(
        default=None,
        ge=1,
        description="How many versions to keep (pinned ones come on top); versioned types "
        "only. A change applies at the next commit.",
    )
    change_stats: bool = Field(
        default=True,
        description="Record inserted/updated/unchanged/removed counts of every run. For "
        "normal and versioned collections this reads the previous data once per run.",
    )

    @model_validator(mode="after")
    def _fields_match_type(self) -> Self:
        problems = []
        kind = self.type
        if kind.upserts and self.upsert_key is None:
            problems.append(f"upsert_key is required for collection type '{kind}'")
        if not kind.upserts and self.upsert_key is not None:
            problems.append(
                f"upsert_key is only allowed for types 'upserted' and 'upserted_versioned', "
                f"not '{kind}'"
            )
        if kind.versioned and self.keep_versions is None:
            problems.append(f"keep_versions (>= 1) is required for collection type '{kind}'")
        if not kind.versioned and self.keep_versions is not None:
            problems.append(f"keep_versions is only allowed for the versioned types, not '{kind}'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Schedule(_Model):
    """A crontab recurrence evaluated in an IANA timezone."""

    cron: str = Field(description="5-field crontab or an alias such as @daily.")
    timezone: str = Field(default="UTC", description="IANA timezone, e.g. Europe/Zurich.")
    misfire: Literal["skip", "once"] = Field(
        default="skip",
        description="Missed slots: 'skip' them, or run 'once' for the latest within the grace.",
    )
    misfire_grace_s: float = Field(default=3600.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        expr = CRON_ALIASES.get(value.strip().lower(), value.strip())
        problem = _cron_problem(expr)
        if problem == "invalid":
            raise ValueError(
                f"{value!r} is not a valid cron expression: use 5 fields "
                "'minute hour day-of-month month day-of-week' (e.g. '0 4 * * *') "
                f"or one of {', '.join(sorted(CRON_ALIASES))}"
            )
        if problem == "never":
            raise ValueError(
                f"{value!r} matches no date within {CRON_MAX_YEARS_BETWEEN_FIRES} years, so "
                "it would (practically) never fire: check day-of-month against month "
                "(there is no February 30 or April 31)"
            )
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}: use an IANA name such as 'UTC' or 'Europe/Zurich'"
            ) from None
        return value

    @property
    def expression(self) -> str:
        """The 5-field cron expression (aliases expanded)."""
        return CRON_ALIASES.get(self.cron.lower(), self.cron)


@functools.lru_cache(maxsize=_CRON_CACHE_SIZE)
def _cron_problem(expression: str) -> Literal["invalid", "never"] | None:
    """What is wrong with a cron expression (aliases expanded): not 5 valid fields, or
    no matching wall time within ``CRON_MAX_YEARS_BETWEEN_FIRES`` years of
    ``_CRON_CHECK_START`` (croniter gives up after that many years). Cached: decoding
    many stored jobs repeats few expressions."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        return "invalid"
    walker = croniter(
        expression, _CRON_CHECK_START, max_years_between_matches=CRON_MAX_YEARS_BETWEEN_FIRES
    )
    try:
        walker.get_next(datetime)
    except CroniterBadDateError:
        return "never"
    return None


class RetryPolicy(_Model):
    """Retries of transient failures, with exponential backoff."""

    max_retries: int = Field(default=3, ge=0, le=100)
    min_backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)


#: Types ``max_drop_pct`` / ``max_growth_pct`` apply to: those whose commit makes a new
#: data set (normal) or version, compared with the previous one. (An upserted or
#: accumulative collection grows in place by what a run adds.)
SIZE_GUARD_TYPES = frozenset(
    {
        CollectionType.NORMAL,
        CollectionType.VERSIONED,
        CollectionType.UPSERTED_VERSIONED,
        CollectionType.ACCUMULATIVE_VERSIONED,
    }
)
#: Every guard's name (as in ``Guards``, in a failed run's history and in metrics).
GUARD_NAMES = (
    "min_records",
    "max_records",
    "max_drop_pct",
    "max_growth_pct",
    "required_fields",
    "json_schema",
    "unique",
)
#: Types whose new data may hold fewer records than the previous (``max_drop_pct``).
SHRINKING_TYPES = frozenset({CollectionType.NORMAL, CollectionType.VERSIONED})
_FIELD_PATH = r"^[^$.\x00][^$\x00]*$"


class Guards(_Model):
    """Checks of a run's output, after the slurp and before the commit. A failed guard
    fails the run: nothing is committed, the history names the guard and its figures.
    Every check is off unless set."""

    min_records: int | None = Field(
        default=None, ge=0, description="Fewest records a run may write."
    )
    max_records: int | None = Field(default=None, ge=0, description="Most records a run may write.")
    max_drop_pct: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Most the record count may fall, in percent of the previous version "
        "or live data (normal and versioned types).",
    )
    max_growth_pct: float | None = Field(
        default=None,
        ge=0,
        description="Most the record count may grow, in percent of the previous version "
        "or live data (normal and versioned types; from an empty collection any growth "
        "passes).",
    )
    required_fields: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Fields (dotted paths allowed) every record must have, not null.",
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema (draft 2020-12 unless $schema says) each record must "
        "satisfy; an object, or its JSON text. Stored and shown as JSON text (MongoDB "
        "takes keywords such as '$ref' for its own when they are field names).",
    )
    unique: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Fields (dotted paths allowed) whose values, together, no two records "
        "of one run may share.",
    )
    max_violations: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Record violations reported (with their positions) before the run stops.",
    )
    retry: bool = Field(
        default=False,
        description="Retry a run whose guard failed, like a transient failure (default: "
        "fail for good at once).",
    )

    @field_validator("required_fields", "unique")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        bad = [path for path in value if not re.match(_FIELD_PATH, path)]
        if bad:
            raise ValueError(
                f"field paths must be non-empty, not start with '$' or '.', and contain no "
                f"'$' or NUL: {', '.join(map(repr, bad))}"
            )
        return value

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema_text(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"json_schema is text but not JSON: {exc}") from None
        return value

    @field_serializer("json_schema", when_used="json")
    def _schema_as_text(self, value: dict[str, Any] | None) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from jsonschema import SchemaError, validators

            try:
                validators.validator_for(value).check_schema(value)
            except SchemaError as exc:
                where = "/".join(str(p) for p in exc.path) or "(root)"
                raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if (
            self.min_records is not None
            and self.max_records is not None
            and self.min_records > self.max_records
        ):
            raise ValueError(
                f"min_records ({self.min_records}) is above max_records ({self.max_records})"
            )
        return self

    @property
    def active(self) -> bool:
        """Does any check apply?"""
        return bool(
            self.min_records is not None
            or self.max_records is not None
            or self.max_drop_pct is not None
            or self.max_growth_pct is not None
            or self.required_fields
            or self.json_schema is not None
            or self.unique
        )


class JobDefinition(Contract):
    """A named job: fetch datasources, transform with a slurper, store in a collection."""

    name: JobName
    description: str = ""
    datasources: list[Datasource] = Field(min_length=1)
    slurper: str | None = Field(
        default=None,
        description="'module:function' called as slurp(ctx, data_map); none stores the "
        "single datasource's items as they are.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Free-form, in ctx.params.")
    schedule: Schedule | None = None
    paused: bool = False
    collection: CollectionSpec
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float = Field(default=3600.0, gt=0, description="Time limit of one run.")
    guards: Guards = Field(
        default_factory=Guards,
        description="Checks of each run's output before its commit (none by default).",
    )

    @field_validator("slurper")
    @classmethod
    def _valid_slurper(cls, value: str | None) -> str | None:
        if value is not None and not _SLURPER_RE.match(value):
            raise ValueError(
                f"{value!r} is not 'module:function' (e.g. 'examples.slurpers:drop_admins')"
            )
        return value

    @model_validator(mode="after")
    def _sources_fit(self) -> Self:
        names = [source.name for source in self.datasources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"datasource names must be unique; repeated: {', '.join(duplicates)}")
        if self.slurper is None and len(self.datasources) != 1:
            raise ValueError(
                "without a slurper a job has exactly one datasource (its items are stored as "
                f"they are); this one has {len(self.datasources)}: add 'slurper: module:function'"
            )
        kind = self.collection.type
        for name in ("max_drop_pct", "max_growth_pct"):
            if getattr(self.guards, name) is not None and kind not in SIZE_GUARD_TYPES:
                raise ValueError(
                    f"guards.{name} compares a new data set or version with the previous "
                    f"one: it applies to the normal and versioned types, not '{kind}'"
                )
        if self.guards.max_drop_pct is not None and kind not in SHRINKING_TYPES:
            raise ValueError(
                f"guards.max_drop_pct: a '{kind}' version builds on the previous one and "
                "never has fewer records; use it with 'normal' or 'versioned'"
            )
        return self
