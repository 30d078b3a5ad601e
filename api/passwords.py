"""Password hashes: argon2id for every new hash, scrypt still verified; never a
password in plain text.

Two formats, told apart by their first characters:

- **argon2id** (argon2-cffi), the standard PHC string format::

      $argon2id$v=19$m=19456,t=2,p=1$<salt, base64>$<hash, base64>

  ``m`` is the memory in KiB, ``t`` the passes, ``p`` the lanes. New hashes use
  ``DEFAULT_MEMORY_KIB``, ``DEFAULT_TIME_COST`` and ``DEFAULT_PARALLELISM`` (OWASP's
  argon2id baseline: 19 MiB, 2 passes, 1 lane; ~50 ms per check here).
- **scrypt** (hashes made by earlier slurp versions; ``SLURP_API_USERS`` may hold
  them)::

      scrypt$<n>$<r>$<p>$<salt, base64>$<derived key, base64>

The parameters travel with each hash, so stronger settings apply to new hashes
without invalidating old ones; ``needs_rehash`` says whether a hash is older than the
current settings. Parsing refuses parameters beyond ``MAX_MEMORY_KIB`` and friends:
a configured hash must not make a login eat the host. Produce a hash for the
``SLURP_API_USERS`` setting with::

    .venv/bin/python -m api.passwords            # prompts twice, prints the hash
    printf %s "$PW" | .venv/bin/python -m api.passwords --stdin

(users in the database are managed with ``slurp users``, which hashes for you).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import os
import sys
from dataclasses import dataclass

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "DEFAULT_MEMORY_KIB",
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIME_COST",
    "Argon2Hash",
    "PasswordHash",
    "ScryptHash",
    "hash_password",
    "main",
    "needs_rehash",
    "parse_hash",
    "scrypt_hash",
    "verify_password",
]

#: argon2id memory of new hashes, in KiB (19 MiB).
DEFAULT_MEMORY_KIB = 19 * 1024
#: argon2id passes over the memory of new hashes.
DEFAULT_TIME_COST = 2
#: argon2id lanes of new hashes.
DEFAULT_PARALLELISM = 1
#: Bytes of random salt and of hash (argon2id and scrypt alike).
SALT_BYTES = 16
KEY_BYTES = 32
#: Largest argon2id parameters accepted when parsing: 256 MiB, 16 passes, 16 lanes.
MAX_MEMORY_KIB = 256 * 1024
MAX_TIME_COST = 16
MAX_PARALLELISM = 16
# scrypt bounds accepted when parsing.
_MAX_N = 2**20
_MAX_RP = 64
_ARGON2_PREFIX = "$argon2id$"
_SCRYPT_PREFIX = "scrypt$"


@dataclass(frozen=True)
class Argon2Hash:
    """A parsed argon2id PHC string (checked against the bounds above)."""

    encoded: str
    memory_kib: int
    time_cost: int
    parallelism: int

    def verify(self, password: str) -> bool:
        try:
            return bool(_hasher().verify(self.encoded, password))
        except VerificationError:
            return False

    def needs_rehash(self) -> bool:
        return (self.memory_kib, self.time_cost, self.parallelism) != (
            DEFAULT_MEMORY_KIB,
            DEFAULT_TIME_COST,
            DEFAULT_PARALLELISM,
        )


@dataclass(frozen=True)
class ScryptHash:
    """A parsed scrypt hash: parameters, salt and derived key."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        key = base64.b64encode(self.key).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt}${key}"

    def verify(self, password: str) -> bool:
        """Constant-time comparison of the derived keys."""
        key = _derive(password, self.n, self.r, self.p, self.salt, len(self.key))
        return hmac.compare_digest(key, self.key)

    def needs_rehash(self) -> bool:
        return True  # new hashes are argon2id


PasswordHash = Argon2Hash | ScryptHash


def _hasher(
    memory_kib: int = DEFAULT_MEMORY_KIB,
    time_cost: int = DEFAULT_TIME_COST,
    parallelism: int = DEFAULT_PARALLELISM,
) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=KEY_BYTES,
        salt_len=SALT_BYTES,
        type=Type.ID,
    )


