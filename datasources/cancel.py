"""``CancelToken``: how the cancellation of a run reaches the code fetching its data.

The worker holds one token per run (``RunContext.cancel``) and calls ``cancel()`` when
an operator cancels the run. Datasources use it three ways:

- ``check()`` between units of work (pages, retries, fetched batches) raises
  ``RunCancelled``;
- ``wait(seconds)`` instead of ``time.sleep`` (retry backoff): it returns True at once
  when the run is cancelled;
- ``interrupting(callback)`` around a blocking call that a check cannot reach (a
  slow HTTP answer, a long SQL query): ``callback`` is called once, from the
  cancelling thread, when the run is cancelled while the block runs (at once if it
  was cancelled before). It must be safe to call from another thread: shut a socket
  down, send the database a cancel request. The blocked call then fails in its own
  way (a read error, "query cancelled"); whoever handles the failure checks
  ``cancelled`` and reports the run as cancelled, not as failed.

A failing callback is logged and ignored: cancelling never raises.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CancelToken", "RunCancelled"]

log = logging.getLogger(__name__)


class RunCancelled(Exception):
    """The run was cancelled by an operator (not a datasource error: never retried)."""


class CancelToken:
    """Set once, by ``cancel()``; thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self.reason = "the run was cancelled"

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str = "") -> None:
        """Cancel: wake ``wait``, make ``check`` raise, call the registered callbacks."""
        with self._lock:
            if self._event.is_set():
                return
            if reason:
                self.reason = reason
            self._event.set()
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            _call(callback)

    def check(self) -> None:
        """Raise ``RunCancelled`` if the run was cancelled."""
        if self._event.is_set():
            raise RunCancelled(self.reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) if the run is or gets cancelled."""
        return self._event.wait(seconds)

    @contextmanager
    def interrupting(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call ``callback`` if the run is cancelled while the block runs."""
        with self._lock:
            key = next(self._ids)
            self._callbacks[key] = callback
            already = self._event.is_set()
        if already:
            _call(callback)
        try:
            yield
        finally:
            with self._lock:
                self._callbacks.pop(key, None)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # cancelling never fails; the run stops at its next check anyway
        log.exception("interrupting a cancelled run's fetch failed (ignored)")
