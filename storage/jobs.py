"""The job registry: one document per job in ``slurp_jobs``.

Document layout (``_id`` is the job name)::

    {_id: "users",
     definition: {...},        # JobDefinition.model_dump(mode="json")
     revision: 42,             # from one global counter: unique, grows on every change
     created_at, updated_at,   # UTC
     active_since,             # slots at or before this never fire: set on creation,
                               # on a schedule change and on resume
     last_slot}                # latest cron slot the ticker handled (fired or skipped)

Revisions come from ``slurp_counters`` (``{_id: "job_revision", value}``), so they
are unique across jobs and never reused, even after a delete. Writing an identical
definition is a no-op (no new revision), so loading the same job file at every start
changes nothing. Concurrent writers are serialised by a compare-and-set on
``revision``. The ticker's bookkeeping (``last_slot``) does not change the revision.

Policy: a registry given a ``JobPolicy`` (``datasources.policy``: the files,
environment variables, hosts and slurpers the operator allows jobs) refuses a
definition the policy refuses, before writing anything (``put``, ``apply``,
``load_file``); the CLI and the API build theirs with the policy of their settings.

Change detection: every create, change and delete also increments the *generation*
(``slurp_counters`` ``{_id: "job_generation", value}``) right after its write, so a
reader polls one small document (``generation``) instead of scanning every job. Read
the generation *before* reading the jobs: a write that lands after that read bumps
the generation again afterwards, so it is seen on the next poll. A writer that dies
between its write and the bump (or a write that bypasses this class) is only seen by
a scan of ``revisions``, which readers should therefore still do now and then.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pymongo import ReturnDocument, UpdateMany, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from contracts.base import utcnow
from contracts.errors import JobFileError
from contracts.jobfile import load_jobs
from contracts.jobs import JobDefinition
from storage.errors import CommitConflictError, InvalidJobRecordError, JobNotFoundError
from storage.store import Doc, Store

if TYPE_CHECKING:
    from datasources.policy import JobPolicy

__all__ = ["JOBS_COLLECTION", "JobRecord", "JobRegistry"]

#: The registry's collection.
JOBS_COLLECTION = "slurp_jobs"
_COUNTERS_COLLECTION = "slurp_counters"
_REVISION_COUNTER = "job_revision"
_GENERATION_COUNTER = "job_generation"
# Names per query of ``get_many``.
_MANY_BATCH = 1000
# Names per ``update_many`` of ``advance_slots``. MongoDB looks each one up in the _id
# index whatever the count; SecantusDB matches ``$in`` by a linear scan of the list for
# every document, so short lists keep both fast (measured on SecantusDB, 40k jobs of one
# slot: 10 names 9-10 s, 1000 names > 100 s, one update per job 15-20 s).
_SHARED_SLOT_CHUNK = 10
# Compare-and-set attempts before a write gives up (only under heavy write contention).
_MAX_WRITE_ATTEMPTS = 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRecord:
    """A registered job as stored, with the registry's bookkeeping."""

    definition: JobDefinition
    revision: int
    updated_at: datetime
    last_slot: datetime | None
    created_at: datetime
    active_since: datetime

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def schedule_cursor(self) -> datetime:
        """Slots at or before this instant are done: handled, or before the schedule applied."""
        if self.last_slot is None:
            return self.active_since
        return max(self.last_slot, self.active_since)

    @classmethod
    def from_doc(cls, doc: Doc) -> JobRecord:
        """Raises ``InvalidJobRecordError`` for a document that does not validate."""
        name = str(doc.get("_id"))
        try:
            definition = JobDefinition.model_validate(doc["definition"])
            return cls(
                definition=definition,
                revision=int(doc["revision"]),
                updated_at=_aware(doc["updated_at"]),
                last_slot=_aware(doc["last_slot"]) if doc.get("last_slot") else None,
                created_at=_aware(doc["created_at"]),
                active_since=_aware(doc["active_since"]),
            )
        except ValidationError as exc:
            raise InvalidJobRecordError(name, _short(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidJobRecordError(name, f"bad or missing field: {exc!r}") from None


class JobRegistry:
    """Create, read, change and delete job definitions; the ticker's slot bookkeeping."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = utcnow,
        policy: JobPolicy | None = None,
    ) -> None:
        self.store = store
        self.docs = store.db[JOBS_COLLECTION]
        self._counters = store.db[_COUNTERS_COLLECTION]
        self._clock = clock
        self.policy = policy

    # -- definitions ------------------------------------------------------------------

    def put(self, definition: JobDefinition, *, keep_paused: bool = False) -> JobRecord:
        """Create or replace the job ``definition.name``; return the stored record.

        An identical definition changes nothing. A changed ``schedule``, or a resume
        (``paused`` true -> false), moves ``active_since`` to now: slots missed before
        the change never fire, so an edit or a resume does not trigger a catch-up run.
        ``keep_paused``: an existing job keeps its stored pause state (see ``apply``).
        With a ``policy``, a definition it refuses raises its ``NotAllowedError``.
        """
        if self.policy is not None:
            self.policy.require(definition)
        data = definition.model_dump(mode="json")
        for _ in range(_MAX_WRITE_ATTEMPTS):
            current = self.docs.find_one({"_id": definition.name})
            if current is not None and keep_paused:
                stored = current.get("definition")
                data["paused"] = bool(isinstance(stored, dict) and stored.get("paused"))
            record = self._create(data) if current is None else self._replace(current, data)
            if record is not None:
                return record
        raise CommitConflictError(f"job {definition.name!r} kept changing; try again")

    def get(self, name: str) -> JobRecord | None:
        """The job ``name``, or None. Raises ``InvalidJobRecordError`` if it is corrupt."""
        doc = self.docs.find_one({"_id": name})
        return JobRecord.from_doc(doc) if doc is not None else None

    def get_with_catalog(self, name: str) -> tuple[JobRecord | None, Doc | None]:
        """The job ``name`` and the catalog document of its collection (None if the
        collection has none yet), read in one round trip (``$lookup``): a worker's
        first read of a run. Raises ``InvalidJobRecordError`` if the job is corrupt."""
        pipeline: list[Doc] = [
            {"$match": {"_id": name}},
            {
                "$lookup": {
                    "from": self.store.catalog.name,
                    "localField": "definition.collection.name",
                    "foreignField": "_id",
                    "as": "_catalog",
                }
            },
        ]
        docs = list(self.docs.aggregate(pipeline))
        if not docs:
            return None, None
        catalog = docs[0].pop("_catalog", None) or [None]
        return JobRecord.from_doc(docs[0]), catalog[0]

    def require(self, name: str) -> JobRecord:
        """The job ``name``; raises ``JobNotFoundError`` naming the jobs that do exist."""
        record = self.get(name)
        if record is None:
            raise self._not_found(name)
        return record

    def list(
        self, on_invalid: Callable[[InvalidJobRecordError], None] | None = None
    ) -> list[JobRecord]:
        """Every valid job, sorted by name.

        A corrupt document is left out and passed to ``on_invalid`` (default: logged as
        a warning), so one bad document never hides the others.
        """
        return _decode(self.docs.find({}).sort("_id", 1), on_invalid)

    def delete(self, name: str) -> bool:
        """Remove job ``name``; False if there was none."""
        deleted = self.docs.delete_one({"_id": name}).deleted_count == 1
        if deleted:
            self._bump_generation()
        return deleted

    def set_paused(self, name: str, paused: bool) -> JobRecord:
        """Pause or resume job ``name`` (its stored definition's ``paused``)."""
        for _ in range(_MAX_WRITE_ATTEMPTS):
            doc = self.docs.find_one({"_id": name})
            if doc is None:
                raise self._not_found(name)
            record = JobRecord.from_doc(doc)
            if record.definition.paused == paused:
                return record
            data = record.definition.model_copy(update={"paused": paused}).model_dump(mode="json")
            updated = self._replace(doc, data)
            if updated is not None:
                return updated
        raise CommitConflictError(f"job {name!r} kept changing; try again")

    def apply(self, definition: JobDefinition) -> JobRecord:
        """``put`` a definition read from a job file, where pause state is operational
        state: a definition that does not say ``paused`` explicitly leaves an existing
        job paused or running as it is (paused from the CLI, the API or the console);
        one that says ``paused: true|false`` sets it. A new job starts as the file says
        (not paused unless ``paused: true``)."""
        return self.put(definition, keep_paused="paused" not in definition.model_fields_set)

    def load_file(self, path: str | Path) -> builtins.list[JobRecord]:
        """``apply`` every job of a job file (see ``contracts.jobfile``); jobs missing
        from the file are left alone. Raises ``JobFileError`` (an invalid file, or jobs
        the policy refuses) before writing anything."""
        definitions = load_jobs(path)
        if self.policy is not None:
            problems = self.policy.problem_lines(definitions, str(path))
            if problems:
                raise JobFileError(str(path), problems)
        return [self.apply(definition) for definition in definitions]

    def version_token(self) -> str:
        """A short string that changes whenever any job is created, changed or deleted.

        Exact (a digest of every job's name and unique revision), and cheap: one query
        returning two small fields per job. ``advance_slot`` does not change it.
        """
        pairs = sorted(
            (str(doc["_id"]), str(doc.get("revision")))
            for doc in self.docs.find({}, {"revision": 1})
        )
        digest = hashlib.sha256()
        for name, revision in pairs:
            digest.update(f"{name}\x00{revision}\x00".encode())
        return digest.hexdigest()[:24]

    def generation(self) -> int:
        """A number that grows after every create, change and delete (one small read).

        See the module docstring for how to use it without missing a change.
        """
        doc = self._counters.find_one({"_id": _GENERATION_COUNTER})
        return int(doc["value"]) if doc is not None else 0

    def revisions(self) -> dict[str, int]:
        """The revision of every job, by name (valid or not): one query, two small fields."""
        return {
            str(doc["_id"]): int(doc.get("revision") or 0)
            for doc in self.docs.find({}, {"revision": 1})
        }

    def get_many(
        self,
        names: Iterable[str],
        on_invalid: Callable[[InvalidJobRecordError], None] | None = None,
    ) -> builtins.list[JobRecord]:
        """The valid jobs among ``names``, sorted by name (missing ones are left out).

        A corrupt document is left out and passed to ``on_invalid`` (default: logged).
        """
        wanted = builtins.list(dict.fromkeys(names))
        records: builtins.list[JobRecord] = []
        for start in range(0, len(wanted), _MANY_BATCH):
            batch = wanted[start : start + _MANY_BATCH]
            records += _decode(self.docs.find({"_id": {"$in": batch}}), on_invalid)
        return sorted(records, key=lambda record: record.name)

    # -- schedule bookkeeping ---------------------------------------------------------

    def last_scheduled_slot(self, name: str) -> datetime | None:
        """The latest slot the ticker handled for ``name``; None if none yet."""
        doc = self.docs.find_one({"_id": name}, {"last_slot": 1})
        if doc is None:
            raise self._not_found(name)
        return _aware(doc["last_slot"]) if doc.get("last_slot") else None

    def advance_slot(self, name: str, slot: datetime) -> bool:
        """Record ``slot`` as handled, only if it is later than the stored one.

        Atomic (one conditional update): concurrent tickers can never move it back.
        False if nothing changed (an equal or later slot is stored, or no such job).
        """
        # $max: sets a missing or null field, else keeps the later date (BSON order).
        result = self.docs.update_one({"_id": name}, {"$max": {"last_slot": _slot(slot)}})
        return result.modified_count == 1

    def advance_slots(self, slots: Mapping[str, datetime]) -> int:
        """``advance_slot`` for many jobs in one round trip; returns how many moved.

        Jobs recorded at the same slot (a burst: every job due at the top of an hour)
        share ``update_many`` statements (``_id $in`` up to ``_SHARED_SLOT_CHUNK``
        names), so one ``bulk_write`` carries 40k jobs of one slot as 4k statements.
        """
        if not slots:
            return 0
        by_slot: dict[datetime, builtins.list[str]] = {}
        for name, slot in slots.items():
            by_slot.setdefault(_slot(slot), []).append(name)
        updates: builtins.list[UpdateOne | UpdateMany] = []
        for slot, names in by_slot.items():
            change = {"$max": {"last_slot": slot}}
            for start in range(0, len(names), _SHARED_SLOT_CHUNK):
                chunk = names[start : start + _SHARED_SLOT_CHUNK]
                if len(chunk) == 1:
                    updates.append(UpdateOne({"_id": chunk[0]}, change))
                else:
                    updates.append(UpdateMany({"_id": {"$in": chunk}}, change))
        return self.docs.bulk_write(updates, ordered=False).modified_count

    # -- internals --------------------------------------------------------------------

    def _not_found(self, name: str) -> JobNotFoundError:
        names = sorted(str(doc["_id"]) for doc in self.docs.find({}, {"_id": 1}))
        known = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        hint = f"registered jobs: {known}" if names else "no jobs are registered"
        return JobNotFoundError(f"no job named {name!r} ({hint})")

    def _now(self) -> datetime:
        """The clock, at MongoDB's millisecond precision (what reads give back)."""
        now = _aware(self._clock())
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _create(self, data: dict[str, Any]) -> JobRecord | None:
        now = self._now()
        doc: Doc = {
            "_id": data["name"],
            "definition": data,
            "revision": self._next_revision(),
            "created_at": now,
            "updated_at": now,
            "active_since": now,
            "last_slot": None,
        }
        try:
            self.docs.insert_one(doc)
        except DuplicateKeyError:
            return None  # created concurrently: retry as a replace
        self._bump_generation()
        return JobRecord.from_doc(doc)

    def _replace(self, current: Doc, data: dict[str, Any]) -> JobRecord | None:
        """Compare-and-set on the revision; None if another writer got there first."""
        old = current.get("definition")
        if old == data:
            return JobRecord.from_doc(current)
        now = self._now()
        changes: Doc = {"definition": data, "revision": self._next_revision(), "updated_at": now}
        old = old if isinstance(old, dict) else {}
        resumed = bool(old.get("paused")) and not data.get("paused")
        if old.get("schedule") != data.get("schedule") or resumed:
            since = current.get("active_since")
            changes["active_since"] = max(_aware(since), now) if since else now
        doc = self.docs.find_one_and_update(
            {"_id": current["_id"], "revision": current.get("revision")},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        self._bump_generation()
        return JobRecord.from_doc(doc)

    def _bump_generation(self) -> None:
        """Called after a write succeeded: a failure here must not report the write failed."""
        for _ in range(2):  # the first upsert of the counter can race with another one
            try:
                self._counters.update_one(
                    {"_id": _GENERATION_COUNTER}, {"$inc": {"value": 1}}, upsert=True
                )
                return
            except DuplicateKeyError:
                continue
            except PyMongoError as exc:
                log.warning("job change saved, but not its generation bump: %s", exc)
                return

    def _next_revision(self) -> int:
        for _ in range(2):  # the first upsert of the counter can race with another one
            try:
                doc = self._counters.find_one_and_update(
                    {"_id": _REVISION_COUNTER},
                    {"$inc": {"value": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            if doc is not None:
                return int(doc["value"])
        raise CommitConflictError("could not allocate a job revision")  # pragma: no cover


def _slot(slot: datetime) -> datetime:
    if slot.tzinfo is None:
        raise ValueError("slot must be timezone-aware")
    return slot.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:  # a client without tz_aware=True returns naive UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(job)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _decode(
    docs: Iterable[Doc], on_invalid: Callable[[InvalidJobRecordError], None] | None
) -> list[JobRecord]:
    """The valid records of ``docs``; a corrupt one goes to ``on_invalid`` (default:
    logged as a warning) and is left out."""
    records = []
    for doc in docs:
        try:
            records.append(JobRecord.from_doc(doc))
        except InvalidJobRecordError as exc:
            if on_invalid is None:
                log.warning("skipping job: %s", exc)
            else:
                on_invalid(exc)
    return records
