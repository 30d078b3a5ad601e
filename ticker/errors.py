"""Errors raised by the ticker package.

    TickerError
     ├── ScheduleError     a schedule has no fire time where one is needed (e.g. '0 0 30 2 *')
     └── ClaimError        the claim+publish script gave an answer it should never give

Errors of Redis (``redis.RedisError``) and MongoDB (``pymongo.errors.PyMongoError``)
pass through unchanged: they are transient far more often than not, and the loop
retries them on its next pass.
"""

from __future__ import annotations

__all__ = ["ClaimError", "ScheduleError", "TickerError"]


class TickerError(Exception):
    """Base class of every error this package raises on purpose."""


class ScheduleError(TickerError, ValueError):
    """A cron expression that is valid syntax but never (or no longer) fires."""


class ClaimError(TickerError):
    """The atomic claim returned something unexpected (a bug, or a foreign script)."""
