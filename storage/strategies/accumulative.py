"""accumulative: every run appends its output; nothing stored is changed or removed.

No copy is made: the run writes straight into the live collection, but readers do not
see it until the commit. Each run has a sequence number ``s`` (the catalog's committed
``seq`` + 1) and writes its records with ``_id = s * 2**32 + position``; readers only
read ``_id < (seq + 1) * 2**32``. The commit raises ``seq`` in one conditional catalog
update, so the whole run becomes visible at once. An aborted run deletes its id range;
a crashed run's range is deleted by the next ``begin``. Runs must not overlap (the
worker's job lease ensures it); if they do anyway, the later ``begin`` takes the
earlier run for crashed, and at most one of them commits — possibly none; the others
fail with ``CommitConflictError``, never a partly visible run.
"""

from __future__ import annotations

from pymongo.errors import BulkWriteError

from contracts.jobs import CollectionType
from storage.catalog import CatalogEntry
from storage.errors import CommitConflictError, StorageError
from storage.records import Record
from storage.store import Doc
from storage.strategies.base import CollectionStrategy, CommitResult, RunWriter

__all__ = ["MAX_RECORDS_PER_RUN", "AccumulativeStrategy", "visible_filter"]

_SHIFT = 32
_DUPLICATE_KEY = 11000
#: Records one accumulative run may write (its id range).
MAX_RECORDS_PER_RUN = 2**_SHIFT


def visible_filter(seq: int) -> Doc:
    """The filter selecting the committed records of an accumulative collection."""
    return {"_id": {"$lt": (seq + 1) << _SHIFT}}


def _uncommitted(seq: int) -> Doc:
    return {"_id": {"$gte": (seq + 1) << _SHIFT}}


class _AccumulativeWriter(RunWriter):
    def __init__(self, strategy: CollectionStrategy, entry: CatalogEntry, run_id: str) -> None:
        super().__init__(strategy, entry, run_id)
        assert entry.live is not None
        self.live = self.store.physical(entry.live)
        self.seq = entry.seq + 1
        self.base_id = self.seq << _SHIFT
        self.catalog.begin_run(entry.name, run_id, entry.live)

    def _write(self, docs: list[Record]) -> None:
        if self.position + len(docs) > MAX_RECORDS_PER_RUN:
            raise StorageError(f"an accumulative run writes at most {MAX_RECORDS_PER_RUN} records")
        first = self.base_id + self.position
        try:
            self.live.insert_many(
                [{"_id": first + i, **doc} for i, doc in enumerate(docs)], ordered=False
            )
        except BulkWriteError as exc:
            if any(e.get("code") == _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise self._conflict() from exc
            raise

    def _commit(self) -> CommitResult:
        # Overlapping runs (no job lease) share an id range; a range holding anything
        # but exactly this run's records means another run interfered.
        written = self.live.count_documents(
            {"_id": {"$gte": self.base_id, "$lt": self.base_id + MAX_RECORDS_PER_RUN}}
        )
        if written != self.position or not self.catalog.advance_seq(
            self.entry.name, self.seq, self.position, self.run_id
        ):
            raise self._conflict()
        return CommitResult(
            records_written=self.position,
            inserted=self.position,
            updated=0,
            records_total=self.pending_total(),
            unchanged=0,
            removed=0,
        )

    def pending_total(self) -> int:
        return self.entry.records + self.position

    def _abort(self) -> None:
        self.live.delete_many(_uncommitted(self.entry.seq))
        self.catalog.end_run(self.entry.name, self.live.name, run_id=self.run_id)

    def _conflict(self) -> CommitConflictError:
        return CommitConflictError(
            f"collection {self.entry.name!r} was changed by another run while run "
            f"{self.run_id} was writing; this run's records were discarded"
        )


class AccumulativeStrategy(CollectionStrategy):
    kind = CollectionType.ACCUMULATIVE
    in_place = True

    def recover(self) -> CatalogEntry:
        entry = self.catalog.ensure(
            self.spec, live=self.store.physical_name(self.spec.name, "live")
        )
        assert entry.live is not None
        self.store.physical(entry.live).delete_many(_uncommitted(entry.seq))
        if entry.runs:  # crashed runs (or, without the job lease, a running one)
            self.catalog.end_run(entry.name, entry.live)
            return self.ensure()
        return entry

    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter:
        return _AccumulativeWriter(self, entry, run_id)
