"""``SourceSession``: the sources of one run, committed or aborted together.

``run_slurper(job, ctx, runtime, progress, session)`` adds every source it builds to
``session``; whoever stores the records ends the session exactly once:

    session = SourceSession()
    records = run_slurper(job, ctx, runtime, progress, session)
    try:
        store_run(strategy, run_id, records)
    except Exception:
        session.abort()          # give back what queues handed out
        raise
    session.commit()             # acknowledge it: the records are stored

- ``commit()`` calls each source's ``commit`` (``Source`` documents the contract), in
  the job's order; ``abort()`` each source's ``abort``. The first of the two calls
  wins, later calls do nothing: a session ends once.
- A failing hook is logged and never raised: after a commit the data is in and the
  run has succeeded (the source makes a later redelivery harmless); after an abort
  the run has failed already, with its own error.
- A worker killed before either call leaves the sources' connections to die with it:
  a queue then hands the unacknowledged messages out again (that is why a
  transactional source must tolerate redelivery).

Without a session (``run_slurper(..., session=None)``) the records are a read-only
look: the sources are aborted when the iterator is exhausted or closed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from datasources.base import Source

__all__ = ["SourceSession"]

log = logging.getLogger(__name__)

State = Literal["open", "committed", "aborted"]


class SourceSession:
    """The sources of one run and how the run ended (``state``)."""

    def __init__(self) -> None:
        self._sources: list[Source[Any]] = []
        self._lock = threading.Lock()
        self.state: State = "open"

    def add(self, source: Source[Any]) -> None:
        """Take part in this session (``run_slurper`` adds every source it builds)."""
        with self._lock:
            if self.state != "open":
                raise RuntimeError(f"the session is {self.state} already")
            self._sources.append(source)

    @property
    def sources(self) -> tuple[Source[Any], ...]:
        return tuple(self._sources)

    def commit(self) -> None:
        """The run's records are stored: acknowledge (each source's ``commit``)."""
        self._end("committed")

    def abort(self) -> None:
        """The run failed: give back (each source's ``abort``)."""
        self._end("aborted")

    def _end(self, state: State) -> None:
        with self._lock:
            if self.state != "open":
                return
            self.state = state
            sources = list(self._sources)
        for source in sources:
            hook = source.commit if state == "committed" else source.abort
            try:
                hook()
            except Exception as exc:  # an observer of the outcome never changes it
                what = "commit" if state == "committed" else "abort"
                log.error(
                    "datasource %r: %s failed: %s: %s",
                    source.name, what, type(exc).__name__, exc,
                )  # fmt: skip
