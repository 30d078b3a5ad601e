"""Secrets: read from the environment at fetch time, and kept out of every message.

A source that uses secrets reads each one with :meth:`Redactor.secret` (which first
asks the job policy whether the variable may be read at all, then remembers its value)
and passes every text it logs or puts into an error through the redactor, which
replaces each remembered value with ``***`` and masks the userinfo and credential-like
query values of URLs (``contracts.masking.scrub_urls``). Every variable a job reads
goes through here: ``${env.NAME}``, the ``*_env`` fields of ``auth`` and ``sql``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from urllib.parse import quote, quote_plus

from contracts.masking import MASK, scrub_urls
from datasources.errors import SecretMissingError

__all__ = ["MASK", "EnvCheck", "Redactor"]

#: ``check(name, what)``: raises (``NotAllowedError``) when a job may not read ``name``.
EnvCheck = Callable[[str, str], None]


class Redactor:
    """Reads allowed secrets and masks them in texts. ``redactor(text)`` masks.

    ``check`` is the job policy's ``JobPolicy.check_env`` (``Runtime.redactor()``
    passes it): it is called before every read.
    """

    def __init__(self, environ: Mapping[str, str], check: EnvCheck) -> None:
        self._environ = environ
        self._check = check
        self._secrets: set[str] = set()

    def secret(self, env_name: str, what: str = "secret") -> str:
        """The value of ``env_name``: ``NotAllowedError`` when the policy refuses it,
        ``SecretMissingError`` (naming the variable, not a value) when it is unset or
        empty."""
        self._check(env_name, what)
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
        return scrub_urls(text)
