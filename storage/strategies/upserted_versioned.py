"""upserted + versioned: V(n) = a copy of V(n-1), then upserted with the run's output
(same rules as ``upserted``: the key becomes ``_id``, the last duplicate wins)."""

from __future__ import annotations

from contracts.jobs import CollectionType
from storage.bulk import upsert_by_id
from storage.catalog import CatalogEntry
from storage.records import Record
from storage.strategies.base import RunWriter
from storage.strategies.keys import keyed_last_wins
from storage.strategies.versioned import VersionedStrategy, VersionedWriter

__all__ = ["UpsertedVersionedStrategy"]


class _UpsertedVersionedWriter(VersionedWriter):
    copies_previous = True

    def _write(self, docs: list[Record]) -> None:
        key = self.strategy.spec.upsert_key
        assert key is not None
        keyed = keyed_last_wins(((self.position + i, d) for i, d in enumerate(docs)), key)
        # The staging starts as a copy of the previous version: keys likely exist.
        done = upsert_by_id(self.staging, keyed, expect_existing=self.entry.records > 0)
        self.inserted += done.inserted
        self.updated += done.updated
        self.unchanged += done.unchanged

    def inserted_count(self) -> int:
        return self.inserted


class UpsertedVersionedStrategy(VersionedStrategy):
    kind = CollectionType.UPSERTED_VERSIONED

    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter:
        return _UpsertedVersionedWriter(self, entry, run_id)
