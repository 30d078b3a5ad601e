"""API users kept in the database: ``slurp_users``, one document per user::

    {_id: username, password_hash, role, collections: [...], token_epoch,
     created_at, updated_at}

- The username is the ``_id``: unique by construction, matched exactly (case-sensitive,
  as Django's ``User``).
- The store keeps what it is given. Usernames, roles and hashes are validated above
  it (``api.config.UserSpec``, ``api.users``); a password never reaches it.
- ``token_epoch`` is random and renewed when the user is created and whenever their
  password or role changes; refresh tokens remember the epoch they were issued in
  (``storage.refresh_tokens``), so tokens of an old epoch stop working.
- Removing a user or changing their password or role also deletes their sign-ins:
  their refresh tokens and their console sessions (``SIGN_IN_COLLECTIONS``). A change
  of the collection ACL does not: it applies to the next request anyway.
- ``rehash`` replaces a hash by a stronger one of the same password (after a login)
  without touching the epoch, and only if the hash is still the one that was checked.

Writes are durable (``Store.durable``): a removal must survive a failover.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from contracts.base import utcnow
from storage.errors import UserExistsError
from storage.refresh_tokens import REFRESH_TOKENS_COLLECTION
from storage.store import Doc, Store

__all__ = [
    "CONSOLE_SESSIONS_COLLECTION",
    "SIGN_IN_COLLECTIONS",
    "USERS_COLLECTION",
    "UserRecord",
    "UserStore",
]

USERS_COLLECTION = "slurp_users"
#: The console's sessions (``api.console.sessions.SESSIONS_COLLECTION``; a test keeps
#: the two names equal: storage does not import the API).
CONSOLE_SESSIONS_COLLECTION = "slurp_console_sessions"
#: Collections holding a user's sign-ins, one document each with a ``username`` field.
SIGN_IN_COLLECTIONS = (REFRESH_TOKENS_COLLECTION, CONSOLE_SESSIONS_COLLECTION)
#: Random bytes of a token epoch.
EPOCH_BYTES = 16


@dataclass(frozen=True)
class UserRecord:
    """A user as stored."""

    username: str
    password_hash: str
    role: str
    collections: tuple[str, ...]
    token_epoch: str
    created_at: datetime
    updated_at: datetime


def _record(doc: Doc) -> UserRecord:
    return UserRecord(
        username=str(doc["_id"]),
        password_hash=str(doc.get("password_hash", "")),
        role=str(doc.get("role", "")),
        collections=tuple(str(name) for name in doc.get("collections") or ()),
        token_epoch=str(doc.get("token_epoch", "")),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def _new_epoch() -> str:
    return secrets.token_hex(EPOCH_BYTES)


class UserStore:
    """The database's API users (see the module docstring)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.docs = store.durable(USERS_COLLECTION)
        self._clock = clock

    def get(self, username: str) -> UserRecord | None:
        doc = self.docs.find_one({"_id": username})
        return None if doc is None else _record(doc)

    def all(self) -> list[UserRecord]:
        """Every user, by name."""
        return [_record(doc) for doc in self.docs.find({}, sort=[("_id", 1)])]

    def add(
        self, username: str, password_hash: str, role: str, collections: Sequence[str]
    ) -> UserRecord:
        """Create a user; ``UserExistsError`` if the name is taken."""
        now = self._clock()
        doc: Doc = {
            "_id": username,
            "password_hash": password_hash,
            "role": role,
            "collections": list(collections),
            "token_epoch": _new_epoch(),
            "created_at": now,
            "updated_at": now,
        }
        try:
            self.docs.insert_one(doc)
        except DuplicateKeyError:
            raise UserExistsError(f"a user named {username!r} exists already") from None
        # Sign-ins left by an earlier user of the same name must not carry over.
        self._revoke(username)
        return _record(doc)

    def remove(self, username: str) -> bool:
        """Delete the user and their sign-ins; False if there was no such user."""
        removed = self.docs.delete_one({"_id": username}).deleted_count == 1
        if removed:
            self._revoke(username)
        return removed

    def set_password(self, username: str, password_hash: str) -> bool:
        """A new hash and token epoch; the user's sign-ins are revoked. False: no user."""
        return self._change(username, {"password_hash": password_hash}, revoke=True)

    def set_role(self, username: str, role: str) -> bool:
        """A new role and token epoch; the user's sign-ins are revoked. False: no user."""
        return self._change(username, {"role": role}, revoke=True)

    def set_collections(self, username: str, collections: Sequence[str]) -> bool:
        """A new read ACL (applies to the next request; sign-ins stay). False: no user."""
        return self._change(username, {"collections": list(collections)}, revoke=False)

    def rehash(self, username: str, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` if it is still the user's hash."""
        result = self.docs.update_one(
            {"_id": username, "password_hash": old_hash},
            {"$set": {"password_hash": new_hash, "updated_at": self._clock()}},
        )
        return result.modified_count == 1

    def _change(self, username: str, fields: Doc, revoke: bool) -> bool:
        update: Doc = {**fields, "updated_at": self._clock()}
        if revoke:
            update["token_epoch"] = _new_epoch()
        found = self.docs.update_one({"_id": username}, {"$set": update}).matched_count == 1
        if found and revoke:
            self._revoke(username)
        return found

    def _revoke(self, username: str) -> None:
        for name in SIGN_IN_COLLECTIONS:
            self.store.durable(name).delete_many({"username": username})
