"""Password hashes with the standard library's scrypt; never a password in plain text.

Format (all in one string, ``$``-separated)::

    scrypt$<n>$<r>$<p>$<salt, base64>$<derived key, base64>

e.g. ``scrypt$16384$8$1$3q2+7w...$Zm9v...``. ``n`` (CPU/memory cost, a power of 2),
``r`` and ``p`` are stored with each hash, so stronger settings apply to new hashes
without invalidating old ones. Produce a hash for the ``users`` setting with::

    .venv/bin/python -m api.passwords            # prompts twice, prints the hash
    printf %s "$PW" | .venv/bin/python -m api.passwords --stdin
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

__all__ = [
    "DEFAULT_N",
    "DEFAULT_P",
    "DEFAULT_R",
    "PasswordHash",
    "hash_password",
    "main",
    "parse_hash",
    "verify_password",
]

#: scrypt CPU/memory cost of new hashes (2**14: ~16 MiB and ~50-100 ms per check).
DEFAULT_N = 2**14
#: scrypt block size of new hashes.
DEFAULT_R = 8
#: scrypt parallelism of new hashes.
DEFAULT_P = 1
#: Bytes of random salt and of derived key.
SALT_BYTES = 16
KEY_BYTES = 32
# Bounds accepted when parsing (a configured hash must not make a login eat the host).
_MAX_N = 2**20
_MAX_RP = 64


@dataclass(frozen=True)
class PasswordHash:
    """A parsed hash: scrypt parameters, salt and derived key."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        key = base64.b64encode(self.key).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt}${key}"


def parse_hash(encoded: str) -> PasswordHash:
    """Parse ``encoded``; ``ValueError`` (never echoing the value) if it is not a hash."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(
            "not a password hash: expected 'scrypt$n$r$p$salt$hash' "
            "(make one with 'python -m api.passwords')"
        )
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
    return PasswordHash(n, r, p, salt, key)


def _derive(password: str, n: int, r: int, p: int, salt: bytes, size: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=size)


def hash_password(password: str, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """A new salted hash of ``password`` in the format above."""
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, n, r, p, salt, KEY_BYTES)
    return PasswordHash(n, r, p, salt, key).encode()


def verify_password(password: str, encoded: str | PasswordHash) -> bool:
    """Whether ``password`` matches; constant-time comparison of the derived keys."""
    parsed = parse_hash(encoded) if isinstance(encoded, str) else encoded
    key = _derive(password, parsed.n, parsed.r, parsed.p, parsed.salt, len(parsed.key))
    return hmac.compare_digest(key, parsed.key)


def main(argv: list[str] | None = None) -> int:
    """Print the hash of a password read from the terminal (twice) or from stdin."""
    parser = argparse.ArgumentParser(prog="python -m api.passwords", description=__doc__)
    parser.add_argument("--stdin", action="store_true", help="read the password from stdin")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="scrypt cost (power of 2)")
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
    if args.n < 2 or args.n > _MAX_N or args.n & (args.n - 1):
        print(f"--n must be a power of 2 between 2 and {_MAX_N}", file=sys.stderr)
        return 1
    print(hash_password(password, n=args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
