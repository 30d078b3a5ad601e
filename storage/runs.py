"""Streaming a run's records into a collection: batch, write, check, commit, or abort."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from storage.bulk import BATCH_SIZE, batched
from storage.catalog import CatalogEntry
from storage.guards import RunGuards
from storage.strategies.base import CollectionStrategy, CommitResult

__all__ = ["store_run"]


def store_run(
    strategy: CollectionStrategy,
    run_id: str,
    records: Iterable[object],
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    before_commit: Callable[[], None] | None = None,
    known: CatalogEntry | None = None,
    guards: RunGuards | None = None,
) -> CommitResult:
    """Stream ``records`` (any iterable, e.g. a generator) into one run and commit it.

    Any exception, from the iterable or from storage, aborts the run (nothing of it
    stays) and propagates. ``on_batch`` gets the number of records written so far
    after each batch (a batch boundary: it may raise to stop the run, e.g. when it
    was cancelled); ``guards`` see every checked batch and then the whole output
    before the commit (``storage.guards``: ``GuardFailed`` aborts); ``before_commit``
    is called last and may raise to abort (e.g. the job lease was lost); ``known`` is
    the collection's catalog entry if the caller just read it (see
    ``CollectionStrategy.begin``). Memory is bounded by ``batch_size`` records.
    """
    run = strategy.begin(run_id, known)
    try:
        inspect = guards.inspect if guards is not None else None
        for batch in batched(records, batch_size):
            run.write(batch, inspect)
            if on_batch is not None:
                on_batch(run.position)
        if guards is not None:
            guards.check(run.position, run.entry.records, run.pending_total())
        if before_commit is not None:
            before_commit()
        return run.commit()
    except BaseException:
        run.abort()
        raise
