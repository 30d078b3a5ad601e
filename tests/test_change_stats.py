"""Change statistics of committed runs (inserted, updated, unchanged, removed, total)
on every collection type, against an oracle, on the session's real MongoDB-wire
server; the previous data is read at most once per run; the history and the metrics
carry them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import MongoClient, monitoring

from contracts.jobs import CollectionType, JobDefinition
from contracts.messages import RunJob
from slurp.settings import Settings
from storage.history import History
from storage.jobs import JobRegistry
from storage.runs import store_run
from storage.store import Store
from storage.strategies import CommitResult, strategy_for
from tests.storage_model import Model, spec_for
from workers.local import local_runner
from workers.metrics import RunMetrics

TYPES = list(CollectionType)
A1 = {"id": 1, "name": "Ann"}
B1 = {"id": 2, "name": "Bob"}
C1 = {"id": 3, "name": "Cid"}
B2 = {"id": 2, "name": "Bobby"}
D1 = {"id": 4, "name": "Dee"}
#: Runs covering every kind of change: same content again, a changed record, a new
#: one, records gone, and a duplicate (normal keeps both copies).
RUNS = [[A1, B1, C1], [A1, B2, D1], [A1, A1, B2], [B2]]


def oracle(
    kind: CollectionType, before: list[dict[str, Any]], out: list[dict[str, Any]]
) -> dict[str, int]:
    """The expected statistics of one run with output ``out`` over data ``before``."""
    if kind in (CollectionType.ACCUMULATIVE, CollectionType.ACCUMULATIVE_VERSIONED):
        return {"inserted": len(out), "updated": 0, "unchanged": 0, "removed": 0}
    if kind.upserts:
        stored = {r["id"]: r for r in before}
        last = {r["id"]: r for r in out}  # the last duplicate wins
        inserted = sum(key not in stored for key in last)
        unchanged = sum(key in stored and stored[key] == r for key, r in last.items())
        return {"inserted": inserted, "updated": len(last) - inserted - unchanged,
                "unchanged": unchanged, "removed": 0}  # fmt: skip
    old = Counter(json.dumps(r) for r in before)
    new = Counter(json.dumps(r) for r in out)
    unchanged = sum((old & new).values())
    return {"inserted": len(out) - unchanged, "updated": 0, "unchanged": unchanged,
            "removed": len(before) - unchanged}  # fmt: skip


def stats(result: CommitResult) -> dict[str, int | None]:
    return {"inserted": result.inserted, "updated": result.updated,
            "unchanged": result.unchanged, "removed": result.removed}  # fmt: skip


@pytest.mark.parametrize("kind", TYPES)
def test_statistics_match_the_oracle(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "people")
    model = Model(spec)
    for number, out in enumerate(RUNS, start=1):
        expected = oracle(kind, model.live, out)
        result = store_run(strategy_for(store, spec, retire_grace_s=0), f"run-{number}", out)
        model.run(out)
        assert stats(result) == expected, f"run {number}"
        assert result.records_total == len(model.live)


@pytest.mark.parametrize("kind", [CollectionType.NORMAL, CollectionType.VERSIONED])
def test_statistics_off(store: Store, kind: CollectionType) -> None:
    spec = spec_for(kind, "people").model_copy(update={"change_stats": False})
    for number, out in enumerate(RUNS[:2], start=1):
        result = store_run(strategy_for(store, spec), f"run-{number}", out)
    assert stats(result) == {"inserted": 3, "updated": 0, "unchanged": None, "removed": None}


def test_nested_values_and_field_order(store: Store) -> None:
    """Content is compared as stored: nested values count, field order counts."""
    spec = spec_for(CollectionType.NORMAL, "docs")
    first = [{"a": 1, "b": {"c": [1, 2.5, None]}}, {"a": 2, "b": "x"}, {"a": 3, "b": True}]
    store_run(strategy_for(store, spec), "run-1", first)
    again = [{"a": 1, "b": {"c": [1, 2.5, None]}}, {"b": "x", "a": 2}, {"a": 3, "b": 1}]
    result = store_run(strategy_for(store, spec), "run-2", again)
    assert stats(result) == {"inserted": 2, "updated": 0, "unchanged": 1, "removed": 2}


class FindCounter(monitoring.CommandListener):
    """Counts ``find`` commands per collection."""

    def __init__(self) -> None:
        self.finds: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds[str(event.command["find"])] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted(store: Store, mongo_url: str) -> Iterator[tuple[Store, FindCounter]]:
    listener = FindCounter()
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongo_url, tz_aware=True, event_listeners=[listener]
    )
    yield Store(client[store.db.name]), listener
    client.close()


@pytest.mark.parametrize("kind", TYPES)
def test_previous_data_is_read_at_most_once(
    counted: tuple[Store, FindCounter], kind: CollectionType
) -> None:
    store, listener = counted
    spec = spec_for(kind, "people")
    records = [{"id": i, "n": i} for i in range(2500)]  # several batches
    store_run(strategy_for(store, spec), "run-1", records)
    previous = store.catalog.find_one({"_id": "people"})["live"]  # type: ignore[index]
    listener.finds.clear()
    result = store_run(strategy_for(store, spec), "run-2", records)
    assert listener.finds[previous] <= 1, listener.finds
    if kind in (CollectionType.NORMAL, CollectionType.VERSIONED):
        assert listener.finds[previous] == 1  # the one read the comparison costs
    assert result.unchanged == (0 if kind.value.startswith("accumulative") else 2500)


def test_runner_records_statistics_in_history_and_metrics(store: Store, mongo_url: str) -> None:
    settings = Settings.model_validate({"mongo_url": mongo_url, "mongo_db": store.db.name})
    registry = CollectorRegistry()
    runner = local_runner(settings, store, metrics=RunMetrics(registry), can_retry=False)
    docs = []
    for out in RUNS[:2]:
        job = JobDefinition.model_validate({
            "name": "people", "datasources": [{"name": "p", "type": "inline", "records": out}],
            "collection": {"type": "upserted", "name": "people", "upsert_key": "id"},
        })  # fmt: skip
        JobRegistry(store).put(job)
        run = RunJob(job="people")
        runner.handle(run.model_dump(mode="json"), attempt=1)
        docs.append(History(store).get(run.run_id) or {})
    fields = ("inserted", "updated", "unchanged", "removed", "total", "records_written")
    assert [tuple(doc[f] for f in fields) for doc in docs] == [
        (3, 0, 0, 0, 3, 3),
        (1, 1, 1, 0, 4, 3),
    ]
    sample = registry.get_sample_value
    labels = {"slurp_job": "people", "collection_type": "upserted"}
    assert sample("slurp_records_changed_total", {**labels, "change": "inserted"}) == 4
    assert sample("slurp_records_changed_total", {**labels, "change": "updated"}) == 1
    assert sample("slurp_records_changed_total", {**labels, "change": "unchanged"}) == 1
