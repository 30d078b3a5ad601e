"""Restoring and pinning versions: operator actions on a collection's catalog entry.

- ``restore(name, number, by)`` (versioned types): version ``number`` becomes the
  live data again *as a new version* ``last_version + 1`` (``restored_from`` names
  it; the versions in between stay, so the list keeps the trail). The new version
  shares the restored one's physical collection: nothing is copied. ``keep_versions``
  then prunes as after a run (pinned versions stay; a physical collection is retired
  only when no kept version uses it).
- ``restore_previous(name, by, which)`` (normal): a *grace copy* becomes the live data
  again: the data a commit replaced stays readable for the retire grace
  (``DEFAULT_RETIRE_GRACE_S``, 300 s) so readers can finish, and may be restored within
  that time (less ``RESTORE_MARGIN_S``). The data it replaces becomes a grace copy in
  turn, so a restore can be undone the same way.
- ``pin(name, number, pinned)``: a pinned version is never pruned; unpinning lets the
  next commit prune it.
- ``restorable(name)``: the grace copies that may be restored now, newest first.

Each change is **one conditional update** of the collection's catalog document, like a
commit: readers see the old live data or the restored one, never a mix. A run of the
collection in progress meanwhile fails at its own commit with ``CommitConflictError``
(retried like any conflict) instead of overwriting the restore. Upserted and
accumulative collections keep no copies and cannot be restored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.base import utcnow
from contracts.jobs import CollectionType
from storage.catalog import Catalog, VersionInfo, prune_versions, retired_doc
from storage.errors import CommitConflictError, StorageError, VersionNotFoundError
from storage.store import Doc, Store
from storage.strategies.base import DEFAULT_RETIRE_GRACE_S

__all__ = ["RESTORE_MARGIN_S", "GraceCopy", "NotRestorable", "Restored", "Versions"]

#: A grace copy is restorable until this long before its grace ends: a commit running
#: meanwhile drops copies past their grace, and must not pick the one being restored.
RESTORE_MARGIN_S = 10.0


class NotRestorable(StorageError):
    """The collection's type keeps nothing to restore, or the copy is gone."""


@dataclass(frozen=True)
class GraceCopy:
    """Data a commit replaced, still readable until ``expires_at``."""

    index: int  # 1 = the data the last commit replaced
    physical: str
    retired_at: datetime
    expires_at: datetime
    records: int | None


@dataclass(frozen=True)
class Restored:
    """What a restore made live: ``version`` (versioned types) and its records."""

    collection: str
    records: int
    version: int | None = None
    restored_from: int | None = None


class Versions:
    """Restore and pin operations on the collections of one store."""

    def __init__(self, store: Store, retire_grace_s: float = DEFAULT_RETIRE_GRACE_S) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.retire_grace_s = retire_grace_s

    def restore(self, name: str, number: int, by: str = "") -> Restored:
        """Make version ``number`` live again as a new version (versioned types)."""
        raw = self._raw(name)
        entry = self.catalog.require(name)
        if not entry.type.versioned:
            hint = " (restore its previous data instead)" if entry.type == "normal" else ""
            raise NotRestorable(
                f"collection {name!r} is of type '{entry.type}', which keeps no versions{hint}"
            )
        info = entry.version(number)
        if info is None:
            kept = ", ".join(str(v.number) for v in entry.versions) or "none"
            raise VersionNotFoundError(
                f"collection {name!r} has no version {number}; kept versions: {kept}"
            )
        if info.physical == entry.live:
            raise NotRestorable(f"version {number} of {name!r} is the live data already")
        new = VersionInfo(
            entry.last_version + 1,
            info.physical,
            f"restore:{uuid.uuid4()}",
            utcnow(),
            info.records,
            restored_from=number,
            restored_by=by,
        )
        keep = entry.keep_versions or 1
        versions, retire = prune_versions(
            [*raw.get("versions", []), new.to_doc()], new.number - keep + 1
        )
        counts = {v["physical"]: v["records"] for v in raw.get("versions", [])}
        now = utcnow()
        result = self.store.catalog.update_one(
            {"_id": name, "last_version": entry.last_version, "live": entry.live},
            {
                "$set": {
                    "live": info.physical,
                    "records": info.records,
                    "versions": versions,
                    "last_version": new.number,
                },
                "$push": {
                    "retired": {"$each": [retired_doc(p, now, counts.get(p)) for p in retire]}
                },
            },
        )
        if result.modified_count != 1:
            raise _conflict(name)
        return Restored(name, info.records, new.number, number)

    def restorable(self, name: str) -> list[GraceCopy]:
        """The grace copies of normal collection ``name`` restorable now, newest first."""
        entry = self.catalog.require(name)
        if entry.type != CollectionType.NORMAL:
            return []
        now = utcnow()
        grace = timedelta(seconds=self.retire_grace_s)
        copies = sorted(
            zip(entry.retired, entry.retired_records or (None,) * len(entry.retired), strict=True),
            key=lambda item: item[0][1],
            reverse=True,
        )
        margin = timedelta(seconds=RESTORE_MARGIN_S)
        return [
            GraceCopy(index, physical, at, at + grace, records)
            for index, ((physical, at), records) in enumerate(copies, start=1)
            if at + grace - margin > now
        ]

    def restore_previous(self, name: str, by: str = "", which: int = 1) -> Restored:
        """Make grace copy ``which`` (1: the data the last commit replaced) of normal
        collection ``name`` live again; the live data becomes a grace copy."""
        entry = self.catalog.require(name)
        if entry.type != CollectionType.NORMAL:
            raise NotRestorable(
                f"collection {name!r} is of type '{entry.type}': only normal collections "
                "keep their previous data for a grace time"
                + (" (restore a version instead)" if entry.type.versioned else "")
            )
        copies = {copy.index: copy for copy in self.restorable(name)}
        copy = copies.get(which)
        if copy is None:
            raise NotRestorable(
                f"collection {name!r} has no previous data to restore"
                + (f" numbered {which}" if copies else "")
                + f": a commit's replaced data is kept {self.retire_grace_s:g} s"
            )
        raw = self._raw(name)
        records = copy.records
        if records is None:  # retired before record counts were noted
            records = self.store.physical(copy.physical).count_documents({})
        retired = [r for r in raw.get("retired", []) if r["physical"] != copy.physical]
        if entry.live is not None:
            retired.append(retired_doc(entry.live, utcnow(), entry.records))
        result = self.store.catalog.update_one(
            {"_id": name, "live": entry.live, "retired": raw.get("retired", [])},
            {"$set": {"live": copy.physical, "records": records, "retired": retired}},
        )
        if result.modified_count != 1:
            raise _conflict(name)
        return Restored(name, records)

    def pin(self, name: str, number: int, pinned: bool = True) -> VersionInfo:
        """Pin (or unpin) version ``number``: pinned versions are never pruned."""
        self.catalog.require(name)
        result = self.store.catalog.update_one(
            {"_id": name, "versions.n": number}, {"$set": {"versions.$.pinned": pinned}}
        )
        if result.matched_count != 1:
            raise VersionNotFoundError(f"collection {name!r} has no version {number}")
        info = self.catalog.require(name).version(number)
        assert info is not None
        return info

    def _raw(self, name: str) -> Doc:
        raw = self.catalog.raw(name)
        if raw is None:
            self.catalog.require(name)  # raises CollectionNotFoundError
        assert raw is not None
        return raw


def _conflict(name: str) -> CommitConflictError:
    return CommitConflictError(
        f"collection {name!r} changed while it was being restored (a run committed); "
        "nothing was restored, try again"
    )