def parse_hash(encoded: str) -> PasswordHash:
    """Parse ``encoded``; ``ValueError`` (never echoing the value) if it is not a hash."""
    if encoded.startswith(_ARGON2_PREFIX):
        return _parse_argon2(encoded)
    if encoded.startswith(_SCRYPT_PREFIX):
        return _parse_scrypt(encoded)
    raise ValueError(
        "not a password hash: expected an argon2id PHC string '$argon2id$v=19$m=...' or "
        "'scrypt$n$r$p$salt$hash' (make one with 'python -m api.passwords')"
    )


def _parse_argon2(encoded: str) -> Argon2Hash:
    try:
        params = extract_parameters(encoded)
    except (InvalidHashError, ValueError):
        raise ValueError("malformed argon2id hash (not a PHC string)") from None
    if params.type is not Type.ID:
        raise ValueError("only argon2id hashes are accepted")
    if not (
        8 * params.parallelism <= params.memory_cost <= MAX_MEMORY_KIB
        and 1 <= params.time_cost <= MAX_TIME_COST
        and 1 <= params.parallelism <= MAX_PARALLELISM
    ):
        raise ValueError(
            f"argon2id parameters out of range: m <= {MAX_MEMORY_KIB} KiB, "
            f"t 1-{MAX_TIME_COST}, p 1-{MAX_PARALLELISM}"
        )
    if params.salt_len < 8 or params.hash_len < 16:
        raise ValueError("argon2id hash too short: salt >= 8 bytes, hash >= 16 bytes")
    return Argon2Hash(encoded, params.memory_cost, params.time_cost, params.parallelism)


def _parse_scrypt(encoded: str) -> ScryptHash:
    parts = encoded.split("$")
    if len(parts) != 6:
        raise ValueError("malformed scrypt hash: expected 'scrypt$n$r$p$salt$hash'")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except ValueError:
        raise ValueError("malformed scrypt hash: bad number or base64") from None
    if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= _MAX_RP or not 1 <= p <= _MAX_RP:
        raise ValueError(f"scrypt parameters out of range: n a power of 2 <= {_MAX_N}, r, p 1-64")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("scrypt hash too short: salt >= 8 bytes, key >= 16 bytes")
    return ScryptHash(n, r, p, salt, key)


def _derive(password: str, n: int, r: int, p: int, salt: bytes, size: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=size)


def hash_password(
    password: str,
    *,
    memory_kib: int = DEFAULT_MEMORY_KIB,
    time_cost: int = DEFAULT_TIME_COST,
    parallelism: int = DEFAULT_PARALLELISM,
) -> str:
    """A new salted argon2id hash of ``password`` (PHC string)."""
    return _hasher(memory_kib, time_cost, parallelism).hash(password)


def scrypt_hash(password: str, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """A salted scrypt hash in slurp's older format (still verified; new hashes should
    be argon2id: ``hash_password``). Tests use it with a small ``n`` for speed."""
    salt = os.urandom(SALT_BYTES)
    return ScryptHash(n, r, p, salt, _derive(password, n, r, p, salt, KEY_BYTES)).encode()


def verify_password(password: str, encoded: str | PasswordHash) -> bool:
    """Whether ``password`` matches the hash (either format)."""
    parsed = parse_hash(encoded) if isinstance(encoded, str) else encoded
    return parsed.verify(password)


def needs_rehash(encoded: str | PasswordHash) -> bool:
    """Whether the hash is not an argon2id hash with the current parameters."""
    parsed = parse_hash(encoded) if isinstance(encoded, str) else encoded
    return parsed.needs_rehash()


def main(argv: list[str] | None = None) -> int:
    """Print the argon2id hash of a password read from the terminal (twice) or stdin."""
    parser = argparse.ArgumentParser(prog="python -m api.passwords", description=__doc__)
    parser.add_argument("--stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
