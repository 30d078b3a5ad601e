"""``Runtime``: what datasources use besides their config and the run context.

One per worker process (it holds the OAuth2 token cache shared by runs). Build it with
:meth:`Runtime.from_settings`; tests build it directly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from datasources.auth import TokenCache
from datasources.http import Backoff
from datasources.policy import JobPolicy
from datasources.redaction import Redactor

if TYPE_CHECKING:
    from slurp.settings import Settings
    from storage.reader import CollectionReader

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_RETRY_AFTER_MAX_S",
    "Runtime",
]

#: First wait before retrying a failed HTTP request; doubles per retry.
DEFAULT_BACKOFF_BASE_S = 0.5
#: Longest wait between two HTTP retries (without a Retry-After).
DEFAULT_BACKOFF_MAX_S = 30.0
#: A Retry-After longer than this fails the fetch instead of blocking the worker.
DEFAULT_RETRY_AFTER_MAX_S = 120.0


@dataclass
class Runtime:
    """Shared services and defaults of datasources.

    - ``collections``: reads other slurp collections (``collection`` sources need it);
    - ``environ``: where secrets are read from, at fetch time (default ``os.environ``),
      through ``redactor()``;
    - ``policy``: what jobs may reach (files, variables, hosts, slurper modules); the
      default is the safe one, ``JobPolicy()``;
    - ``http_timeout_s`` / ``http_retries``: HTTP defaults where a config sets none;
    - ``backoff_base_s``, ``backoff_max_s``, ``retry_after_max_s``: the retry waits;
    - ``token_cache``: OAuth2 tokens, reused until they expire;
    - ``sleep``: how retries wait (tests may record the waits).
    """

    collections: CollectionReader | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    policy: JobPolicy = field(default_factory=JobPolicy)
    http_timeout_s: float = 30.0
    http_retries: int = 3
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S
    token_cache: TokenCache = field(default_factory=TokenCache)
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(
        cls, settings: Settings, collections: CollectionReader | None = None
    ) -> Runtime:
        """The runtime of a worker configured by ``settings``."""
        return cls(
            collections=collections,
            policy=JobPolicy.from_settings(settings),
            http_timeout_s=settings.http_timeout_s,
            http_retries=settings.http_retries,
        )

    def redactor(self) -> Redactor:
        """A new redactor reading ``environ`` as the policy allows (one per fetch)."""
        return Redactor(self.environ, self.policy.check_env)

    def backoff(self, retries: int | None = None) -> Backoff:
        """The retry schedule, with ``retries`` (default ``http_retries``)."""
        return Backoff(
            retries=self.http_retries if retries is None else retries,
            base_s=self.backoff_base_s,
            max_s=self.backoff_max_s,
            retry_after_max_s=self.retry_after_max_s,
        )
