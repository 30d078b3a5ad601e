"""The refresh tokens the API issued, so that they can be rotated and revoked.

One document per token in ``slurp_refresh_tokens``::

    {_id: jti, family, username, epoch, issued_at, expires_at, used_at}

- A login starts a *family*; each refresh uses its token once (``use``: an atomic
  update from ``used_at: null``) and adds the next token of the same family.
- A token used a second time means two parties hold it (a stolen copy): the whole
  family is deleted (``revoke_family``), so the thief's and the owner's chains both end.
- ``epoch`` is the user's token epoch when the token was issued (``storage.users``):
  a password or role change gives the user a new epoch, and tokens of an old one are
  refused even if a refresh raced with the change.
- Logging out deletes the family; removing a user or changing their password or role
  deletes all their tokens (``revoke_user``).
- Documents expire with their tokens: a TTL index on ``expires_at`` lets MongoDB delete
  them (``ensure_indexes``); the JWT's own ``exp`` is checked before any lookup.

Writes are durable (``Store.durable``): a revocation must survive a failover.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pymongo import ASCENDING

from contracts.base import utcnow
from storage.store import Doc, Store

__all__ = ["REFRESH_TOKENS_COLLECTION", "RefreshTokenStore", "StoredRefresh", "TokenUse"]

REFRESH_TOKENS_COLLECTION = "slurp_refresh_tokens"

#: What ``use`` found: a fresh token (now used), one used before, or none at all.
TokenUse = Literal["fresh", "reused", "unknown"]


@dataclass(frozen=True)
class StoredRefresh:
    """One issued refresh token."""

    jti: str
    family: str
    username: str
    epoch: str
    expires_at: datetime
    used: bool


def _stored(doc: Doc) -> StoredRefresh:
    return StoredRefresh(
        jti=str(doc["_id"]),
        family=str(doc["family"]),
        username=str(doc["username"]),
        epoch=str(doc.get("epoch", "")),
        expires_at=doc["expires_at"],
        used=doc.get("used_at") is not None,
    )


class RefreshTokenStore:
    """Issued refresh tokens in MongoDB (see the module docstring)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self.docs = store.durable(REFRESH_TOKENS_COLLECTION)
        self._clock = clock
        self._indexed = False
        self._lock = threading.Lock()

    def ensure_indexes(self) -> None:
        """The TTL index on ``expires_at`` and the lookups by family and user
        (idempotent; done once per instance on the first write)."""
        with self._lock:
            if self._indexed:
                return
            self.docs.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
            self.docs.create_index([("family", ASCENDING)])
            self.docs.create_index([("username", ASCENDING)])
            self._indexed = True

    def add(self, jti: str, family: str, username: str, epoch: str, expires_at: datetime) -> None:
        """Record a newly issued token."""
        self.ensure_indexes()
        self.docs.insert_one(
            {
                "_id": jti,
                "family": family,
                "username": username,
                "epoch": epoch,
                "issued_at": self._clock(),
                "expires_at": expires_at,
                "used_at": None,
            }
        )

    def get(self, jti: str) -> StoredRefresh | None:
        doc = self.docs.find_one({"_id": jti})
        return None if doc is None else _stored(doc)

    def use(self, jti: str) -> tuple[TokenUse, StoredRefresh | None]:
        """Mark the token used, atomically: exactly one of concurrent callers gets
        ``fresh``; the others, and every later caller, get ``reused``. ``unknown``:
        never issued, expired and deleted, or revoked."""
        doc = self.docs.find_one_and_update(
            {"_id": jti, "used_at": None}, {"$set": {"used_at": self._clock()}}
        )
        if doc is not None:
            return "fresh", _stored(doc)
        doc = self.docs.find_one({"_id": jti})
        if doc is None:
            return "unknown", None
        return "reused", _stored(doc)

    def revoke_family(self, family: str) -> int:
        """Delete every token of ``family`` (a logout, or a reused token)."""
        return self.docs.delete_many({"family": family}).deleted_count

    def revoke_user(self, username: str) -> int:
        """Delete every token of ``username``."""
        return self.docs.delete_many({"username": username}).deleted_count
