"""normal: after a successful run the stored data is exactly this run's output."""

from __future__ import annotations

from contracts.jobs import CollectionType
from storage.catalog import CatalogEntry
from storage.strategies.base import CollectionStrategy, CommitResult, RunWriter
from storage.strategies.staged import StagedWriter

__all__ = ["NormalStrategy"]


class _NormalWriter(StagedWriter):
    def pending_total(self) -> int:
        return self.position

    def _commit(self) -> CommitResult:
        diff = self.diff()  # before the publish: the previous data is still live
        published = self.catalog.publish(
            self.entry.name, self.staging_name, self.position, expect={"live": self.entry.live}
        )
        if not published:
            raise self._conflict()
        return CommitResult(
            records_written=self.position,
            inserted=self.position if diff is None else diff.inserted,
            updated=0,
            records_total=self.position,
            unchanged=None if diff is None else diff.unchanged,
            removed=None if diff is None else diff.removed,
        )


class NormalStrategy(CollectionStrategy):
    kind = CollectionType.NORMAL

    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter:
        return _NormalWriter(self, entry, run_id)
