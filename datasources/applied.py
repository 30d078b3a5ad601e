"""``AppliedMarks``: which consumed messages a *committed* run applied, so that a
redelivery after a crash between the storage commit and the acknowledgement is
skipped instead of being stored twice.

Collection ``slurp_source_marks`` (journaled writes); one document per batch of
consumed messages::

    {scope: "<collection>:<source>:<queue>", run_id, keys: [key, ...], at}

with an index on ``(scope, keys)``. A key names a message (its ``message_id``, or a
hash of its body). The protocol, per run of a consuming source:

1. ``prune(scope, committed)``: documents of runs that are not committed (crashed or
   aborted: their messages came back and are applied again) are deleted;
2. per batch, *before* its items are handed on (so before the storage commit):
   ``applied(scope, keys, committed)`` are the keys some committed run applied: those
   messages are skipped (and acknowledged at the commit); the others are recorded
   with ``record(scope, run_id, keys)``;
3. the storage commit makes the run's records live and adds its run id to the
   collection's committed list in the *same* single-document update of the catalog
   (``storage.catalog``): from that instant, and not before, the run's marks count;
4. after the acknowledgement, ``forget(scope, run_id, skipped)`` removes the run's
   documents and the skipped keys from older ones (their messages are gone for good).

Why a crash is harmless: killed after 3 and before the acknowledgement, the broker
hands the messages out again; the next run finds their keys marked by a committed run
and skips them. Killed before 3, the run is not committed, its marks do not count and
its messages are applied again. The committed list keeps the last 200 run ids of a
collection (``storage.catalog.COMMITTED_KEPT``): a message left unacknowledged by a
crash is recognised as long as fewer than 200 other runs committed into the collection
before it comes back (it comes back at the next run that consumes the queue).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.write_concern import WriteConcern

from contracts.base import utcnow

if TYPE_CHECKING:
    from storage.store import Store

__all__ = ["MARKS_COLLECTION", "AppliedMarks"]

MARKS_COLLECTION = "slurp_source_marks"


class AppliedMarks:
    """The marks of consuming sources in ``store`` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.docs = store.db.get_collection(MARKS_COLLECTION, write_concern=WriteConcern(j=True))
        self._indexed = False

    def _index(self) -> None:
        if not self._indexed:
            self.docs.create_index([("scope", ASCENDING), ("keys", ASCENDING)])
            self._indexed = True

    def prune(self, scope: str, committed: Collection[str]) -> int:
        """Delete the marks of runs not in ``committed``; how many documents went."""
        self._index()
        result = self.docs.delete_many({"scope": scope, "run_id": {"$nin": list(committed)}})
        return result.deleted_count

    def applied(self, scope: str, keys: Sequence[str], committed: Collection[str]) -> set[str]:
        """Those of ``keys`` that a run in ``committed`` applied."""
        if not keys or not committed:
            return set()
        wanted = set(keys)
        found: set[str] = set()
        query: dict[str, Any] = {
            "scope": scope,
            "keys": {"$in": list(wanted)},
            "run_id": {"$in": list(committed)},
        }
        for doc in self.docs.find(query, {"keys": 1}):
            found.update(key for key in doc["keys"] if key in wanted)
        return found

    def record(self, scope: str, run_id: str, keys: Iterable[str]) -> None:
        """Remember that ``run_id`` applies ``keys`` (effective once it commits)."""
        listed = list(keys)
        if listed:
            self.docs.insert_one({"scope": scope, "run_id": run_id, "keys": listed, "at": utcnow()})

    def forget(self, scope: str, run_id: str, skipped: Iterable[str] = ()) -> None:
        """The run's messages (and the ``skipped`` ones) are acknowledged: drop their marks."""
        self.docs.delete_many({"scope": scope, "run_id": run_id})
        gone = list(set(skipped))
        if gone:
            self.docs.update_many(
                {"scope": scope, "keys": {"$in": gone}}, {"$pullAll": {"keys": gone}}
            )
            self.docs.delete_many({"scope": scope, "keys": {"$size": 0}})
