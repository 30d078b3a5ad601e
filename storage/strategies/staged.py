"""Shared machinery of the staged types: the run builds a complete new physical
collection, and the commit points the catalog at it in one update."""

from __future__ import annotations

from storage.catalog import CatalogEntry
from storage.errors import CommitConflictError
from storage.records import Record
from storage.strategies.base import CollectionStrategy, RunWriter

__all__ = ["StagedWriter"]


class StagedWriter(RunWriter):
    """Writes into a fresh staging collection registered in the catalog."""

    def __init__(self, strategy: CollectionStrategy, entry: CatalogEntry, run_id: str) -> None:
        super().__init__(strategy, entry, run_id)
        kind = "v" if entry.type.versioned else "live"
        self.staging_name = self.store.physical_name(entry.name, kind)
        self.catalog.begin_run(entry.name, run_id, self.staging_name)
        self.staging = self.store.physical(self.staging_name)
        self.store.db.create_collection(self.staging_name)
        self.base_records = 0  # records copied from the previous version

    def _write(self, docs: list[Record]) -> None:
        self.staging.insert_many(docs, ordered=False)

    def _abort(self) -> None:
        self.store.db.drop_collection(self.staging_name)
        self.catalog.end_run(self.entry.name, self.staging_name)

    def _conflict(self) -> CommitConflictError:
        return CommitConflictError(
            f"collection {self.entry.name!r} was changed by another run while run "
            f"{self.run_id} was writing; this run's data was discarded"
        )
