"""upserted (by key): each record replaces the stored record with the same key or is
inserted; stored records absent from the run's output stay.

All-or-nothing with respect to the run: the output is first staged (checked, keys
verified), and merged into the live collection only at commit. Staging stores each
batch as one document (``{_id: "<run_id>:<first position>", records: [...]}``) in one
staging collection per upserted collection, shared by its runs: a fraction of the
cost of storing records one by one, and no collection created or dropped per run.
Outputs of at most one batch skip staging (see ``_commit_in_memory``). The merge is
marked in
the catalog first; if the process or the database dies during it, the next run of the
job (``begin`` → ``recover``) replays the merge from the staging collection, which is
idempotent, before doing anything else. Readers may see a partly applied merge while
a commit is in progress (use ``upserted_versioned`` with ``keep_versions: 1`` for an
atomic switch).
"""

from __future__ import annotations

from contracts.jobs import CollectionType
from storage.bulk import (
    BATCH_SIZE,
    Upserts,
    read_chunks,
    run_chunks,
    stage_chunks,
    upsert_by_id,
)
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
        self.staging_name = self.store.staging_name(entry.name)
        self.staging = self.store.physical(self.staging_name)
        self.pending: list[Record] = []  # the output, while it fits in one batch
        self.staged = False

    def _write(self, docs: list[Record]) -> None:
        for i, doc in enumerate(docs):
            key_of(doc, self.key, self.position + i)  # fail now, naming the position
        if not self.staged and len(self.pending) + len(docs) <= BATCH_SIZE:
            self.pending.extend(docs)
            return
        if not self.staged:
            self.catalog.begin_run(self.entry.name, self.run_id, self.staging_name)
            self.staged = True
            if self.pending:
                stage_chunks(self.staging, self.run_id, 0, self.pending)
                self.pending = []
        stage_chunks(self.staging, self.run_id, self.position, docs)

    def _commit(self) -> CommitResult:
        if not self.staged:
            return self._commit_in_memory()
        return self._commit_staged()

    def _commit_in_memory(self) -> CommitResult:
        """A run of at most one batch is merged straight from memory: one bulk write
        plus one catalog update. A crash during it leaves the run uncommitted; the
        redelivered message runs it again (the merge is idempotent)."""
        assert self.entry.live is not None
        docs = keyed_last_wins(enumerate(self.pending), self.key)
        done = upsert_by_id(
            self.store.physical(self.entry.live), docs, expect_existing=self.entry.records > 0
        )
        if not self.catalog.record_commit(self.entry.name, self.run_id, done.inserted):
            raise CommitConflictError(f"collection {self.entry.name!r} was deleted during the run")
        return self._result(done)

    def _result(self, done: Upserts) -> CommitResult:
        return CommitResult(
            records_written=self.position,
            inserted=done.inserted,
            updated=done.updated,
            records_total=self.entry.records + done.inserted,
            unchanged=done.unchanged,
            removed=0,
        )

    def _commit_staged(self) -> CommitResult:
        if not self.catalog.mark_committing(self.entry.name, self.run_id):
            raise CommitConflictError(
                f"collection {self.entry.name!r} was deleted, or this run's staging was "
                f"removed by another run, while run {self.run_id} was writing; nothing of "
                "this run was applied"
            )
        # From here on the staging data is the run's commitment: a failure leaves it
        # in place (state 'committing') for the next run to replay, so no abort.
        self.state = "committing"
        done = self.strategy.merge(self.entry, self.run_id)
        self.catalog.end_run(
            self.entry.name,
            self.staging_name,
            inc_records=done.inserted,
            run_id=self.run_id,
            committed=self.run_id,
        )
        self.staging.delete_many(run_chunks(self.run_id))
        return self._result(done)

    def _abort(self) -> None:
        self.pending = []
        if self.staged:
            self.staging.delete_many(run_chunks(self.run_id))
            self.catalog.end_run(self.entry.name, self.staging_name, run_id=self.run_id)


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
        staging = self.store.physical(self.store.staging_name(entry.name))
        for run in entry.runs:
            inserted = 0
            if run.state == "committing":
                inserted = self.merge(entry, run.run_id).inserted
            staging.delete_many(run_chunks(run.run_id))
            self.catalog.end_run(
                entry.name,
                run.physical,
                inc_records=inserted,
                run_id=run.run_id,
                committed=run.run_id if run.state == "committing" else None,
            )
        return self.ensure() if entry.runs else entry

    def merge(self, entry: CatalogEntry, run_id: str) -> Upserts:
        """Apply the staged output of ``run_id`` to the live data, in output order;
        idempotent. Counts as ``upsert_by_id`` (a replayed merge finds its own records
        unchanged)."""
        assert entry.live is not None
        live = self.store.physical(entry.live)
        staging = self.store.physical(self.store.staging_name(entry.name))
        inserted = updated = unchanged = 0
        for first, records in read_chunks(staging, run_id):
            docs = keyed_last_wins(enumerate(records, start=first), self.key)
            done = upsert_by_id(live, docs, expect_existing=entry.records > 0)
            inserted += done.inserted
            updated += done.updated
            unchanged += done.unchanged
        return Upserts(inserted, updated, unchanged)
