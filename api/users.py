"""The users the API knows: bootstrap users from the settings and users in the database.

- **Bootstrap users** (``SLURP_API_USERS``, ``api.config``) are read-only and always
  present. A database user of the same name is ignored, and ``add`` refuses the name:
  the settings win, so an operator can always get in.
- **Database users** (``storage.users``) are managed here, by ``slurp users``. Each
  lookup reads the database, so a removal or role change applies to the next request
  of every API process. New passwords are hashed with argon2id (``api.passwords``).
- A stored user that no longer validates (edited by hand) counts as absent; the
  problem is logged, never sent to a client.
- ``KnownUser.epoch`` is what refresh tokens are checked against
  (``storage.refresh_tokens``): the stored epoch of a database user (new on every
  password or role change), a digest of hash and role for a bootstrap user (so
  changing either in the settings, and restarting, ends its refresh tokens too).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from api.config import ROLES, UserSpec
from api.passwords import PasswordHash, hash_password, parse_hash
from storage.errors import UserExistsError
from storage.store import Store
from storage.users import UserRecord, UserStore

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "KnownUser",
    "UserDirectory",
    "UserError",
    "check_password",
]

log = logging.getLogger(__name__)

#: Shortest and longest password accepted for a database user.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

Source = Literal["settings", "database"]


class UserError(ValueError):
    """A user change that cannot be made; the message says why (never a password)."""


@dataclass(frozen=True)
class KnownUser:
    """A user the API knows, where it comes from, and its parsed hash."""

    spec: UserSpec
    source: Source
    epoch: str
    parsed_hash: PasswordHash

    @property
    def username(self) -> str:
        return self.spec.username


def check_password(password: str) -> None:
    """``UserError`` for a password too short or too long to be accepted."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise UserError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


def _settings_epoch(spec: UserSpec) -> str:
    text = f"{spec.password_hash.get_secret_value()}\0{spec.role}"
    return "settings:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _spec(username: str, password_hash: str, role: str, collections: Sequence[str]) -> UserSpec:
    """A validated ``UserSpec``; ``UserError`` naming the fields (no values)."""
    try:
        return UserSpec.model_validate(
            {
                "username": username,
                "password_hash": password_hash,
                "role": role,
                "collections": list(collections),
            }
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'user'}: {error['msg']}"
            for error in exc.errors()
        )
        raise UserError(problems) from None


class UserDirectory:
    """Lookups over both sources, and changes to the database users."""

    def __init__(self, bootstrap: Sequence[UserSpec], store: Store) -> None:
        self._bootstrap = {
            spec.username: KnownUser(
                spec,
                "settings",
                _settings_epoch(spec),
                parse_hash(spec.password_hash.get_secret_value()),
            )
            for spec in bootstrap
        }
        self.stored = UserStore(store)

    def get(self, username: str) -> KnownUser | None:
        """The user named ``username`` (exact match), or None."""
        known = self._bootstrap.get(username)
        if known is not None:
            return known
        record = self.stored.get(username)
        return None if record is None else self._known(record)

    def all(self) -> list[KnownUser]:
        """Every user: the bootstrap users, then the database's (by name; those a
        bootstrap user shadows and those that no longer validate left out)."""
        stored = [self._known(r) for r in self.stored.all() if r.username not in self._bootstrap]
        return [*self._bootstrap.values(), *(user for user in stored if user is not None)]

    def shadowed(self) -> list[str]:
        """Database users hidden by a bootstrap user of the same name."""
        return [r.username for r in self.stored.all() if r.username in self._bootstrap]

    def _known(self, record: UserRecord) -> KnownUser | None:
        try:
            spec = _spec(record.username, record.password_hash, record.role, record.collections)
        except UserError as exc:
            log.warning("stored API user %r ignored: it no longer validates: %s",
                        record.username, exc)  # fmt: skip
            return None
        password = parse_hash(spec.password_hash.get_secret_value())
        return KnownUser(spec, "database", record.token_epoch, password)

    # Changes (database users only).

    def add(
        self, username: str, password: str, role: str, collections: Sequence[str] = ("*",)
    ) -> KnownUser:
        """Create a database user; ``UserError`` for a bad value or a taken name."""
        check_password(password)
        self._writable(username)
        spec = _spec(username, hash_password(password), role, collections)
        try:
            record = self.stored.add(
                spec.username, spec.password_hash.get_secret_value(), spec.role, spec.collections
            )
        except UserExistsError as exc:
            raise UserError(str(exc)) from None
        known = self._known(record)
        assert known is not None
        return known

    def remove(self, username: str) -> None:
        """Delete a database user and end their sign-ins."""
        self._writable(username)
        if not self.stored.remove(username):
            raise self._missing(username)

    def set_password(self, username: str, password: str) -> None:
        """A new password; the user's refresh tokens and console sessions end."""
        check_password(password)
        self._writable(username)
        if not self.stored.set_password(username, hash_password(password)):
            raise self._missing(username)

    def set_role(self, username: str, role: str) -> None:
        """A new role; the user's refresh tokens and console sessions end."""
        self._writable(username)
        if role not in ROLES:
            raise UserError(f"role: one of {', '.join(ROLES)}")
        if not self.stored.set_role(username, role):
            raise self._missing(username)

    def set_collections(self, username: str, collections: Sequence[str]) -> None:
        """A new read ACL (applies to the next request)."""
        self._writable(username)
        if not collections:
            raise UserError("collections: give '*' or at least one collection name")
        if not self.stored.set_collections(username, list(collections)):
            raise self._missing(username)

    def upgrade_hash(self, user: KnownUser, password: str) -> None:
        """After a successful login: store a current argon2id hash for a database user
        whose hash is older (scrypt, or weaker parameters). Failures are only logged."""
        if user.source != "database" or not user.parsed_hash.needs_rehash():
            return
        try:
            self.stored.rehash(
                user.username, user.spec.password_hash.get_secret_value(), hash_password(password)
            )
        except Exception:  # the login succeeded; a rehash can wait for the next one
            log.warning("could not rehash the password of %r", user.username, exc_info=True)

    def check_writable(self, username: str) -> None:
        """``UserError`` unless ``username`` is a database user (it may be changed)."""
        self._writable(username)
        if self.stored.get(username) is None:
            raise self._missing(username)

    def _writable(self, username: str) -> None:
        if username in self._bootstrap:
            raise UserError(
                f"{username!r} is a bootstrap user of SLURP_API_USERS: read-only here "
                "(change the setting instead)"
            )

    @staticmethod
    def _missing(username: str) -> UserError:
        return UserError(f"no user named {username!r} in the database")
