"""Commit guards: a run whose output breaks a guard commits nothing, on every
collection type, against the session's real MongoDB-wire server; through the runner
the history names the guard with its figures, the metric counts it, and ``force``
overrides once."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from contracts.jobs import (
    SHRINKING_TYPES,
    SIZE_GUARD_TYPES,
    CollectionType,
    Guards,
    JobDefinition,
)
from contracts.messages import RunJob
from slurp.settings import Settings
from storage.errors import GuardFailed
from storage.guards import RunGuards
from storage.history import History
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import DATA_PREFIX, Store
from storage.strategies import strategy_for
from tests.storage_model import spec_for
from workers.errors import RunFailed
from workers.local import local_runner
from workers.metrics import RunMetrics

TYPES = list(CollectionType)
BASE = [{"id": i, "name": f"user {i}", "email": f"u{i}@example.org"} for i in range(10)]


def snapshot(store: Store, name: str) -> tuple[list[dict[str, Any]], set[str]]:
    """The live records and every physical data collection: what must not change."""
    data = {n for n in store.db.list_collection_names() if n.startswith(DATA_PREFIX)}
    return list(CollectionReader(store).find(name)), data


def guarded_run(
    store: Store, kind: CollectionType, out: list[dict[str, Any]], **guards: Any
) -> Any:
    strategy = strategy_for(store, spec_for(kind, "users"), retire_grace_s=0)
    return store_run(strategy, f"run-{len(out)}-{id(out)}", out, guards=RunGuards(Guards(**guards)))


@pytest.mark.parametrize("kind", TYPES)
def test_failed_guards_leave_the_data_untouched(store: Store, kind: CollectionType) -> None:
    store_run(strategy_for(store, spec_for(kind, "users"), retire_grace_s=0), "base", BASE)
    before = snapshot(store, "users")
    cases: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
        ("min_records", BASE[:2], {"min_records": 5}),
        ("max_records", BASE * 3, {"max_records": 12}),
        ("required_fields", [*BASE[:3], {"id": 99, "name": None}],
         {"required_fields": ["email", "name"]}),
        ("json_schema", [*BASE[:2], {"id": "x", "name": 1}], {"json_schema": {
            "type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}),
        ("unique", [*BASE[:4], {**BASE[1], "name": "again"}], {"unique": ["id"]}),
    ]  # fmt: skip
    if kind in SHRINKING_TYPES:
        cases.append(("max_drop_pct", BASE[:5], {"max_drop_pct": 20}))
    if kind in SIZE_GUARD_TYPES:  # 10 more records: +100 %
        more = [{"id": 10 + i} for i in range(10)]
        cases.append(("max_growth_pct", BASE + more, {"max_growth_pct": 50}))
    for name, out, guards in cases:
        with pytest.raises(GuardFailed) as failure:
            guarded_run(store, kind, out, **guards)
        assert failure.value.guard == name, name
        assert snapshot(store, "users") == before, name


@pytest.mark.parametrize("kind", TYPES)
def test_passing_guards_commit(store: Store, kind: CollectionType) -> None:
    guards: dict[str, Any] = {
        "min_records": 1, "max_records": 100, "required_fields": ["email"], "unique": ["id"],
        "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }  # fmt: skip
    if kind in SHRINKING_TYPES:
        guards["max_drop_pct"] = 50
    if kind in SIZE_GUARD_TYPES:
        guards["max_growth_pct"] = 100
    guarded_run(store, kind, BASE, **guards)  # from an empty collection any size passes
    result = guarded_run(store, kind, BASE[:6], **guards)  # a 40 % drop at most
    assert result.records_written == 6


def test_record_violations_name_their_positions(store: Store) -> None:
    out = [{"id": i, "email": None if i % 3 == 0 else "x"} for i in range(7)]
    with pytest.raises(GuardFailed) as failure:
        guarded_run(store, CollectionType.NORMAL, out, required_fields=["email", "address.city"])
    exc = failure.value
    assert exc.guard == "required_fields"
    # max_violations (10) reached: stopped early, the first ten reported in order
    assert exc.violations[:3] == [
        (0, "field 'email' is null"),
        (0, "field 'address.city' is missing"),
        (1, "field 'address.city' is missing"),
    ]
    assert len(exc.violations) == 10 and exc.figures["stopped_early"] is True
    assert "position 0: field 'email' is null" in str(exc)


def test_unique_reports_the_first_record_and_counts_missing_as_null(store: Store) -> None:
    out = [{"id": 1, "k": "a"}, {"id": 2, "k": "b"}, {"id": 1, "k": "a"}, {"id": 3}, {"id": 4}]
    with pytest.raises(GuardFailed) as failure:
        guarded_run(store, CollectionType.UPSERTED, out, unique=["k"], max_violations=5)
    assert failure.value.violations == [
        (2, 'repeats k="a" of the record at position 0'),
        (4, "repeats k=null of the record at position 3"),
    ]
    assert failure.value.figures["violations"] == 2
    # booleans are not numbers; a compound key compares whole
    guarded_run(store, CollectionType.UPSERTED, [{"id": 1, "k": True}, {"id": 2, "k": 1}],
                unique=["id", "k"])  # fmt: skip


def test_schema_violation_says_where(store: Store) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}
    with pytest.raises(GuardFailed) as failure:
        guarded_run(store, CollectionType.VERSIONED, [{"age": 3}, {"age": -1}], json_schema=schema)
    assert failure.value.violations == [(1, "at $.age: -1 is less than the minimum of 0")]


def test_size_guards_report_their_figures(store: Store) -> None:
    guarded_run(store, CollectionType.VERSIONED, BASE)
    with pytest.raises(GuardFailed) as failure:
        guarded_run(store, CollectionType.VERSIONED, BASE[:3], max_drop_pct=50)
    assert failure.value.figures == {
        "previous": 10, "new": 3, "change_pct": -70.0, "max_drop_pct": 50,
    }  # fmt: skip
    assert "from 10 to 3 (70.0 %)" in str(failure.value)


def test_guard_settings_are_checked_with_the_job() -> None:
    base: dict[str, Any] = {
        "name": "j",
        "datasources": [{"name": "a", "type": "inline", "records": []}],
        "collection": {"type": "upserted", "name": "c", "upsert_key": "id"},
    }
    with pytest.raises(ValidationError, match="max_drop_pct compares a new data set"):
        JobDefinition.model_validate({**base, "guards": {"max_drop_pct": 10}})
    versioned = {"type": "upserted_versioned", "name": "c", "upsert_key": "id", "keep_versions": 2}
    with pytest.raises(ValidationError, match="never has fewer records"):
        JobDefinition.model_validate(
            {**base, "collection": versioned, "guards": {"max_drop_pct": 10}}
        )
    JobDefinition.model_validate({**base, "collection": versioned, "guards": {"max_growth_pct": 1}})
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        JobDefinition.model_validate({**base, "guards": {"json_schema": {"type": 5}}})
    with pytest.raises(ValidationError, match="above max_records"):
        JobDefinition.model_validate({**base, "guards": {"min_records": 5, "max_records": 1}})
    with pytest.raises(ValidationError, match="field paths"):
        JobDefinition.model_validate({**base, "guards": {"unique": ["$id"]}})
    # a schema given as JSON text is the same guard; stored as text (MongoDB would take
    # '$ref' for a DBRef), read back as an object
    job = JobDefinition.model_validate(
        {**base, "guards": {"json_schema": '{"$ref": "#/$defs/r", "$defs": {"r": {}}}'}}
    )
    dumped = job.model_dump(mode="json")
    assert isinstance(dumped["guards"]["json_schema"], str)
    assert JobDefinition.model_validate(dumped) == job


# -- through the runner: history, metric, force ----------------------------------------


def job_with_guards(kind: CollectionType = CollectionType.NORMAL, **guards: Any) -> JobDefinition:
    return JobDefinition.model_validate(
        {
            "name": "people",
            "datasources": [{"name": "people", "type": "inline", "records": BASE[:3]}],
            "collection": spec_for(kind, "people").model_dump(mode="json"),
            "guards": guards,
            "retry": {"max_retries": 3, "min_backoff_s": 0.1, "max_backoff_s": 0.1},
        }
    )


def run_locally(store: Store, mongo_url: str, job: JobDefinition, **message: Any) -> dict[str, Any]:
    from storage.jobs import JobRegistry

    JobRegistry(store).put(job)
    settings = Settings.model_validate({"mongo_url": mongo_url, "mongo_db": store.db.name})
    registry = CollectorRegistry()
    runner = local_runner(settings, store, metrics=RunMetrics(registry), can_retry=True)
    run = RunJob(job=job.name, **message)
    try:
        runner.handle(run.model_dump(mode="json"), attempt=1)
    except RunFailed as exc:
        assert not exc.will_retry  # a guard is not retried by default, retries left or not
    doc = History(store).get(run.run_id)
    assert doc is not None
    doc["_metrics"] = registry
    return doc


def test_guard_failure_in_history_and_metric_then_force(store: Store, mongo_url: str) -> None:
    job = job_with_guards(min_records=5)
    doc = run_locally(store, mongo_url, job)
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "GuardFailed"
    assert doc["error"]["message"] == (
        "guard min_records failed: the run wrote 3 records, fewer than min_records 5"
    )
    assert doc["error"]["guard"] == {
        "name": "min_records", "figures": {"records": 3, "min_records": 5}, "violations": [],
    }  # fmt: skip
    registry: CollectorRegistry = doc["_metrics"]
    labels = {"slurp_job": "people", "guard": "min_records"}
    assert registry.get_sample_value("slurp_guard_failures_total", labels) == 1
    assert list(CollectionReader(store).find("people")) == []  # nothing committed

    forced = run_locally(store, mongo_url, job, force=True, requested_by="ops")
    assert forced["status"] == "succeeded" and forced["force"] is True
    assert forced["records_written"] == 3
    assert len(list(CollectionReader(store).find("people"))) == 3
    assert doc["force"] is False


def test_record_guard_failure_lists_violations_in_history(store: Store, mongo_url: str) -> None:
    job = job_with_guards(CollectionType.UPSERTED, required_fields=["phone"], max_violations=2)
    doc = run_locally(store, mongo_url, job)
    guard = doc["error"]["guard"]
    assert guard["name"] == "required_fields"
    assert guard["violations"] == [
        {"position": 0, "problem": "field 'phone' is missing"},
        {"position": 1, "problem": "field 'phone' is missing"},
    ]
    assert guard["figures"]["stopped_early"] is True


def test_guard_retry_when_the_job_asks(store: Store, mongo_url: str) -> None:
    from storage.jobs import JobRegistry

    job = job_with_guards(min_records=5, retry=True)
    JobRegistry(store).put(job)
    settings = Settings.model_validate({"mongo_url": mongo_url, "mongo_db": store.db.name})
    runner = local_runner(settings, store, can_retry=True)
    run = RunJob(job=job.name)
    with pytest.raises(RunFailed) as failure:
        runner.handle(run.model_dump(mode="json"), attempt=1)
    assert failure.value.will_retry
    assert History(store).get(run.run_id)["status"] == "retrying"  # type: ignore[index]
