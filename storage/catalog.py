"""The catalog: one document per user collection in ``slurp_catalog``.

It is the only place that says which physical collection readers see. Every commit
is one conditional single-document update here (MongoDB guarantees single-document
atomicity), so readers see the old data or the new data, never a mix::

    {_id: "users", type: "versioned", upsert_key: null, keep_versions: 3,
     live: "slurp_data.users.v-1a2b...",        # physical collection readers read
     seq: 0,                                    # accumulative: last committed run number
     records: 1234,                             # records in the live data
     last_version: 7,
     versions: [{n, physical, run_id, created_at, records,
                 pinned?, restored_from?, restored_by?}],  # a restored version shares
                                                # its physical with the one it restores
     runs: [{run_id, physical, state, started_at}],   # staging of runs in progress
     retired: [{physical, at, records}],        # old live data, dropped after a grace
     committed: [run_id, ...]}                  # the last COMMITTED_KEPT committed runs
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from contracts.base import utcnow
from contracts.jobs import CollectionSpec, CollectionType
from storage.errors import CollectionNotFoundError, CollectionTypeMismatch
from storage.store import Doc, Store

__all__ = [
    "COMMITTED_KEPT",
    "Catalog",
    "CatalogEntry",
    "StagedRun",
    "VersionInfo",
    "prune_versions",
    "retired_doc",
]

#: How many committed run ids a collection remembers (to refuse running one twice).
COMMITTED_KEPT = 200


@dataclass(frozen=True)
class VersionInfo:
    """One version of a versioned collection. ``pinned``: kept whatever
    ``keep_versions`` says; ``restored_from``: the version it is a restore of (then
    ``run_id`` is ``restore:<id>`` and ``restored_by`` who asked)."""

    number: int
    physical: str
    run_id: str
    created_at: datetime
    records: int
    pinned: bool = False
    restored_from: int | None = None
    restored_by: str = ""

    def to_doc(self) -> Doc:
        doc: Doc = {
            "n": self.number,
            "physical": self.physical,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "records": self.records,
        }
        if self.pinned:
            doc["pinned"] = True
        if self.restored_from is not None:
            doc["restored_from"] = self.restored_from
            doc["restored_by"] = self.restored_by
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> VersionInfo:
        return cls(
            doc["n"],
            doc["physical"],
            doc["run_id"],
            doc["created_at"],
            doc["records"],
            bool(doc.get("pinned", False)),
            doc.get("restored_from"),
            doc.get("restored_by", ""),
        )


def prune_versions(versions: list[Doc], below: int) -> tuple[list[Doc], list[str]]:
    """Versions kept when those numbered below ``below`` go (pinned ones stay), and
    the physical collections to retire: those no kept version uses any more (a
    restored version shares its physical collection with the version it restores)."""
    kept = [v for v in versions if v["n"] >= below or v.get("pinned")]
    used = {v["physical"] for v in kept}
    retire = list(dict.fromkeys(v["physical"] for v in versions if v["physical"] not in used))
    return kept, retire


@dataclass(frozen=True)
class StagedRun:
    """A run in progress (or crashed) and its staging collection."""

    run_id: str
    physical: str
    state: str  # "writing" | "committing"
    started_at: datetime


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    type: CollectionType
    upsert_key: str | None
    keep_versions: int | None
    live: str | None
    seq: int
    records: int
    last_version: int
    versions: tuple[VersionInfo, ...]
    runs: tuple[StagedRun, ...]
    retired: tuple[tuple[str, datetime], ...]
    committed: tuple[str, ...] = ()
    #: Records of each ``retired`` collection when it was retired (None: not noted).
    retired_records: tuple[int | None, ...] = ()

    @classmethod
    def from_doc(cls, doc: Doc) -> CatalogEntry:
        return cls(
            name=doc["_id"],
            type=CollectionType(doc["type"]),
            upsert_key=doc.get("upsert_key"),
            keep_versions=doc.get("keep_versions"),
            live=doc.get("live"),
            seq=doc.get("seq", 0),
            records=doc.get("records", 0),
            last_version=doc.get("last_version", 0),
            versions=tuple(VersionInfo.from_doc(v) for v in doc.get("versions", [])),
            runs=tuple(
                StagedRun(r["run_id"], r["physical"], r["state"], r["started_at"])
                for r in doc.get("runs", [])
            ),
            retired=tuple((r["physical"], r["at"]) for r in doc.get("retired", [])),
            retired_records=tuple(r.get("records") for r in doc.get("retired", [])),
            committed=tuple(doc.get("committed", [])),
        )

    def version(self, number: int) -> VersionInfo | None:
        return next((v for v in self.versions if v.number == number), None)

    def physicals(self) -> set[str]:
        """Every physical collection this entry references."""
        names = {v.physical for v in self.versions} | {r.physical for r in self.runs}
        names |= {physical for physical, _ in self.retired}
        if self.live:
            names.add(self.live)
        if self.type == CollectionType.UPSERTED:
            names.add(Store.staging_name(self.name))
        return names


class Catalog:
    """Reads and conditional updates of catalog documents."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.docs = store.catalog

    def get(self, name: str) -> CatalogEntry | None:
        doc = self.docs.find_one({"_id": name})
        return CatalogEntry.from_doc(doc) if doc else None

    def require(self, name: str) -> CatalogEntry:
        entry = self.get(name)
        if entry is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        return entry

    def names(self) -> list[str]:
        return sorted(doc["_id"] for doc in self.docs.find({}, {"_id": 1}))

    def ensure(self, spec: CollectionSpec, live: str | None = None) -> CatalogEntry:
        """The entry of ``spec.name``, created on first use; refuses a changed type or key."""
        now = utcnow()
        try:
            doc = self.docs.find_one_and_update(
                {"_id": spec.name},
                {
                    "$setOnInsert": {
                        "type": spec.type.value,
                        "upsert_key": spec.upsert_key,
                        "live": live,
                        "seq": 0,
                        "records": 0,
                        "last_version": 0,
                        "versions": [],
                        "runs": [],
                        "retired": [],
                        "created_at": now,
                    },
                    "$set": {"keep_versions": spec.keep_versions},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # two first runs raced; the other one created it
            doc = self.docs.find_one({"_id": spec.name})
        assert doc is not None
        entry = CatalogEntry.from_doc(doc)
        if entry.type != spec.type or entry.upsert_key != spec.upsert_key:
            raise CollectionTypeMismatch(
                f"collection {spec.name!r} exists as type '{entry.type}'"
                f"{f' keyed by {entry.upsert_key!r}' if entry.upsert_key else ''}; the job "
                f"asks for '{spec.type}'"
                f"{f' keyed by {spec.upsert_key!r}' if spec.upsert_key else ''}. "
                "Use a new collection name, or delete the collection first."
            )
        return entry

    def begin_run(self, name: str, run_id: str, physical: str) -> None:
        run = {"run_id": run_id, "physical": physical, "state": "writing", "started_at": utcnow()}
        self.docs.update_one({"_id": name}, {"$push": {"runs": run}})

    def mark_committing(self, name: str, run_id: str) -> bool:
        """False if the run is no longer registered (another run's recovery took it)."""
        result = self.docs.update_one(
            {"_id": name, "runs.run_id": run_id}, {"$set": {"runs.$.state": "committing"}}
        )
        return result.modified_count == 1

    def end_run(
        self,
        name: str,
        physical: str,
        inc_records: int = 0,
        run_id: str | None = None,
        committed: str | None = None,
    ) -> None:
        """Unregister the run(s) writing ``physical`` (only ``run_id``'s if given);
        ``committed`` names a run whose data is now applied."""
        match: Doc = {"physical": physical}
        if run_id is not None:
            match["run_id"] = run_id
        update: Doc = {"$pull": {"runs": match}, "$inc": {"records": inc_records}}
        if committed is not None:
            update["$push"] = {"committed": _committed(committed)}
        self.docs.update_one({"_id": name}, update)

    def publish(
        self,
        name: str,
        staging: str,
        records: int,
        expect: Doc,
        version: VersionInfo | None = None,
        prune_below: int | None = None,
    ) -> bool:
        """Make ``staging`` the live data in one conditional update; False on conflict.

        ``expect`` is the filter the entry must still match (the state the run began
        on); ``staging`` must still be registered as a run (a run whose staging was
        taken by another run's recovery cannot publish). The previous live collection
        is retired, and versions numbered below ``prune_below`` are removed and retired.
        """
        expect = {"runs.physical": staging, **expect}
        entry = self.docs.find_one({"_id": name, **expect})
        if entry is None:
            return False
        now = utcnow()
        retire = [entry["live"]] if entry.get("live") else []
        counts = {entry["live"]: entry.get("records", 0)} if entry.get("live") else {}
        keep = entry.get("versions", [])
        if version is not None:
            keep = [*keep, version.to_doc()]
            retire = []  # the previous live data stays as a version
        if prune_below is not None:
            counts.update((v["physical"], v["records"]) for v in keep)
            keep, pruned = prune_versions(keep, prune_below)
            retire += pruned
        run_id = next(r["run_id"] for r in entry["runs"] if r["physical"] == staging)
        update: Doc = {
            "$set": {"live": staging, "records": records, "versions": keep},
            "$pull": {"runs": {"physical": staging}},
            "$push": {
                "retired": {"$each": [retired_doc(p, now, counts.get(p)) for p in retire]},
                "committed": _committed(run_id),
            },
        }
        if version is not None:
            update["$set"]["last_version"] = version.number
        result = self.docs.update_one({"_id": name, **expect}, update)
        return result.modified_count == 1

    def record_commit(self, name: str, run_id: str, inc_records: int) -> bool:
        """Note ``run_id`` as committed (for runs not registered in ``runs``)."""
        result = self.docs.update_one(
            {"_id": name},
            {"$inc": {"records": inc_records}, "$push": {"committed": _committed(run_id)}},
        )
        return result.matched_count == 1

    def advance_seq(self, name: str, seq: int, records: int, run_id: str) -> bool:
        """Accumulative commit: make run ``seq`` visible; False on conflict."""
        result = self.docs.update_one(
            {"_id": name, "seq": seq - 1, "runs.run_id": run_id},
            {
                "$set": {"seq": seq},
                "$inc": {"records": records},
                "$pull": {"runs": {"run_id": run_id}},
                "$push": {"committed": _committed(run_id)},
            },
        )
        return result.modified_count == 1

    def drop_retired(self, name: str, grace_s: float) -> list[str]:
        """Drop retired physical collections older than ``grace_s``; return their names."""
        cutoff = utcnow() - timedelta(seconds=grace_s)
        entry = self.get(name)
        if entry is None:
            return []
        old = [physical for physical, at in entry.retired if at <= cutoff]
        if not old:
            return []
        self.docs.update_one({"_id": name}, {"$pull": {"retired": {"physical": {"$in": old}}}})
        for physical in old:
            self.store.db.drop_collection(physical)
        return old

    def delete(self, name: str) -> bool:
        """Remove a collection with all its data, versions and staging."""
        entry = self.get(name)
        if entry is None:
            return False
        self.docs.delete_one({"_id": name})
        for physical in entry.physicals():
            self.store.db.drop_collection(physical)
        return True

    def raw(self, name: str) -> dict[str, Any] | None:
        return self.docs.find_one({"_id": name})


def retired_doc(physical: str, at: datetime, records: int | None) -> Doc:
    """An entry of ``retired``: dropped once ``at`` is older than the retire grace."""
    return {"physical": physical, "at": at, "records": records}


def _committed(run_id: str) -> Doc:
    return {"$each": [run_id], "$slice": -COMMITTED_KEPT}
