"""Event log and the execution history projected from it (real MongoDB-wire server)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import Event, JobCancelled, JobFailed, JobRejected, JobStarted, JobSucceeded
from storage.events import EventLog
from storage.history import History, _stage, fold
from storage.store import Store

T0 = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)


def lifecycle(run_id: str = "run-1", job: str = "users") -> list[Event]:
    """Attempt 1 fails and will retry, attempt 2 succeeds."""
    return [
        JobStarted(run_id=run_id, job=job, attempt=1, at=T0, trigger="schedule", scheduled_for=T0),
        JobFailed(
            run_id=run_id,
            job=job,
            attempt=1,
            at=T0 + timedelta(seconds=2),
            error_type="FetchError",
            message="HTTP 503",
            will_retry=True,
            duration_s=2,
        ),
        JobStarted(
            run_id=run_id,
            job=job,
            attempt=2,
            at=T0 + timedelta(seconds=10),
            trigger="schedule",
            scheduled_for=T0,
        ),
        JobSucceeded(
            run_id=run_id,
            job=job,
            attempt=2,
            at=T0 + timedelta(seconds=13),
            records_read=10,
            records_written=9,
            inserted=7,
            updated=2,
            version=4,
            duration_s=3.0,
        ),
    ]


def final_doc(history: History, run_id: str = "run-1") -> dict[str, object]:
    doc = history.get(run_id)
    assert doc is not None
    return doc


def test_lifecycle_projection(store: Store) -> None:
    history = History(store)
    for event in lifecycle():
        history.apply(event)
    doc = final_doc(history)
    assert doc["status"] == "succeeded"
    assert doc["attempts"] == 2
    assert doc["trigger"] == "schedule"
    assert doc["started_at"] == T0 and doc["first_at"] == T0
    assert doc["finished_at"] == T0 + timedelta(seconds=13)
    assert (doc["records_read"], doc["records_written"], doc["inserted"], doc["updated"]) == (
        10,
        9,
        7,
        2,
    )
    assert doc["version"] == 4 and doc["duration_s"] == 3.0
    assert doc["error"] is None


def test_every_order_and_duplicates_give_the_same_history(store: Store) -> None:
    events = lifecycle()
    history = History(store)
    for event in events:
        history.apply(event)
    expected = final_doc(history)
    for n, order in enumerate(itertools.permutations(events)):
        run_id = f"perm-{n}"
        for event in order + order[:2]:  # and some events applied twice
            history.apply(event.model_copy(update={"run_id": run_id}))
        got = final_doc(history, run_id)
        assert {**got, "_id": "run-1"} == expected, order


def test_failure_states(store: Store) -> None:
    history = History(store)
    history.apply(JobStarted(run_id="r", job="users", at=T0))
    assert final_doc(history, "r")["status"] == "running"
    history.apply(
        JobFailed(
            run_id="r",
            job="users",
            at=T0,
            error_type="BadRecordError",
            message="record at position 3: upsert key 'id' is missing",
        )
    )
    doc = final_doc(history, "r")
    assert doc["status"] == "failed"
    assert doc["error"] == {
        "type": "BadRecordError",
        "message": "record at position 3: upsert key 'id' is missing",
    }
    history.apply(JobRejected(run_id="x", job="nope", at=T0, reason="unknown job 'nope'"))
    assert final_doc(history, "x")["status"] == "rejected"


def test_event_log_is_idempotent_and_rebuilds_history(store: Store) -> None:
    log, history = EventLog(store), History(store)
    log.ensure_indexes()
    events = lifecycle("a") + lifecycle("b", job="cities")[:1]
    for event in events:
        assert log.append(event) is True
        history.apply(event)
    assert log.append(events[0]) is False  # same event_id: stored once
    assert log.count() == len(events)
    assert [e.event_id for e in log.for_run("a")] == [e.event_id for e in events[:4]]
    before = {d["_id"]: d for d in history.last_runs(limit=10)}
    store.db["slurp_history"].update_one({"_id": "a"}, {"$set": {"status": "garbage"}})
    assert history.rebuild(log) == len(events)
    assert {d["_id"]: d for d in history.last_runs(limit=10)} == before


def test_last_runs_and_retention(store: Store) -> None:
    history = History(store)
    history.ensure_indexes()
    for i in range(6):
        history.apply(JobStarted(run_id=f"u{i}", job="users", at=T0 + timedelta(days=i)))
    history.apply(JobStarted(run_id="c0", job="cities", at=T0))
    assert [d["_id"] for d in history.last_runs("users", limit=3)] == ["u5", "u4", "u3"]
    report = history.prune(
        max_age=timedelta(days=4), max_runs_per_job=2, now=T0 + timedelta(days=5)
    )
    assert (report.by_age, report.by_count) == (2, 3)  # u0, c0 by age; u1-u3 by count
    assert [d["_id"] for d in history.last_runs(limit=10)] == ["u5", "u4"]


@pytest.mark.parametrize("bad", [{"kind": "started"}, {"kind": "nope", "run_id": "r"}])
def test_malformed_stored_event_is_reported(store: Store, bad: dict[str, object]) -> None:
    log = EventLog(store)
    store.db["slurp_events"].insert_one({"_id": "e1", "at": T0, **bad})
    with pytest.raises(ValueError, match="validation error"):
        list(log.replay())


def test_abandoned_then_redelivered_in_any_order(store: Store) -> None:
    """A start whose worker died is abandoned; the redelivered start (delivery 2) and
    its success supersede it, whatever order the events are applied in; each start
    keeps its own entry in the attempt log."""
    from contracts.events import JobAbandoned

    events: list[Event] = [
        JobStarted(run_id="r", job="users", at=T0, worker="a:1"),
        JobAbandoned(run_id="r", job="users", at=T0 + timedelta(seconds=70), reason="gone"),
        JobStarted(
            run_id="r", job="users", delivery=2, at=T0 + timedelta(seconds=80), worker="b:2"
        ),
        JobSucceeded(run_id="r", job="users", delivery=2, at=T0 + timedelta(seconds=90)),
    ]
    history = History(store)
    for n, order in enumerate(itertools.permutations(events)):
        run_id = f"abandon-{n}"
        for event in order:
            history.apply(event.model_copy(update={"run_id": run_id}))
        doc = final_doc(history, run_id)
        assert doc["status"] == "succeeded", order
        log = doc["attempt_log"]
        assert isinstance(log, dict)
        assert log["1:1"]["worker"] == "a:1" and log["1:1"]["abandoned_at"]
        assert "outcome" not in log["1:1"]
        assert log["1:2"]["worker"] == "b:2" and log["1:2"]["outcome"] == "succeeded"
    # Abandoned alone, and a late end of the same start, which wins over it.
    history.apply(events[0].model_copy(update={"run_id": "late"}))
    history.apply(events[1].model_copy(update={"run_id": "late"}))
    assert final_doc(history, "late")["status"] == "abandoned"
    late_end = JobFailed(
        run_id="late", job="users", error_type="X", message="m", at=T0 + timedelta(seconds=99)
    )
    history.apply(late_end)
    assert final_doc(history, "late")["status"] == "failed"


def _batches() -> list[list[Event]]:
    """Batches that open a run (hold its first start or a rejection), in many orders."""
    events = lifecycle()
    cancelled = JobCancelled(
        run_id="c", job="users", at=T0 + timedelta(seconds=1), stage="running", requested_by="ann"
    )
    shapes: list[list[Event]] = [
        [JobRejected(run_id="x", job="nope", at=T0, reason="unknown job 'nope'")],
        [events[0]],
        [JobStarted(run_id="c", job="users", at=T0, worker="w1"), cancelled],
        [
            JobStarted(run_id="f", job="users", at=T0, params={"day": "mon"}, force=True),
            JobFailed(run_id="f", job="users", at=T0, error_type="E", message="m", duration_s=1),
        ],
    ]
    for size in range(1, len(events) + 1):
        for order in itertools.permutations(events, size):
            if events[0] in order:
                shapes.append(list(order))
    return shapes


def test_a_batch_opening_a_run_is_inserted_as_the_pipeline_would_write_it(store: Store) -> None:
    """The insert path (``fold``) gives exactly the document of the pipeline update."""
    history = History(store)
    raw = store.db["slurp_history"]
    for n, batch in enumerate(_batches()):
        ours, theirs = f"fold-{n}", f"pipeline-{n}"
        history.apply_many([e.model_copy(update={"run_id": ours}) for e in batch])
        stages = [_stage(e.model_copy(update={"run_id": theirs})) for e in batch]
        raw.update_one({"_id": theirs}, stages, upsert=True)
        assert {**final_doc(history, ours), "_id": theirs} == final_doc(history, theirs), batch
    # The run has a document already: the insert fails on _id, the update applies it.
    history.apply_many(lifecycle("again")[:2])
    history.apply_many(lifecycle("again"))
    assert {**final_doc(history, "again"), "_id": "run-1"} == _applied_one_by_one(store)


def _applied_one_by_one(store: Store) -> dict[str, object]:
    history = History(store)
    for event in lifecycle("one-by-one"):
        history.apply(event)
    return {**final_doc(history, "one-by-one"), "_id": "run-1"}


def test_fold_refuses_operators_it_does_not_know() -> None:
    with pytest.raises(ValueError, match=r"\$concat"):
        fold("r", [{"$set": {"a": {"$concat": ["x", "y"]}}}])
    with pytest.raises(ValueError, match="set stages only"):
        fold("r", [{"$unset": "a"}])
