"""upserted (by key): each record replaces the stored record with the same key or is
inserted; stored records absent from the run's output stay.

All-or-nothing with respect to the run: the output is first staged (checked, keys
verified), and merged into the live collection only at commit. Staging stores each
batch as one document (``{_id: first position, records: [...]}``), which costs a
fraction of storing the records one by one. The merge is marked in
the catalog first; if the process or the database dies during it, the next run of the
job (``begin`` → ``recover``) replays the merge from the staging collection, which is
idempotent, before doing anything else. Readers may see a partly applied merge while
a commit is in progress (use ``upserted_versioned`` with ``keep_versions: 1`` for an
atomic switch).
"""

from __future__ import annotations

from contracts.jobs import CollectionType
from storage.bulk import read_chunks, stage_chunks, upsert_by_id
from storage.catalog import CatalogEntry
from storage.errors import CommitConflictError
from storage.records import Record, key_of
from storage.strategies.base import CollectionStrategy, CommitResult, RunWriter
from storage.strategies.keys import keyed_last_wins

__all__ = ["UpsertedStrategy"]


class _UpsertedWriter(RunWriter):
    strategy: UpsertedStrategy

    def __init__(self, strategy: UpsertedStrategy, entry: CatalogEntry, run_id: str) -> None:
        super().__init__(strategy, entry, run_id)
        self.key = strategy.key
        self.staging_name = self.store.physical_name(entry.name, "stage")
        self.catalog.begin_run(entry.name, run_id, self.staging_name)
        self.staging = self.store.physical(self.staging_name)

    def _write(self, docs: list[Record]) -> None:
        for i, doc in enumerate(docs):
            key_of(doc, self.key, self.position + i)  # fail now, naming the position
        stage_chunks(self.staging, self.position, docs)

    def _commit(self) -> CommitResult:
        if not self.catalog.mark_committing(self.entry.name, self.staging_name):
            raise CommitConflictError(
                f"collection {self.entry.name!r} was deleted, or this run's staging was "
                f"removed by another run, while run {self.run_id} was writing; nothing of "
                "this run was applied"
            )
        # From here on the staging data is the run's commitment: a failure leaves it
        # in place (state 'committing') for the next run to replay, so no abort.
        self.state = "committing"
        inserted, updated = self.strategy.merge(self.entry, self.staging_name)
        self.catalog.end_run(
            self.entry.name, self.staging_name, inc_records=inserted, committed=self.run_id
        )
        self.store.db.drop_collection(self.staging_name)
        return CommitResult(
            records_written=self.position,
            inserted=inserted,
            updated=updated,
            records_total=self.entry.records + inserted,
        )

    def _abort(self) -> None:
        self.store.db.drop_collection(self.staging_name)
        self.catalog.end_run(self.entry.name, self.staging_name)


class UpsertedStrategy(CollectionStrategy):
    kind = CollectionType.UPSERTED
    in_place = True

    @property
    def key(self) -> str:
        assert self.spec.upsert_key is not None  # guaranteed by CollectionSpec
        return self.spec.upsert_key

    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter:
        return _UpsertedWriter(self, entry, run_id)

    def recover(self) -> CatalogEntry:
        entry = self.catalog.ensure(
            self.spec, live=self.store.physical_name(self.spec.name, "live")
        )
        for run in entry.runs:
            if run.state == "committing":
                inserted, _ = self.merge(entry, run.physical)
                self.catalog.end_run(
                    entry.name, run.physical, inc_records=inserted, committed=run.run_id
                )
                self.store.db.drop_collection(run.physical)
            else:
                self._recover_run(entry, run.physical, run.state)
        return self.ensure() if entry.runs else entry

    def merge(self, entry: CatalogEntry, staging_name: str) -> tuple[int, int]:
        """Apply a staging collection to the live one, in output order; idempotent."""
        assert entry.live is not None
        live = self.store.physical(entry.live)
        inserted = updated = 0
        for first, records in read_chunks(self.store.physical(staging_name)):
            docs = keyed_last_wins(enumerate(records, start=first), self.key)
            new, replaced = upsert_by_id(live, docs)
            inserted += new
            updated += replaced
        return inserted, updated
