"""Streaming a run's records into a collection: batch, write, commit, or abort."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from storage.bulk import BATCH_SIZE, batched
from storage.strategies.base import CollectionStrategy, CommitResult

__all__ = ["store_run"]


def store_run(
    strategy: CollectionStrategy,
    run_id: str,
    records: Iterable[object],
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> CommitResult:
    """Stream ``records`` (any iterable, e.g. a generator) into one run and commit it.

    Any exception, from the iterable or from storage, aborts the run (nothing of it
    stays) and propagates. ``on_batch`` gets the number of records written so far;
    ``before_commit`` may raise to abort (e.g. the job lease was lost). Memory is
    bounded by ``batch_size`` records.
    """
    run = strategy.begin(run_id)
    try:
        for batch in batched(records, batch_size):
            run.write(batch)
            if on_batch is not None:
                on_batch(run.position)
        if before_commit is not None:
            before_commit()
        return run.commit()
    except BaseException:
        run.abort()
        raise
