"""The handle every storage component shares: one pymongo database.

Layout of the database (all names starting with ``slurp`` are slurp's own):

- ``slurp_catalog``: one document per user collection (type, pointers, versions);
- ``slurp_data.<name>.<suffix>``: the physical collections holding records;
- ``slurp_jobs``, ``slurp_events``, ``slurp_history``: registry, event log, history.
- ``slurp_counters``: sequence numbers (job revisions).
"""

from __future__ import annotations

import uuid
from typing import Any

import pymongo
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

__all__ = ["DATA_PREFIX", "DEFAULT_TIMEOUT_MS", "DURABLE", "Store", "connect"]

#: Write concern of the writes that must survive a database crash once acknowledged:
#: catalog commits and the event log.
DURABLE = WriteConcern(j=True)

#: Every physical collection holding records starts with this.
DATA_PREFIX = "slurp_data."

#: How long pymongo waits for a server before an operation fails.
DEFAULT_TIMEOUT_MS = 10_000

Doc = dict[str, Any]


class Store:
    """A database plus slurp's naming rules for it."""

    def __init__(self, database: Database[Doc]) -> None:
        self.db = database

    @property
    def client(self) -> pymongo.MongoClient[Doc]:
        return self.db.client

    @property
    def catalog(self) -> Collection[Doc]:
        """Commits are catalog updates: they wait for the journal (``j=True``), so an
        acknowledged commit survives a crash of the database."""
        return self.db.get_collection("slurp_catalog", write_concern=DURABLE)

    def physical(self, physical_name: str) -> Collection[Doc]:
        return self.db[physical_name]

    @staticmethod
    def staging_name(collection: str) -> str:
        """The staging collection shared by the runs of an upserted collection."""
        return f"{DATA_PREFIX}{collection}.stage"

    @staticmethod
    def physical_name(collection: str, kind: str) -> str:
        """A new, unique physical collection name for ``collection`` (``kind``: stage, v, live)."""
        return f"{DATA_PREFIX}{collection}.{kind}-{uuid.uuid4().hex[:12]}"

    def close(self) -> None:
        self.client.close()


def connect(url: str, database: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Store:
    """A ``Store`` on ``url``/``database``; no I/O happens until first use."""
    client: pymongo.MongoClient[Doc] = pymongo.MongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        appname="slurp",
    )
    return Store(client[database])
