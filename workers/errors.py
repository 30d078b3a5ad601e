"""Errors raised by the workers package.

WorkerError
 ├── RejectedMessage     the message cannot be run at all (malformed, unknown job);
 │                       recorded as JobRejected, never retried
 ├── RunFailed           a run failed; ``will_retry`` says whether dramatiq retries it
 ├── RunTimeout          a run exceeded its job's ``timeout_s``
 └── LeaseLost           the job lease expired under a running run (its holder stalled)
"""

from __future__ import annotations

from dramatiq.errors import Retry

__all__ = ["LeaseLost", "RejectedMessage", "RunFailed", "RunTimeout", "WorkerError"]


class WorkerError(Exception):
    """Base class of every error this package raises on purpose."""


class RejectedMessage(WorkerError):
    """A message that can never run: it is logged, recorded and dropped."""


class RunFailed(WorkerError, Retry):
    """Raised out of the actor after a failed run was recorded. ``will_retry`` tells the
    retry middleware what the run's JobFailed event already announced; as a dramatiq
    ``Retry`` it carries the delay of the job's own backoff policy."""

    def __init__(self, message: str, will_retry: bool, delay_ms: int = 0) -> None:
        Retry.__init__(self, message, delay=delay_ms if will_retry else None)
        self.will_retry = will_retry
        self.delay_ms = delay_ms


class RunTimeout(WorkerError):
    """The run took longer than the job's ``timeout_s``."""


class LeaseLost(WorkerError):
    """The job lease was lost during the run; the run aborts before committing."""
