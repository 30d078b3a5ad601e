"""``CancelWatch``: turns an operator's cancel request (a mark in the coordination
store, ``Coordination.request_cancel``) into the run's ``CancelToken``.

A timer (``workers.timers``) asks ``Coordination.cancel_requested`` every ``CANCEL_POLL_S``
while the run goes on, and cancels the token when the run was cancelled: that wakes
the run's waits and interrupts its blocked fetches at once (``datasources.cancel``),
and the runner's checks at batch boundaries stop the run. The cancel latency is thus
at most the poll interval plus the time an interrupted call takes to return.

A failing poll (Redis briefly away) is logged once and retried at every interval: an
observer never breaks a run.
"""

from __future__ import annotations

import logging
from types import TracebackType

from datasources.cancel import CancelToken
from workers.coordination import Coordination
from workers.timers import Timer, process_timers

__all__ = ["CANCEL_POLL_S", "CancelWatch"]

logger = logging.getLogger(__name__)

#: How often a running run looks for a cancel request (one Redis GET each time).
CANCEL_POLL_S = 0.2


class CancelWatch:
    """While entered, cancels ``token`` once ``run_id`` is marked cancelled."""

    def __init__(
        self,
        coord: Coordination,
        run_id: str,
        token: CancelToken,
        poll_s: float = CANCEL_POLL_S,
    ) -> None:
        self.coord = coord
        self.run_id = run_id
        self.token = token
        self.poll_s = poll_s
        #: Who cancelled the run ('' if unknown); None while nobody has.
        self.requested_by: str | None = None
        self._failing = False
        self._timer: Timer | None = None

    def __enter__(self) -> CancelWatch:
        self._timer = process_timers().every(self.poll_s, self._poll_once)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel(wait=True)  # no poll after the run

    def poll(self) -> bool:
        """Look once; True if the run was cancelled (and the token is)."""
        who = self.coord.cancel_requested(self.run_id)
        if who is None:
            return False
        self.requested_by = who
        self.token.cancel(f"run {self.run_id} was cancelled" + (f" by {who}" if who else ""))
        return True

    def _poll_once(self) -> bool:
        """One look (every ``poll_s``); False, ending the watch, once cancelled."""
        try:
            cancelled = self.poll()
            self._failing = False
            return not cancelled
        except Exception as exc:  # keep the run going; look again later
            if not self._failing:  # once per outage, not every poll
                logger.warning("looking for a cancel of run %s failed: %s", self.run_id, exc)
            self._failing = True
            return True
