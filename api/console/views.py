"""What the console's pages show, computed from the services' documents: plain data
for the templates (no HTML here, except through the templates' escaping).

- ``job_row``: one line of the jobs list (schedule in words, next fire, last run);
- ``attempts``: a run's attempts, from its events first (``JobStarted`` carries the
  worker, ``JobFailed`` the error), completed by the history's ``attempt_log`` when
  the history has one;
- ``progress_rows``: a run's live counters by datasource;
- ``record_table``: a page of records as columns and compact cells;
- formatting filters: ``duration``, ``number``, ``status_class``, ``compact``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from api.console.cronwords import describe
from contracts.events import (
    Event,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)
from storage.jobs import JobRecord
from ticker.cron import next_fire
from ticker.errors import ScheduleError

__all__ = [
    "ACTIVE",
    "FAILING",
    "Attempt",
    "Instant",
    "JobRow",
    "attempts",
    "change_summary",
    "compact",
    "duration",
    "event_rows",
    "instant",
    "job_row",
    "number",
    "path_segment",
    "progress_rows",
    "record_table",
    "status_class",
]

#: Statuses of a run still under way (its page refreshes itself; it may be cancelled).
ACTIVE = frozenset({"queued", "running", "retrying"})
#: Statuses that make a job stand out as failing.
FAILING = frozenset({"failed", "rejected", "abandoned"})
_STATUS_CLASSES = {
    "succeeded": "ok",
    "failed": "bad",
    "rejected": "bad",
    "abandoned": "bad",
    "running": "active",
    "started": "active",
    "retrying": "warn",
    "queued": "muted",
    "cancelled": "muted",
}
#: Widest cell of a record table before it is cut (the full value is in its title).
CELL_CHARS = 80
#: Most columns of a record table.
MAX_COLUMNS = 40


@dataclass(frozen=True)
class Instant:
    """A moment for a template: UTC ISO-8601 for ``<time datetime>``, UTC text, and
    the same moment in another zone (the job's) when one is given."""

    iso: str
    utc: str
    local: str | None = None


def instant(value: object, zone: str | None = None) -> Instant | None:
    if not isinstance(value, datetime):
        return None
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    local = None
    if zone is not None:
        local = moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    return Instant(
        iso=utc.isoformat().replace("+00:00", "Z"),
        utc=utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        local=local,
    )


def duration(seconds: object) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number(value: object) -> str:
    """An integer with thousands separators; '-' for anything missing."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    return value if isinstance(value, str) and value else "-"


def status_class(status: object) -> str:
    """CSS class of a status; an unknown status is shown plainly, never an error."""
    return _STATUS_CLASSES.get(str(status), "muted")


def path_segment(value: str) -> str:
    """``value`` quoted as one URL path segment (a '/' in it included)."""
    return quote(value, safe="")


def compact(value: object) -> str:
    """A record's field as one short line: strings as they are, the rest as compact
    JSON (nested objects and lists included)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class JobRow:
    name: str
    description: str
    collection: str
    collection_type: str
    paused: bool
    cron: str | None
    timezone: str | None
    words: str | None
    next_fire: Instant | None
    last: Mapping[str, Any] | None
    last_at: Instant | None

    @property
    def failing(self) -> bool:
        return self.last is not None and str(self.last.get("status")) in FAILING

    @property
    def search_text(self) -> str:
        parts = (self.name, self.description, self.collection, self.collection_type)
        return " ".join(parts).lower()


def job_row(record: JobRecord, last: Mapping[str, Any] | None, now: datetime) -> JobRow:
    definition = record.definition
    schedule = definition.schedule
    upcoming = None
    if schedule is not None and not definition.paused:
        try:
            upcoming = instant(next_fire(schedule, now), schedule.timezone)
        except ScheduleError:
            upcoming = None
    return JobRow(
        name=definition.name,
        description=definition.description,
        collection=definition.collection.name,
        collection_type=definition.collection.type.value,
        paused=definition.paused,
        cron=schedule.cron if schedule else None,
        timezone=schedule.timezone if schedule else None,
        words=describe(schedule.expression) if schedule else None,
        next_fire=upcoming,
        last=last,
        last_at=instant((last or {}).get("started_at") or (last or {}).get("first_at")),
    )


@dataclass
class Attempt:
    number: int
    status: str = "running"
    started_at: Instant | None = None
    finished_at: Instant | None = None
    worker: str = ""
    error: str = ""
    duration_s: float | None = None
    will_retry: bool = False
    _started: datetime | None = field(default=None, repr=False)


def attempts(events: Sequence[Event], history: Mapping[str, Any] | None) -> list[Attempt]:
    """The run's attempts, oldest first. Events decide; the history's ``attempt_log``
    (``{"1": {started_at, finished_at, worker, status, error}}``) fills what no event
    says (events pruned by retention, or an attempt whose worker died)."""
    found: dict[int, Attempt] = {}
    for event in events:
        attempt = found.setdefault(event.attempt, Attempt(event.attempt))
        if isinstance(event, JobStarted):
            if attempt._started is None or event.at < attempt._started:
                attempt._started = event.at
                attempt.started_at = instant(event.at)
            attempt.worker = event.worker or attempt.worker
        elif isinstance(event, JobSucceeded):
            attempt.status, attempt.finished_at = "succeeded", instant(event.at)
            attempt.duration_s = event.duration_s
        elif isinstance(event, JobFailed):
            attempt.status = "failed"
            attempt.finished_at = instant(event.at)
            attempt.error = f"{event.error_type}: {event.message}"
            attempt.duration_s = event.duration_s
            attempt.will_retry = event.will_retry
        elif isinstance(event, JobRejected):
            attempt.status, attempt.finished_at = "rejected", instant(event.at)
            attempt.error = event.reason
        elif isinstance(event, JobCancelled):
            attempt.status, attempt.finished_at = "cancelled", instant(event.at)
            attempt.error = "cancelled" + (
                f" by {event.requested_by}" if event.requested_by else ""
            )
            attempt.duration_s = event.duration_s
    log = (history or {}).get("attempt_log")
    if isinstance(log, Mapping):
        for key, entry in log.items():
            if not str(key).isdigit() or not isinstance(entry, Mapping):
                continue
            attempt = found.setdefault(int(key), Attempt(int(key)))
            _fill(attempt, entry)
    return [found[number] for number in sorted(found)]


def _fill(attempt: Attempt, entry: Mapping[str, Any]) -> None:
    if attempt.started_at is None:
        attempt.started_at = instant(entry.get("started_at"))
    if attempt.finished_at is None:
        attempt.finished_at = instant(entry.get("finished_at"))
    attempt.worker = attempt.worker or str(entry.get("worker") or "")
    status = entry.get("status")
    if status and attempt.status in ("running", ""):
        attempt.status = str(status)
    error = entry.get("error")
    if not attempt.error and isinstance(error, Mapping):
        attempt.error = f"{error.get('type', 'error')}: {error.get('message', '')}"


def event_rows(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Each event as (time, kind, attempt, what it says), in order."""
    rows = []
    for event in events:
        if isinstance(event, JobStarted):
            detail = f"trigger {event.trigger}" + (f" on {event.worker}" if event.worker else "")
            detail += " (forced: guards not checked)" if event.force else ""
        elif isinstance(event, JobSucceeded):
            detail = (
                f"{event.records_written:,} records written ({change_summary(event)}), "
                f"{event.records_read:,} read, in {duration(event.duration_s)}"
                + (f"; version {event.version}" if event.version is not None else "")
            )
        elif isinstance(event, JobFailed):
            detail = f"{event.error_type}: {event.message}" + (
                " (will retry)" if event.will_retry else ""
            )
        elif isinstance(event, JobCancelled):
            who = f" by {event.requested_by}" if event.requested_by else ""
            detail = f"cancelled{who} " + (
                "before it started" if event.stage == "queued" else "while running"
            )
        else:
            detail = event.reason
        rows.append(
            {"at": instant(event.at), "kind": event.kind, "attempt": event.attempt,
             "detail": detail}
        )  # fmt: skip
    return rows


def change_summary(counts: Any) -> str:
    """'3 inserted, 1 updated, 5 unchanged, 2 removed' from a ``JobSucceeded`` or a
    history document (statistics not computed are left out)."""
    get = counts.get if isinstance(counts, Mapping) else lambda name: getattr(counts, name)
    parts = [
        f"{value:,} {name}"
        for name in ("inserted", "updated", "unchanged", "removed")
        if isinstance(value := get(name), int)
    ]
    return ", ".join(parts) or "no statistics"


def progress_rows(counts: Mapping[str, int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Per-datasource ``items``/``pages`` rows, and the other counters by name."""
    sources: dict[str, dict[str, Any]] = {}
    other: dict[str, int] = {}
    for key, value in sorted(counts.items()):
        name, dot, what = key.rpartition(".")
        if dot and what in ("items", "pages"):
            sources.setdefault(name, {"name": name, "items": 0, "pages": 0})[what] = value
        else:
            other[key] = value
    return list(sources.values()), other


def record_table(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Columns (keys in order of first appearance, at most ``MAX_COLUMNS``) and rows of
    compact cells ('' where a record lacks the field)."""
    columns = list(dict.fromkeys(key for record in records for key in record))[:MAX_COLUMNS]
    rows = [[compact(record[c]) if c in record else "" for c in columns] for record in records]
    return columns, rows
