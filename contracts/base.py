"""Shared base model and field types of every contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["SCHEMA_VERSION", "CollectionName", "Contract", "JobName", "UtcDatetime", "utcnow"]

#: Version of the wire format. Bumped only on incompatible changes.
SCHEMA_VERSION: Literal[1] = 1

_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _check_job_name(value: str) -> str:
    if not _JOB_NAME_RE.match(value):
        raise ValueError(
            "a job name is 1-100 characters: letters, digits, '_', '.', '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


def _check_collection_name(value: str) -> str:
    # MongoDB refuses '$' and NUL anywhere, an empty name, and the 'system.' prefix;
    # 'slurp' reserves names starting with 'slurp' for its own bookkeeping.
    problems = []
    if not value:
        problems.append("must not be empty")
    if "$" in value or "\x00" in value:
        problems.append("must not contain '$' or NUL")
    if value.startswith("system."):
        problems.append("must not start with 'system.' (reserved by MongoDB)")
    if value.lower().startswith("slurp"):
        problems.append("must not start with 'slurp' (reserved for slurp's own collections)")
    if value.startswith(".") or value.endswith(".") or ".." in value:
        problems.append("must not start or end with '.' or contain '..'")
    if len(value) > 100:
        problems.append("must be at most 100 characters")
    if problems:
        raise ValueError(f"collection name {value!r} " + "; ".join(problems))
    return value


def _check_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be timezone-aware (e.g. '2026-01-01T04:00:00Z')")
    return value.astimezone(UTC)


JobName = Annotated[str, AfterValidator(_check_job_name)]
CollectionName = Annotated[str, AfterValidator(_check_collection_name)]
UtcDatetime = Annotated[datetime, AfterValidator(_check_utc)]


class Contract(BaseModel):
    """Base of every contract: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Wire-format version; 1 is the only one so far."
    )
