"""accumulative + versioned: V(n) = a copy of V(n-1) plus the run's output."""

from __future__ import annotations

from contracts.jobs import CollectionType
from storage.catalog import CatalogEntry
from storage.strategies.base import RunWriter
from storage.strategies.versioned import VersionedStrategy, VersionedWriter

__all__ = ["AccumulativeVersionedStrategy"]


class _AccumulativeVersionedWriter(VersionedWriter):
    copies_previous = True


class AccumulativeVersionedStrategy(VersionedStrategy):
    kind = CollectionType.ACCUMULATIVE_VERSIONED

    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter:
        return _AccumulativeVersionedWriter(self, entry, run_id)
