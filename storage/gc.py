"""Garbage collection of physical collections nobody references any more.

Commits already drop what they retire (after the retire grace) and the next run of a
job undoes what its crashed predecessor left. ``collect_garbage`` is the sweep for the
rest — `slurp gc` runs it: retired data past its grace in every collection, and
``slurp_data.*`` collections that no catalog entry references (e.g. a collection's
data after its catalog entry was deleted by hand). Runs in progress are referenced by
their catalog entry and never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.catalog import Catalog
from storage.store import DATA_PREFIX, Store

__all__ = ["GarbageReport", "collect_garbage"]


@dataclass
class GarbageReport:
    """What one sweep dropped."""

    retired: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def collect_garbage(store: Store, retire_grace_s: float, dry_run: bool = False) -> GarbageReport:
    """Drop retired data older than ``retire_grace_s`` and unreferenced data collections."""
    catalog = Catalog(store)
    report = GarbageReport()
    referenced: set[str] = set()
    for name in catalog.names():
        if not dry_run:
            report.retired += catalog.drop_retired(name, retire_grace_s)
        entry = catalog.get(name)
        if entry is not None:
            referenced |= entry.physicals()
    # Listed after the catalog was read: a run that began since then registered its
    # staging before creating it, so it is either referenced above or not listed yet.
    for physical in store.db.list_collection_names(filter={"name": {"$regex": f"^{DATA_PREFIX}"}}):
        if physical in referenced:
            continue
        entry = catalog.get(_collection_of(physical))  # fresh read: a run may have begun
        if entry is not None and physical in entry.physicals():
            continue
        report.orphans.append(physical)
        if not dry_run:
            store.db.drop_collection(physical)
    return report


def _collection_of(physical: str) -> str:
    """``slurp_data.<name>.<suffix>`` → ``<name>`` (names may contain dots)."""
    return physical[len(DATA_PREFIX) :].rsplit(".", 1)[0]
