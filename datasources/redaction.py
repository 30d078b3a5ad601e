"""Secrets: read from the environment at fetch time, and kept out of every message.

A source that uses secrets reads each one with :meth:`Redactor.secret` (which
remembers its value) and passes every text it logs or puts into an error through the
redactor, which replaces each remembered value with ``***``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

from datasources.errors import SecretMissingError

__all__ = ["MASK", "Redactor"]

MASK = "***"


class Redactor:
    """Remembers secret values and masks them in texts. ``redactor(text)`` masks."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._secrets: set[str] = set()

    def secret(self, env_name: str, what: str = "secret") -> str:
        """The value of ``env_name``; ``SecretMissingError`` (naming the variable, not a
        value) when it is unset or empty."""
        value = self._environ.get(env_name)
        if not value:
            raise SecretMissingError(
                f"environment variable {env_name} (the {what}) is not set or empty"
            )
        self.add(value)
        return value

    def add(self, value: str) -> None:
        """Mask ``value`` from now on (also its Basic-auth and URL-encoded forms)."""
        if not value:
            return
        self._secrets.add(value)
        for encoded in (quote(value, safe=""), quote_plus(value)):
            if encoded != value:
                self._secrets.add(encoded)

    def add_basic(self, username: str, password: str) -> None:
        """Mask the ``Authorization: Basic`` form of a username and password too."""
        self.add(password)
        self.add(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))

    def __call__(self, text: str) -> str:
        # Longest first, so a secret containing another is masked whole.
        for value in sorted(self._secrets, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text
