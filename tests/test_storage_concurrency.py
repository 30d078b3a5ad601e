"""Readers during commits, crash recovery of an upserted merge, and the gc sweep."""

from __future__ import annotations

import threading

import pytest

from contracts.jobs import CollectionType
from storage.catalog import Catalog
from storage.errors import CommitConflictError
from storage.gc import collect_garbage
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import DATA_PREFIX, Store
from storage.strategies import strategy_for
from tests.storage_model import Model, canonical, spec_for

ATOMIC_TYPES = [
    CollectionType.NORMAL,
    CollectionType.ACCUMULATIVE,
    CollectionType.VERSIONED,
    CollectionType.UPSERTED_VERSIONED,
    CollectionType.ACCUMULATIVE_VERSIONED,
]
RUN_SIZE = 400


def generation(n: int) -> list[dict[str, object]]:
    return [{"id": i, "gen": n} for i in range(RUN_SIZE)]


@pytest.mark.parametrize("kind", ATOMIC_TYPES)
def test_readers_never_see_a_mix_during_commits(store: Store, kind: CollectionType) -> None:
    """A reader polling the live data while 4 runs commit sees only whole states."""
    spec = spec_for(kind, "gens", keep=2)
    store_run(strategy_for(store, spec), "run-0", generation(0))
    reader = CollectionReader(store)
    stop = threading.Event()
    seen: list[tuple[int, frozenset[object]]] = []
    errors: list[BaseException] = []

    def read_loop() -> None:
        try:
            while not stop.is_set():
                records = list(reader.find("gens"))
                seen.append((len(records), frozenset(r["gen"] for r in records)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read_loop)
    thread.start()
    try:
        for n in range(1, 4):
            store_run(strategy_for(store, spec), f"run-{n}", generation(n))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors
    assert len(seen) >= 2
    for size, gens in seen:
        if kind in (CollectionType.NORMAL, CollectionType.VERSIONED):
            assert size == RUN_SIZE and len(gens) == 1  # exactly one whole generation
        elif kind == CollectionType.UPSERTED_VERSIONED:
            assert size == RUN_SIZE and len(gens) == 1  # every key replaced at once
        else:  # accumulative: whole runs appended
            assert size % RUN_SIZE == 0 and size // RUN_SIZE == len(gens)


def test_upserted_merge_interrupted_is_replayed_by_next_run(store: Store) -> None:
    spec = spec_for(CollectionType.UPSERTED, "users")
    store_run(strategy_for(store, spec), "run-1", [{"id": 1, "v": 1}, {"id": 2, "v": 1}])
    run = strategy_for(store, spec).begin("run-2")
    big = [{"id": i, "v": 2} for i in range(2, 1202)]  # more than a batch: staged
    run.write(big[:1000])
    run.write(big[1000:])
    # The process dies right after marking the merge as committed, before applying it.
    assert Catalog(store).mark_committing("users", "run-2")
    assert canonical(list(CollectionReader(store).find("users"))) == canonical(
        [{"id": 1, "v": 1}, {"id": 2, "v": 1}]
    )
    store_run(strategy_for(store, spec), "run-3", [{"id": 4000, "v": 3}])
    got = list(CollectionReader(store).find("users"))
    assert got == [{"id": 1, "v": 1}, *big, {"id": 4000, "v": 3}]
    assert CollectionReader(store).entry("users").records == 1202
    assert CollectionReader(store).count("users") == 1202
    assert store.db[store.staging_name("users")].count_documents({}) == 0


@pytest.mark.parametrize("kind", list(CollectionType))
def test_overlapping_runs_conflict_instead_of_losing_data(
    store: Store, kind: CollectionType
) -> None:
    """Without the job lease two runs may overlap. The later ``begin`` takes the earlier
    run for crashed and cleans it up; the earlier run then fails at commit instead of
    publishing damaged data. Never a mix, never a silent loss."""
    spec = spec_for(kind, "users")
    store_run(strategy_for(store, spec), "run-0", [{"id": 0}])
    first = strategy_for(store, spec).begin("run-1")
    first.write([{"id": 1}])
    second = strategy_for(store, spec).begin("run-2")
    second.write([{"id": 2}])
    first.write([{"id": 11}])
    model = Model(spec)
    model.run([{"id": 0}])
    if kind == CollectionType.UPSERTED:  # merges of small runs commute: both apply
        first.commit()
        second.commit()
        model.run([{"id": 1}, {"id": 11}])
        model.run([{"id": 2}])
        assert canonical(list(CollectionReader(store).find("users"))) == canonical(model.live)
        return
    with pytest.raises(CommitConflictError):
        first.commit()
    if kind == CollectionType.ACCUMULATIVE:
        # Both runs wrote into the same id range; first's abort took second's
        # records too, which second notices: neither commits.
        with pytest.raises(CommitConflictError):
            second.commit()
    else:
        second.commit()
        model.run([{"id": 2}])
    assert canonical(list(CollectionReader(store).find("users"))) == canonical(model.live)
    entry = CollectionReader(store).entry("users")
    assert not entry.runs
    assert CollectionReader(store).count("users") == entry.records == len(model.live)


def test_gc_drops_orphans_and_expired_retired_data(store: Store) -> None:
    spec = spec_for(CollectionType.NORMAL, "users")
    store_run(strategy_for(store, spec, retire_grace_s=3600), "run-1", [{"id": 1}])
    store_run(strategy_for(store, spec, retire_grace_s=3600), "run-2", [{"id": 2}])
    orphan = f"{DATA_PREFIX}gone.live-123456789abc"
    store.db[orphan].insert_one({"x": 1})
    in_progress = strategy_for(store, spec).begin("run-3")
    in_progress.write([{"id": 3}])
    dry = collect_garbage(store, retire_grace_s=0, dry_run=True)
    assert dry.orphans == [orphan] and dry.retired == []
    report = collect_garbage(store, retire_grace_s=0)
    assert report.orphans == [orphan]
    assert len(report.retired) == 1
    entry = CollectionReader(store).entry("users")
    remaining = {n for n in store.db.list_collection_names() if n.startswith(DATA_PREFIX)}
    assert remaining == entry.physicals()  # the live data and run-3's staging
    in_progress.commit()
    assert list(CollectionReader(store).find("users")) == [{"id": 3}]
