"""The job definition: datasources, slurper, schedule, collection, policies."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.base import CollectionName, Contract, JobName
from contracts.datasources import Datasource

__all__ = [
    "CRON_ALIASES",
    "CollectionSpec",
    "CollectionType",
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
        default=None, ge=1, description="How many versions to keep; versioned types only."
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
        if len(expr.split()) != 5 or not croniter.is_valid(expr):
            raise ValueError(
                f"{value!r} is not a valid cron expression: use 5 fields "
                "'minute hour day-of-month month day-of-week' (e.g. '0 4 * * *') "
                f"or one of {', '.join(sorted(CRON_ALIASES))}"
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


class RetryPolicy(_Model):
    """Retries of transient failures, with exponential backoff."""

    max_retries: int = Field(default=3, ge=0, le=100)
    min_backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)


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
        return self
