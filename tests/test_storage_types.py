"""Contract suite of the six collection types, on a real MongoDB-wire server.

Every test runs once per collection type against the session's SecantusDB server (or
a real MongoDB with ``SLURP_TEST_MONGO_URL``) and compares with ``storage_model``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.jobs import CollectionType
from storage.errors import (
    BadRecordError,
    CollectionTypeMismatch,
    RunAlreadyCommitted,
    VersionNotFoundError,
)
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import DATA_PREFIX, Store
from storage.strategies import strategy_for
from tests.storage_model import Model, canonical, spec_for

TYPES = list(CollectionType)

LEANNE = {"id": 1, "name": "Leanne Graham", "username": "Bret"}
ERVIN = {"id": 2, "name": "Ervin Howell", "username": "Antonette"}
CLEMENTINE = {"id": 3, "name": "Clementine Bauch", "username": "Samantha"}
ERVIN_2 = {"id": 2, "name": "Ervin Howell", "username": "Antonette2"}
PATRICIA = {"id": 4, "name": "Patricia Lebsack", "username": "Karianne"}

RUNS = [[LEANNE, ERVIN], [ERVIN_2, CLEMENTINE], [PATRICIA]]

# What the live data holds after each of the three RUNS, per type (ids in order).
EXPECTED_IDS = {
    CollectionType.NORMAL: [[1, 2], [2, 3], [4]],
    CollectionType.UPSERTED: [[1, 2], [1, 2, 3], [1, 2, 3, 4]],
    CollectionType.ACCUMULATIVE: [[1, 2], [1, 2, 2, 3], [1, 2, 2, 3, 4]],
    CollectionType.VERSIONED: [[1, 2], [2, 3], [4]],
    CollectionType.UPSERTED_VERSIONED: [[1, 2], [1, 2, 3], [1, 2, 3, 4]],
    CollectionType.ACCUMULATIVE_VERSIONED: [[1, 2], [1, 2, 2, 3], [1, 2, 2, 3, 4]],
}


def live(store: Store, name: str) -> list[dict[str, object]]:
    return list(CollectionReader(store).find(name))


def data_collections(store: Store) -> set[str]:
    return {n for n in store.db.list_collection_names() if n.startswith(DATA_PREFIX)}


def failing(records: list[dict[str, object]], after: int) -> Iterator[dict[str, object]]:
    """Yields ``after`` records, then raises like a slurper bug would."""
    for i, record in enumerate(records):
        if i == after:
            raise RuntimeError("slurper exploded")
        yield record


@pytest.mark.parametrize("kind", TYPES)
def test_three_successive_runs(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "users")
    model = Model(spec)
    for number, out in enumerate(RUNS, start=1):
        result = store_run(strategy_for(store, spec, retire_grace_s=0), f"run-{number}", out)
        model.run(out)
        records = live(store, "users")
        assert canonical(records) == canonical(model.live)
        assert sorted(r["id"] for r in records) == EXPECTED_IDS[kind][number - 1]
        assert result.records_written == len(out)
        assert result.records_total == len(model.live)
        assert CollectionReader(store).count("users") == len(model.live)
        assert all("_id" not in r for r in records)  # no internal field leaks
    if kind == CollectionType.UPSERTED:
        assert next(r for r in live(store, "users") if r["id"] == 2) == ERVIN_2
    if kind.versioned:
        reader = CollectionReader(store)
        infos = reader.versions("users")
        assert [v.number for v in infos] == [2, 3]  # keep 2
        assert [v.run_id for v in infos] == ["run-2", "run-3"]
        for info in infos:
            assert info.records == len(model.versions[info.number])
            got = list(reader.find("users", version=info.number))
            assert canonical(got) == canonical(model.versions[info.number])
        with pytest.raises(VersionNotFoundError, match="kept versions: 2, 3"):
            list(reader.find("users", version=1))
    # With a retire grace of 0 nothing but the live data and kept versions remains.
    entry = CollectionReader(store).entry("users")
    assert entry.live in data_collections(store) <= entry.physicals()
    assert not entry.runs


@pytest.mark.parametrize("kind", TYPES)
def test_failure_mid_run_leaves_live_data_unchanged(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "users")
    store_run(strategy_for(store, spec, retire_grace_s=0), "run-1", [LEANNE, ERVIN])
    before = live(store, "users")
    before_collections = data_collections(store)
    big = [{"id": 100 + i, "name": f"user {i}", "username": f"u{i}"} for i in range(2500)]
    with pytest.raises(RuntimeError, match="slurper exploded"):
        # batches of 1000: two batches were written before the failure
        store_run(strategy_for(store, spec, retire_grace_s=0), "run-2", failing(big, 2400))
    assert live(store, "users") == before
    stage = store.staging_name("users")  # upserted: shared, stays (empty) between runs
    assert data_collections(store) - {stage} == before_collections - {stage}  # staging gone
    assert store.db[stage].count_documents({}) == 0
    entry = CollectionReader(store).entry("users")
    assert not entry.runs
    assert CollectionReader(store).count("users") == 2
    if kind.versioned:
        assert [v.number for v in entry.versions] == [1]
    # the next run works normally
    store_run(strategy_for(store, spec, retire_grace_s=0), "run-3", [CLEMENTINE])
    model = Model(spec)
    model.run([LEANNE, ERVIN])
    model.run([CLEMENTINE])
    assert canonical(live(store, "users")) == canonical(model.live)


@pytest.mark.parametrize("kind", TYPES)
def test_crashed_run_is_cleaned_up_by_next_run(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "users")
    store_run(strategy_for(store, spec), "run-1", [LEANNE])
    crashed = strategy_for(store, spec).begin("run-crashed")
    crashed.write([ERVIN, CLEMENTINE])  # ... and the process dies: no commit, no abort
    assert canonical(live(store, "users")) == canonical([LEANNE])  # invisible
    store_run(strategy_for(store, spec), "run-2", [PATRICIA])
    model = Model(spec)
    model.run([LEANNE])
    model.run([PATRICIA])
    assert canonical(live(store, "users")) == canonical(model.live)
    entry = CollectionReader(store).entry("users")
    assert [r.run_id for r in entry.runs] == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("not an object", "position 2: must be a JSON object"),
        ({"id": 9, "$set": 1}, "field name '\\$set' is not storable"),
        ({"id": 9, "a.b": 1}, "field name 'a.b' is not storable"),
        ({"id": 9, "_id": 1}, "field '_id' is reserved"),
        ({"id": 9, "x": float("nan")}, "field 'x': nan is not a JSON number"),
        ({"id": 9, "x": {"$y": 1}}, "field name 'x.\\$y' is not storable"),
        ({"id": 9, "x": object()}, "field 'x': object is not a JSON value"),
        ({"name": "no key"}, None),  # fails only for the upserted types
    ],
)
@pytest.mark.parametrize("kind", TYPES)
def test_bad_record_fails_run_naming_position(
    store: Store, kind: CollectionType, record: object, message: str | None
) -> None:
    spec = spec_for(kind, "users")
    store_run(strategy_for(store, spec), "run-1", [LEANNE])
    out = [ERVIN, CLEMENTINE, record, PATRICIA]
    if message is None and not kind.upserts:
        store_run(strategy_for(store, spec), "run-2", out)
        return
    expected = message or "record at position 2: upsert key 'id' is missing"
    with pytest.raises(BadRecordError, match=expected) as caught:
        store_run(strategy_for(store, spec), "run-2", out)
    assert caught.value.position == 2
    assert canonical(live(store, "users")) == canonical([LEANNE])
    assert not CollectionReader(store).entry("users").runs


@pytest.mark.parametrize("kind", [CollectionType.UPSERTED, CollectionType.UPSERTED_VERSIONED])
def test_duplicate_keys_in_one_run_last_wins(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "users")
    first = {"id": 1, "name": "first"}
    last = {"id": 1, "name": "last"}
    result = store_run(strategy_for(store, spec), "run-1", [first, ERVIN, last])
    assert canonical(live(store, "users")) == canonical([ERVIN, last])
    assert result.records_total == 2


@pytest.mark.parametrize("kind", [CollectionType.UPSERTED, CollectionType.UPSERTED_VERSIONED])
def test_nested_upsert_key(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "users", key="ref.id")
    a = {"ref": {"id": "a"}, "v": 1}
    b = {"ref": {"id": "b"}, "v": 1}
    a2 = {"ref": {"id": "a"}, "v": 2}
    store_run(strategy_for(store, spec), "run-1", [a, b])
    store_run(strategy_for(store, spec), "run-2", [a2])
    assert canonical(live(store, "users")) == canonical([a2, b])
    assert list(CollectionReader(store).find("users", where={"ref.id": "a"})) == [a2]


def test_type_or_key_change_is_refused(store: Store) -> None:
    store_run(strategy_for(store, spec_for(CollectionType.UPSERTED, "users")), "r1", [LEANNE])
    with pytest.raises(CollectionTypeMismatch, match="exists as type 'upserted' keyed by 'id'"):
        store_run(strategy_for(store, spec_for(CollectionType.NORMAL, "users")), "r2", [LEANNE])
    with pytest.raises(CollectionTypeMismatch, match="Use a new collection name"):
        spec = spec_for(CollectionType.UPSERTED, "users", key="username")
        store_run(strategy_for(store, spec), "r3", [LEANNE])
    assert live(store, "users") == [LEANNE]


@pytest.mark.parametrize("keep", [1, 3])
def test_version_pruning(store: Store, keep: int) -> None:
    spec = spec_for(CollectionType.VERSIONED, "cities", keep=keep)
    for n in range(1, 6):
        store_run(strategy_for(store, spec, retire_grace_s=0), f"run-{n}", [{"n": n}])
    reader = CollectionReader(store)
    assert [v.number for v in reader.versions("cities")] == list(range(6 - keep, 6))
    for v in reader.versions("cities"):
        assert list(reader.find("cities", version=v.number)) == [{"n": v.number}]
    assert live(store, "cities") == [{"n": 5}]
    assert len(data_collections(store)) == keep  # pruned versions dropped


def test_retired_data_outlives_the_commit_for_the_grace(store: Store) -> None:
    spec = spec_for(CollectionType.NORMAL, "users")
    store_run(strategy_for(store, spec, retire_grace_s=3600), "run-1", [LEANNE])
    old = CollectionReader(store).entry("users").live
    store_run(strategy_for(store, spec, retire_grace_s=3600), "run-2", [ERVIN])
    entry = CollectionReader(store).entry("users")
    assert [p for p, _ in entry.retired] == [old]
    assert old in data_collections(store)  # a reader that resolved it can still finish


def test_empty_run(store: Store) -> None:
    for kind in TYPES:
        spec = spec_for(kind, f"c_{kind.value}")
        store_run(strategy_for(store, spec), "run-1", [LEANNE])
        result = store_run(strategy_for(store, spec), "run-2", [])
        expected = [] if kind in (CollectionType.NORMAL, CollectionType.VERSIONED) else [LEANNE]
        assert live(store, spec.name) == expected, kind
        assert result.records_written == 0


@pytest.mark.parametrize("kind", TYPES)
def test_a_committed_run_is_never_applied_twice(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "users")
    store_run(strategy_for(store, spec), "run-1", [LEANNE])
    with pytest.raises(RunAlreadyCommitted, match="run run-1 was already committed"):
        store_run(strategy_for(store, spec), "run-1", [LEANNE])
    assert live(store, "users") == [LEANNE]
