"""Version restore, pinning and retention, on the session's real MongoDB-wire server:
a restore is a new version (the list keeps the trail), atomic for readers, shares the
restored data instead of copying it; normal collections restore their grace copy."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from contracts.jobs import CollectionSpec, CollectionType
from storage.catalog import Catalog
from storage.errors import CommitConflictError, VersionNotFoundError
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import DATA_PREFIX, Store
from storage.strategies import strategy_for
from storage.versions import NotRestorable, Versions
from tests.storage_model import canonical, spec_for

VERSIONED = [t for t in CollectionType if t.versioned]
OUTS = [[{"id": i, "run": run} for i in range(3 + run)] for run in range(1, 4)]


def run_all(
    store: Store, spec: CollectionSpec, outs: list[list[dict[str, Any]]], first: int = 1
) -> None:
    for number, out in enumerate(outs, start=first):
        store_run(strategy_for(store, spec), f"run-{number}", out)


def live(store: Store, name: str = "c") -> list[str]:
    return canonical(list(CollectionReader(store).find(name)))


def version_data(store: Store, number: int, name: str = "c") -> list[str]:
    return canonical(list(CollectionReader(store).find(name, version=number)))


def data_collections(store: Store) -> set[str]:
    return {n for n in store.db.list_collection_names() if n.startswith(DATA_PREFIX)}


@pytest.mark.parametrize("kind", VERSIONED)
def test_restore_is_a_new_version_sharing_the_data(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "c", keep=3)
    run_all(store, spec, OUTS)
    v1 = version_data(store, 1)
    physicals = data_collections(store)
    restored = Versions(store).restore("c", 1, by="ops")
    assert (restored.version, restored.restored_from) == (4, 1)
    assert live(store) == v1
    versions = CollectionReader(store).versions("c")
    # keep_versions 3: version 1 is pruned from the list, its data lives on as version 4
    assert [(v.number, v.restored_from, v.restored_by) for v in versions] == [
        (2, None, ""), (3, None, ""), (4, 1, "ops"),
    ]  # fmt: skip
    assert versions[-1].run_id.startswith("restore:") and versions[-1].records == len(v1)
    assert data_collections(store) == physicals  # nothing copied, nothing dropped
    entry = Catalog(store).require("c")
    assert versions[-1].physical not in {p for p, _ in entry.retired}
    # the next run builds on the restored version (upserted/accumulative versioned)
    store_run(strategy_for(store, spec), "run-5", [{"id": 99}])
    expected = {
        CollectionType.VERSIONED: 1,
        CollectionType.UPSERTED_VERSIONED: len(v1) + 1,
        CollectionType.ACCUMULATIVE_VERSIONED: len(v1) + 1,
    }[kind]
    assert CollectionReader(store).count("c") == expected


def test_restore_refusals(store: Store) -> None:
    run_all(store, spec_for(CollectionType.VERSIONED, "c", keep=2), OUTS)
    versions = Versions(store)
    with pytest.raises(VersionNotFoundError, match="kept versions: 2, 3"):
        versions.restore("c", 1)
    with pytest.raises(NotRestorable, match="is the live data already"):
        versions.restore("c", 3)
    for kind in (CollectionType.UPSERTED, CollectionType.ACCUMULATIVE):
        run_all(store, spec_for(kind, kind.value), OUTS[:1])
        with pytest.raises(NotRestorable, match="keeps no versions"):
            versions.restore(kind.value, 1)
        with pytest.raises(NotRestorable, match="only normal collections"):
            versions.restore_previous(kind.value)


def test_readers_never_see_a_mix(store: Store) -> None:
    """Restores back and forth while a reader reads whole data sets: every read is one
    version or the other."""
    spec = spec_for(CollectionType.VERSIONED, "c", keep=10)
    big = [[{"id": i, "v": v} for i in range(300)] for v in ("a", "b")]
    run_all(store, spec, big)
    allowed = {tuple(version_data(store, 1)), tuple(version_data(store, 2))}
    seen: list[tuple[str, ...]] = []
    stop = threading.Event()

    def read() -> None:
        reader = CollectionReader(store)
        while not stop.is_set():
            seen.append(tuple(canonical(list(reader.find("c")))))

    thread = threading.Thread(target=read)
    thread.start()
    versions = Versions(store)
    try:
        for i in range(10):
            versions.restore("c", 1 if i % 2 == 0 else 2)
    finally:
        stop.set()
        thread.join()
    assert seen and set(seen) <= allowed


def test_keep_versions_change_applies_at_next_commit_and_pins_survive(store: Store) -> None:
    run_all(store, spec_for(CollectionType.VERSIONED, "c", keep=3), OUTS)
    Versions(store).pin("c", 2)
    smaller = spec_for(CollectionType.VERSIONED, "c", keep=1)
    # the new keep_versions is stored when the next run begins, applied when it commits
    writer = strategy_for(store, smaller).begin("run-4")
    writer.write([{"id": 1}])
    assert [v.number for v in CollectionReader(store).versions("c")] == [1, 2, 3]
    writer.commit()
    versions = CollectionReader(store).versions("c")
    assert [(v.number, v.pinned) for v in versions] == [(2, True), (4, False)]
    assert version_data(store, 2) == canonical(OUTS[1])
    Versions(store).pin("c", 2, pinned=False)
    run_all(store, smaller, [[{"id": 2}]], first=5)
    assert [v.number for v in CollectionReader(store).versions("c")] == [5]
    with pytest.raises(VersionNotFoundError):
        Versions(store).pin("c", 2)


def test_a_run_in_progress_loses_to_a_restore(store: Store) -> None:
    spec = spec_for(CollectionType.UPSERTED_VERSIONED, "c", keep=3)
    run_all(store, spec, OUTS[:2])
    writer = strategy_for(store, spec).begin("run-3")
    writer.write([{"id": 50}])
    Versions(store).restore("c", 1)
    with pytest.raises(CommitConflictError):
        writer.commit()
    assert live(store) == canonical(OUTS[0])


def test_normal_restores_its_grace_copy_and_back(store: Store) -> None:
    spec = spec_for(CollectionType.NORMAL, "c")
    run_all(store, spec, OUTS[:2])
    versions = Versions(store)
    copies = versions.restorable("c")
    assert [(c.index, c.records) for c in copies] == [(1, len(OUTS[0]))]
    assert (copies[0].expires_at - copies[0].retired_at).total_seconds() == 300
    restored = versions.restore_previous("c", by="ops")
    assert restored.records == len(OUTS[0])
    assert live(store) == canonical(OUTS[0])
    assert CollectionReader(store).count("c") == len(OUTS[0])
    # the replaced data is a grace copy in turn: the restore can be undone
    versions.restore_previous("c")
    assert live(store) == canonical(OUTS[1])
    # a run commits over it as usual
    run_all(store, spec, OUTS[2:], first=3)
    assert live(store) == canonical(OUTS[2])


def test_normal_grace_copy_expires(store: Store) -> None:
    spec = spec_for(CollectionType.NORMAL, "c")
    for number, out in enumerate(OUTS[:2], start=1):
        store_run(strategy_for(store, spec, retire_grace_s=0), f"run-{number}", out)
    versions = Versions(store, retire_grace_s=0)
    assert versions.restorable("c") == []
    with pytest.raises(NotRestorable, match="kept 0 s"):
        versions.restore_previous("c")
    run_all(store, spec_for(CollectionType.VERSIONED, "v"), OUTS[:1])
    with pytest.raises(NotRestorable, match="restore a version instead"):
        versions.restore_previous("v")
