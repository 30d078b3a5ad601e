"""Shared machinery of the staged types: the run builds a complete new physical
collection, and the commit points the catalog at it in one update."""

from __future__ import annotations

from storage.catalog import CatalogEntry
from storage.changes import ContentDigests, Diff, diff_against
from storage.errors import CommitConflictError
from storage.records import Record
from storage.strategies.base import CollectionStrategy, RunWriter

__all__ = ["StagedWriter"]


class StagedWriter(RunWriter):
    """Writes into a fresh staging collection registered in the catalog.

    ``digests``: content hashes of the output, for the change statistics of the types
    without a key (``storage.changes``); None when off or when a subclass counts
    changes itself (the ones that build on the previous version)."""

    #: The new data replaces the previous one wholesale (compare by content).
    compares_content = True

    def __init__(self, strategy: CollectionStrategy, entry: CatalogEntry, run_id: str) -> None:
        super().__init__(strategy, entry, run_id)
        kind = "v" if entry.type.versioned else "live"
        self.staging_name = self.store.physical_name(entry.name, kind)
        self.catalog.begin_run(entry.name, run_id, self.staging_name)
        self.staging = self.store.physical(self.staging_name)
        self.store.db.create_collection(self.staging_name)
        self.base_records = 0  # records copied from the previous version
        stats = self.compares_content and strategy.spec.change_stats
        self.digests = ContentDigests() if stats else None

    def _write(self, docs: list[Record]) -> None:
        if self.digests is not None:
            self.digests.add_records(docs)  # before insert_many adds an _id to each
        self.staging.insert_many(docs, ordered=False)

    def diff(self) -> Diff | None:
        """The output against the data it replaces (reads that data once), or None
        when change statistics are off."""
        if self.digests is None:
            return None
        previous = self.entry.live
        return diff_against(
            self.digests, self.store.physical(previous) if previous is not None else None
        )

    def _abort(self) -> None:
        self.store.db.drop_collection(self.staging_name)
        self.catalog.end_run(self.entry.name, self.staging_name)

    def _conflict(self) -> CommitConflictError:
        return CommitConflictError(
            f"collection {self.entry.name!r} was changed by another run while run "
            f"{self.run_id} was writing; this run's data was discarded"
        )
