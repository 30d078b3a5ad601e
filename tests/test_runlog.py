"""storage.runlog: the event log and the history written in one round trip
(MongoDB 8's client-level bulkWrite), with the semantics of writing them one after
the other: the same documents, the same "fresh" answers, the same failures.

SecantusDB serves bulkWrite but drops its write concern (its ops are not journaled),
so slurp does not use it there (``Store.takes_durable_bulk_write``); no MongoDB 8
server runs on these machines. These tests turn the one-round-trip path on against
SecantusDB to check its semantics; its durability is MongoDB's to keep."""

from __future__ import annotations

import itertools
import logging

import pytest
from pymongo import MongoClient
from pymongo.errors import ClientBulkWriteException

from contracts.events import Event, JobStarted
from storage.events import EventLog
from storage.history import History
from storage.runlog import RunLog
from storage.store import Doc, Store
from tests.test_history import lifecycle
from tests.test_store_concerns import Commands


def _as(run_id: str, events: list[Event]) -> list[Event]:
    """``events`` of run ``run_id`` (event ids made unique to it, copies keep theirs)."""
    return [
        e.model_copy(update={"run_id": run_id, "event_id": f"{run_id}:{e.event_id}"})
        for e in events
    ]


def _two_steps(store: Store) -> RunLog:
    """A RunLog writing as it does on servers without a durable client bulkWrite."""
    store.writes_across = False
    return RunLog(store)


def _one_round_trip(store: Store) -> RunLog:
    """A RunLog writing as it does on MongoDB 8.0+ (see the module's docstring)."""
    store.writes_across = True
    return RunLog(store)


def _deliveries() -> list[list[list[Event]]]:
    """A run's events in batches, in many orders, with batches delivered twice."""
    events = lifecycle()
    shapes: list[list[list[Event]]] = [[events], [events[:2], events[2:]], [events[:1]] * 2]
    for order in itertools.permutations(events):
        shapes.append([list(order[:2]), list(order[2:]), list(order[:2])])
        shapes.append([[e] for e in order] + [[order[0]]])
    return shapes


def test_one_round_trip_writes_what_two_steps_write(store: Store) -> None:
    together, apart = _one_round_trip(store), _two_steps(Store(store.db))
    for n, batches in enumerate(_deliveries()):
        fresh: dict[str, list[list[bool]]] = {"one": [], "two": []}
        for batch in batches:
            fresh["one"].append(together.record(_as(f"one-{n}", batch)))
            fresh["two"].append(apart.record(_as(f"two-{n}", batch)))
        assert fresh["one"] == fresh["two"], batches
        one, two = together.history.get(f"one-{n}"), together.history.get(f"two-{n}")
        assert one is not None and two is not None
        assert {**one, "_id": "x"} == {**two, "_id": "x"}, batches
        logged = [len(EventLog(store).for_run(f"{side}-{n}")) for side in ("one", "two")]
        assert logged == [len({e.event_id for b in batches for e in b})] * 2


def test_the_embedded_server_is_written_in_two_steps(store: Store) -> None:
    log = RunLog(store)
    assert log.record(lifecycle("embedded")) == [True] * 4
    assert store.writes_across is False  # SecantusDB would not journal a bulkWrite
    assert len(EventLog(store).for_run("embedded")) == 4


def test_a_batch_is_one_database_command(store: Store, mongo_url: str) -> None:
    commands = Commands()
    client: MongoClient[Doc] = MongoClient(mongo_url, event_listeners=[commands])
    log = _one_round_trip(Store(client[store.db.name]))
    log.record(lifecycle("warm"))  # server selection, first connection
    commands.sent.clear()
    log.record(lifecycle("counted"))
    assert [name for name, _, _ in commands.sent] == ["bulkWrite"]
    client.close()
    assert History(store).get("counted") is not None
    assert len(EventLog(store).for_run("counted")) == 4


@pytest.mark.parametrize("path", ["one round trip", "two steps"])
def test_an_event_the_log_refuses_raises_and_a_retry_completes(store: Store, path: str) -> None:
    """A failed append raises (the worker then queues the events for the event
    consumer); the retry stores what is missing and folds the history once."""
    log = _one_round_trip(store) if path == "one round trip" else _two_steps(store)
    store.db.create_collection(
        "slurp_events", validator={"$jsonSchema": {"properties": {"kind": {"enum": ["started"]}}}}
    )
    events = lifecycle("refused")
    with pytest.raises(ClientBulkWriteException if path == "one round trip" else Exception):
        log.record(events)
    store.db.command("collMod", "slurp_events", validator={})
    fresh = log.record(events)
    assert fresh == [False, True, False, True]  # the starts were stored the first time
    assert len(EventLog(store).for_run("refused")) == 4
    doc = log.history.get("refused")
    assert doc is not None and doc["status"] == "succeeded" and doc["attempts"] == 2


@pytest.mark.parametrize("path", ["one round trip", "two steps"])
def test_a_failing_history_write_is_logged_and_the_events_are_kept(
    store: Store, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = _one_round_trip(store) if path == "one round trip" else _two_steps(store)
    store.db.create_collection(
        "slurp_history", validator={"$jsonSchema": {"required": ["never-there"]}}
    )
    with caplog.at_level(logging.ERROR, logger="storage.runlog"):
        assert log.record(lifecycle("no-history")) == [True] * 4
    assert "history update for run no-history failed; rebuild it" in caplog.text
    assert len(EventLog(store).for_run("no-history")) == 4
    assert log.history.get("no-history") is None


def test_a_run_with_a_document_already_is_updated(store: Store) -> None:
    """The insert of a batch opening its run finds the document (written by a later
    event that arrived first): the update folds the batch in."""
    log = _one_round_trip(store)
    events = lifecycle("late-start")
    log.record(events[3:])  # the success first
    log.record([events[0]])  # then the first start: insert fails on _id, update applies
    doc = log.history.get("late-start")
    assert doc is not None
    assert doc["status"] == "succeeded" and doc["trigger"] == "schedule"
    assert set(doc["attempt_log"]) == {"1:1", "2:1"}
    started = doc["attempt_log"]["1:1"]
    assert isinstance(events[0], JobStarted) and started["started_at"] == events[0].at
