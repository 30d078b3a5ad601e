"""MongoDB connection options and the write/read concerns of durable data.

- Options in ``SLURP_MONGO_URL`` win over slurp's defaults (pymongo lets keyword
  arguments win, so ``connect`` must not pass the ones the URL sets).
- Catalog commits and the event log are written with ``{w: "majority", j: true}`` and
  read with read concern ``majority``, as the commands on the wire show (a command
  listener on a real server: SecantusDB, or the MongoDB of ``SLURP_TEST_MONGO_URL``).
  SecantusDB reports itself as a one-node replica set and enforces write concerns
  (``w: 2`` is refused as unsatisfiable), so "majority" is really checked there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pymongo
import pytest
from pymongo import monitoring
from pymongo.errors import ServerSelectionTimeoutError, WriteConcernError
from pymongo.write_concern import WriteConcern

from contracts.events import JobStarted
from contracts.jobs import CollectionType
from slurp.localservers import free_port
from storage.events import EventLog
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import DEFAULT_TIMEOUT_MS, Store, connect, url_options
from storage.strategies import strategy_for
from tests.storage_model import spec_for


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '/?'}{option}"


# -- URL options win --------------------------------------------------------------------


def test_url_options_are_read_with_lower_case_names() -> None:
    url = "mongodb://u:p@h1:1,h2:2/db?replicaSet=rs0&serverSelectionTimeoutMS=500&appName=x"
    assert url_options(url) == {
        "replicaset": "rs0",
        "serverselectiontimeoutms": "500",
        "appname": "x",
    }
    assert url_options("mongodb://h/db") == {}
    assert url_options("mongodb+srv://cluster.example.org/db?appname=y") == {"appname": "y"}


def test_slurps_defaults_apply_when_the_url_says_nothing(mongo_url: str) -> None:
    store = connect(mongo_url, "t")
    try:
        options = store.client.options
        assert options.server_selection_timeout == DEFAULT_TIMEOUT_MS / 1000
        assert options.pool_options.connect_timeout == DEFAULT_TIMEOUT_MS / 1000
        assert options.pool_options.metadata["application"]["name"] == "slurp"
        assert options.codec_options.tz_aware
    finally:
        store.close()


@pytest.mark.parametrize("spelling", ["serverSelectionTimeoutMS", "serverselectiontimeoutms"])
def test_options_in_the_url_win(mongo_url: str, spelling: str) -> None:
    url = with_option(mongo_url, f"{spelling}=1234&connectTimeoutMS=2345&appName=reports")
    store = connect(url, "t")
    try:
        options = store.client.options
        assert options.server_selection_timeout == 1.234
        assert options.pool_options.connect_timeout == 2.345
        assert options.pool_options.metadata["application"]["name"] == "reports"
    finally:
        store.close()


def test_the_urls_timeout_is_the_one_waited(mongo_url: str) -> None:
    """Nothing listens: the URL's 300 ms, not slurp's 10 s default, ends the wait."""
    nobody = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    store = connect(with_option(nobody, "serverSelectionTimeoutMS=300"), "t")
    started = time.monotonic()
    with pytest.raises(ServerSelectionTimeoutError):
        store.db.command("ping")
    assert time.monotonic() - started < 3
    store.close()


# -- write and read concerns ------------------------------------------------------------


class Commands(monitoring.CommandListener):
    """Every command sent, as (command name, collection, command document)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, object]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        collection = event.command.get(event.command_name)
        self.sent.append((event.command_name, str(collection), dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def on(self, collection: str) -> list[tuple[str, dict[str, object]]]:
        return [(name, doc) for name, coll, doc in self.sent if coll == collection]


@pytest.fixture
def watched(mongo_url: str, mongo_db_name: str) -> Iterator[tuple[Store, Commands]]:
    commands = Commands()
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        mongo_url, tz_aware=True, event_listeners=[commands]
    )
    yield Store(client[mongo_db_name]), commands
    client.drop_database(mongo_db_name)
    client.close()


WRITES = {"insert", "update", "findAndModify", "delete"}
READS = {"find", "aggregate", "count", "distinct"}
MAJORITY_J = {"w": "majority", "j": True}


@pytest.mark.parametrize("kind", [CollectionType.NORMAL, CollectionType.UPSERTED])
def test_commits_are_majority_journaled_and_read_majority(
    watched: tuple[Store, Commands], kind: CollectionType
) -> None:
    store, commands = watched
    spec = spec_for(kind, "users")
    store_run(strategy_for(store, spec, retire_grace_s=0), "run-1", [{"id": 1}, {"id": 2}])
    store_run(strategy_for(store, spec, retire_grace_s=0), "run-2", [{"id": 3}])
    assert list(CollectionReader(store).find("users"))  # a reader resolving the catalog

    sent = commands.on("slurp_catalog")
    writes = [doc for name, doc in sent if name in WRITES]
    reads = [doc for name, doc in sent if name in READS]
    assert writes and reads
    for doc in writes:
        assert doc.get("writeConcern") == MAJORITY_J, doc
    for doc in reads:
        assert doc.get("readConcern") == {"level": "majority"}, doc
    # The records themselves take the URL's concern (the commit covers them: a
    # majority-committed write implies every earlier write of that primary is too).
    data = [doc for name, coll, doc in commands.sent if coll.startswith("slurp_data.")]
    assert data and all("writeConcern" not in doc for doc in data)


def test_the_event_log_is_majority_journaled_and_read_majority(
    watched: tuple[Store, Commands],
) -> None:
    store, commands = watched
    log = EventLog(store)
    event = JobStarted(run_id=str(uuid.uuid4()), job="users")
    assert log.append(event) and not log.append(event)
    assert [e.event_id for e in log.for_run(event.run_id)] == [event.event_id]
    sent = commands.on("slurp_events")
    inserts = [doc for name, doc in sent if name == "insert"]
    finds = [doc for name, doc in sent if name == "find"]
    assert len(inserts) == 2 and all(doc["writeConcern"] == MAJORITY_J for doc in inserts)
    assert finds and all(doc["readConcern"] == {"level": "majority"} for doc in finds)


def test_a_wtimeout_in_the_url_bounds_durable_writes(mongo_url: str, mongo_db_name: str) -> None:
    store = connect(with_option(mongo_url, "wtimeoutMS=2500"), mongo_db_name)
    try:
        concern = store.catalog.write_concern
        assert concern.document == {"w": "majority", "j": True, "wtimeout": 2500}
        assert store.durable("slurp_events").read_concern.level == "majority"
    finally:
        store.close()


def test_the_server_enforces_write_concerns(store: Store) -> None:
    """The test server checks ``w``: majority is satisfiable on it, two nodes are not
    (so the durable writes above were really acknowledged by a majority)."""
    hello = store.db.command("hello")
    if "setName" not in hello:
        pytest.skip("the test MongoDB is not a replica set member")
    ok = store.db.get_collection("probe", write_concern=WriteConcern(w="majority", j=True))
    ok.insert_one({"n": 1})
    members = len(hello.get("hosts", []))
    too_many = WriteConcern(w=members + 1, j=True, wtimeout=1000)
    with pytest.raises(WriteConcernError):
        store.db.get_collection("probe", write_concern=too_many).insert_one({"n": 2})
