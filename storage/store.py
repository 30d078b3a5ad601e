"""The handle every storage component shares: one pymongo database.

Layout of the database (all names starting with ``slurp`` are slurp's own):

- ``slurp_catalog``: one document per user collection (type, pointers, versions);
- ``slurp_data.<name>.<suffix>``: the physical collections holding records;
- ``slurp_jobs``, ``slurp_events``, ``slurp_history``: registry, event log, history.
- ``slurp_counters``: sequence numbers (job revisions).

Durability (docs/storage.md, "Write and read concerns"): the writes that must never be
lost once acknowledged, catalog commits and the event log, use write concern
``{w: "majority", j: true}`` (``DURABLE``): acknowledged only once a majority of the
replica set has the write in its journal, so no failover can roll it back. Reads of
those collections use read concern ``majority`` (``COMMITTED``): they see only writes
that can no longer be rolled back. Every other write takes the URL's write concern.

``connect`` passes slurp's defaults (timeouts, ``tz_aware``, app name) only for options
``SLURP_MONGO_URL`` does not set itself: options in the URL always win.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pymongo
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.operations import InsertOne, UpdateOne
from pymongo.read_concern import ReadConcern
from pymongo.results import ClientBulkWriteResult
from pymongo.uri_parser import split_options
from pymongo.write_concern import WriteConcern

__all__ = [
    "COMMITTED",
    "DATA_PREFIX",
    "DEFAULT_TIMEOUT_MS",
    "DURABLE",
    "Store",
    "connect",
    "url_options",
]

#: Write concern of the writes that must survive a crash and a replica-set failover
#: once acknowledged: catalog commits and the event log. A standalone server treats
#: "majority" as itself; a URL's ``wtimeoutMS`` bounds the wait (``Store.durable``).
DURABLE = WriteConcern(w="majority", j=True)
#: Read concern of the reads that must see only such writes (never a rolled-back one).
COMMITTED = ReadConcern("majority")

#: Every physical collection holding records starts with this.
DATA_PREFIX = "slurp_data."

#: How long pymongo waits for a server before an operation fails.
DEFAULT_TIMEOUT_MS = 10_000

Doc = dict[str, Any]


class Store:
    """A database plus slurp's naming rules for it."""

    def __init__(self, database: Database[Doc]) -> None:
        self.db = database
        #: ``takes_durable_bulk_write``'s answer; None: not asked yet.
        self.writes_across: bool | None = None

    @property
    def client(self) -> pymongo.MongoClient[Doc]:
        return self.db.client

    @property
    def catalog(self) -> Collection[Doc]:
        """Commits are catalog updates: durable (``DURABLE``, ``COMMITTED``)."""
        return self.durable("slurp_catalog")

    def durable(self, name: str) -> Collection[Doc]:
        """Collection ``name`` with ``DURABLE`` writes and ``COMMITTED`` reads: an
        acknowledged write is in the journal of a majority of the replica set, and a
        read sees only such writes. The URL's ``wtimeoutMS``, if any, is kept."""
        return self.db.get_collection(
            name, write_concern=self.durable_concern(), read_concern=COMMITTED
        )

    def durable_concern(self) -> WriteConcern:
        """``DURABLE``, with the URL's ``wtimeoutMS`` if it has one."""
        wtimeout = self.client.write_concern.document.get("wtimeout")
        if wtimeout is None:
            return DURABLE
        return WriteConcern(w="majority", j=True, wtimeout=wtimeout)

    def write_across(self, ops: Sequence[InsertOne[Doc] | UpdateOne]) -> ClientBulkWriteResult:
        """``ops`` (each naming its collection: ``namespace=``) in one round trip, one
        client-level ``bulkWrite``, unordered, ``DURABLE``; raises
        ``ClientBulkWriteException`` naming each failed op by index. Only where
        ``takes_durable_bulk_write``: elsewhere, write collection by collection."""
        concern = self.durable_concern()
        return self.client.bulk_write(list(ops), ordered=False, write_concern=concern)

    def takes_durable_bulk_write(self) -> bool:
        """Does the server take a client-level ``bulkWrite`` (MongoDB 8.0+) and honour
        its write concern? Asked once (``buildInfo``), then kept in ``writes_across``.
        SecantusDB (0.7) takes the command but runs its ops without the write concern:
        a ``j: true`` write is then not journaled, and a kill -9 loses it
        (``tests/test_workers_more.py``, database down mid-run, showed it)."""
        if self.writes_across is None:
            info = self.client.admin.command("buildInfo")
            version = info.get("versionArray") or [0]
            self.writes_across = "secantusVersion" not in info and int(version[0]) >= 8
        return self.writes_across

    def namespace(self, collection: str) -> str:
        """``<database>.<collection>``, as ``write_across`` names a collection."""
        return f"{self.db.name}.{collection}"

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
    """A ``Store`` on ``url``/``database``; no I/O happens until first use.

    slurp's defaults (``timeout_ms`` for server selection and connecting, the app name
    ``slurp``) apply only to options the URL does not set: ``?serverSelectionTimeoutMS=
    500`` in ``SLURP_MONGO_URL`` wins (pymongo itself lets keyword arguments win).
    """
    given = set(url_options(url))
    defaults: dict[str, Any] = {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "appname": "slurp",
    }
    options = {name: value for name, value in defaults.items() if name.lower() not in given}
    client: pymongo.MongoClient[Doc] = pymongo.MongoClient(url, tz_aware=True, **options)
    return Store(client[database])


def url_options(url: str) -> dict[str, Any]:
    """The options in a MongoDB URL's query string, names lower-cased (MongoDB's
    option names are case-insensitive); values as written, not validated, and no DNS
    lookup for ``mongodb+srv``."""
    _, _, query = url.partition("?")
    if not query:
        return {}
    options = split_options(query, validate=False, warn=False, normalize=False)
    return {str(name).lower(): value for name, value in options.items()}
