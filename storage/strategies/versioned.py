"""versioned (keep N): each run creates a new version V(n) = the run's output; the
newest N versions are kept, older ones are removed once the new version is live.

Each version is its own physical collection. The commit appends the version, points
``live`` at it and prunes old ones in one conditional catalog update; pruned
collections are dropped after the retire grace (readers mid-read can finish).
"""

from __future__ import annotations

from contracts.base import utcnow
from contracts.jobs import CollectionType
from storage.bulk import copy_collection
from storage.catalog import CatalogEntry, VersionInfo
from storage.strategies.base import CollectionStrategy, CommitResult, RunWriter
from storage.strategies.staged import StagedWriter

__all__ = ["VersionedStrategy", "VersionedWriter"]


class VersionedWriter(StagedWriter):
    """Builds the next version in staging; subclasses choose how it starts and grows."""

    #: Start the new version as a copy of the previous one.
    copies_previous = False

    def __init__(self, strategy: CollectionStrategy, entry: CatalogEntry, run_id: str) -> None:
        # A version built on a copy counts its own changes (upserts, appends); a plain
        # version is compared with the previous one by content.
        self.compares_content = not self.copies_previous
        super().__init__(strategy, entry, run_id)
        self.inserted = 0
        self.updated = 0
        self.unchanged = 0
        if self.copies_previous and entry.live is not None:
            self.prepare_copy()
            self.base_records = copy_collection(self.store.physical(entry.live), self.staging)

    def prepare_copy(self) -> None:
        """Hook run before the previous version is copied in (e.g. to create indexes)."""

    def pending_total(self) -> int:
        return self.base_records + self.inserted_count()

    def _commit(self) -> CommitResult:
        number = self.entry.last_version + 1
        keep = self.strategy.spec.keep_versions or 1
        total = self.pending_total()
        diff = self.diff()  # plain versions: against the previous version, still live
        version = VersionInfo(number, self.staging_name, self.run_id, utcnow(), total)
        published = self.catalog.publish(
            self.entry.name,
            self.staging_name,
            total,
            expect={"last_version": self.entry.last_version},
            version=version,
            prune_below=number - keep + 1,
        )
        if not published:
            raise self._conflict()
        if diff is not None:
            return CommitResult(
                records_written=self.position,
                inserted=diff.inserted,
                updated=0,
                records_total=total,
                version=number,
                unchanged=diff.unchanged,
                removed=diff.removed,
            )
        copied = self.copies_previous  # a copy plus upserts or appends removes nothing
        return CommitResult(
            records_written=self.position,
            inserted=self.inserted_count(),
            updated=self.updated,
            records_total=total,
            version=number,
            unchanged=self.unchanged if copied else None,
            removed=0 if copied else None,
        )

    def inserted_count(self) -> int:
        """Records of the output that are new in this version (all, unless keyed)."""
        return self.position


class VersionedStrategy(CollectionStrategy):
    kind = CollectionType.VERSIONED

    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter:
        return VersionedWriter(self, entry, run_id)
