"""One run of a job at a time: a lease in Redis that expires if its holder dies.

``SET slurp:lease:<job> <token> NX PX <ttl>`` takes the lease (``workers.coordination``
does it in one script with the run's "already done?" check); the token starts with
the run id (``<run_id>|<holder>|<random>``) so anyone can tell which run holds a job.
The holder renews it
every ``ttl / 3`` by a timer (``workers.timers``; compare-and-expire in Lua, so only the
holder can renew or release it). If the holder process dies, the lease expires after
at most ``ttl_s`` and the job's next message can run.

Right before committing, a run passes ``begin_commit``, one script: the lease must
still be the run's (a lease lost meanwhile, e.g. by a stalled process, aborts the
run), the run must not be cancelled, and it is marked committing (cancel requests are
refused from then on). The release clears that mark and, for a run that succeeded,
sets its done marker, in the same step.
"""

from __future__ import annotations

import logging
import threading
import uuid
from types import TracebackType
from typing import Literal

import redis

from workers.timers import Timer, process_timers

__all__ = [
    "COMMITTING_TTL_S",
    "DONE_MARKER_TTL_S",
    "CommitGate",
    "JobLease",
    "cancel_key",
    "committing_key",
    "done_key",
    "lease_key",
    "run_of_token",
]

logger = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
#: KEYS: lease, the run's done marker, its committing marker. ARGV: token, "1" to
#: mark the run done, the done marker's ttl (s). The done marker is set and the
#: committing marker cleared before the lease goes, in one step.
_RELEASE = """
if ARGV[2] == '1' then
  redis.call('set', KEYS[2], '1', 'EX', ARGV[3])
end
redis.call('del', KEYS[3])
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
#: KEYS: lease, the run's cancel marker, its committing marker. ARGV: token, the
#: committing marker's ttl (s). Returns the ``CommitGate``.
_BEGIN_COMMIT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 'lost' end
if redis.call('exists', KEYS[2]) == 1 then return 'cancelled' end
redis.call('set', KEYS[3], '1', 'EX', ARGV[2])
return 'open'
"""
#: What ``begin_commit`` found: ``open`` (commit; a cancel is refused from now on),
#: ``cancelled`` (an operator cancelled the run) or ``lost`` (the lease is not the
#: run's any more).
CommitGate = Literal["open", "cancelled", "lost"]
#: Lifetime of a run's "committing" marker if its worker dies before clearing it.
COMMITTING_TTL_S = 3600
#: Lifetime of a run's done marker (duplicates of the run arriving later are skipped).
DONE_MARKER_TTL_S = 30 * 86_400


def lease_key(job: str) -> str:
    return f"slurp:lease:{job}"


def done_key(run_id: str) -> str:
    return f"slurp:done:{run_id}"


def cancel_key(run_id: str) -> str:
    """The Redis key marking ``run_id`` cancelled (its value: who asked)."""
    return f"slurp:cancel:{run_id}"


def committing_key(run_id: str) -> str:
    return f"slurp:committing:{run_id}"


def run_of_token(token: str | bytes | None) -> str | None:
    """The run id a lease token names (None: no token, or one without a run id)."""
    if token is None:
        return None
    text = token.decode() if isinstance(token, bytes) else token
    run_id, sep, _ = text.partition("|")
    return run_id if sep else None


class JobLease:
    """A renewable, expiring lease on one job, for one run. Take it with ``acquire()``
    (or ``RedisCoordination.admit``), then hold it with ``with lease:``."""

    def __init__(
        self, client: redis.Redis, job: str, holder: str, ttl_s: float, run_id: str = ""
    ) -> None:
        self.client = client
        self.key = lease_key(job)
        self.token = f"{run_id}|{holder}|{uuid.uuid4().hex[:8]}"
        self.done_key = done_key(run_id)
        self.run_id = run_id
        self.done = False
        self.ttl_ms = max(int(ttl_s * 1000), 100)
        self.lost = threading.Event()
        self._renewal: Timer | None = None

    def acquire(self) -> bool:
        """Take the lease if free; False if another run holds it."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def held(self) -> bool:
        """Still ours, checked against Redis (not only the renewal timer's view)."""
        return not self.lost.is_set() and self.holder() == self.token

    def renew(self) -> bool:
        ok = bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        if not ok:
            self.lost.set()
        return ok

    def begin_commit(self) -> CommitGate:
        """One atomic step: the lease is still ours, the run is not cancelled, and it
        is marked committing (until the release)."""
        if self.lost.is_set():
            return "lost"
        keys = [self.key, cancel_key(self.run_id), committing_key(self.run_id)]
        answer = self.client.register_script(_BEGIN_COMMIT)(
            keys=keys, args=[self.token, COMMITTING_TTL_S]
        )
        gate = answer.decode() if isinstance(answer, bytes) else str(answer)
        assert gate in ("open", "cancelled", "lost"), gate
        if gate == "lost":
            self.lost.set()
        return gate  # type: ignore[return-value]

    def mark_done(self) -> None:
        """The run succeeded: its done marker is set when the lease is released, in the
        same atomic step (a copy of the run admitted later finds it done)."""
        self.done = True

    def release(self) -> None:
        # Renewal stops, a renewal in progress is not waited for: racing the release,
        # it finds the token gone and changes nothing.
        self._stop_renewal()
        try:
            keys = [self.key, self.done_key, committing_key(self.run_id)]
            args = [self.token, "1" if self.done else "0", DONE_MARKER_TTL_S]
            self.client.register_script(_RELEASE)(keys=keys, args=args)
        except redis.RedisError:  # it expires on its own
            logger.warning("could not release %s; it expires in %d ms", self.key, self.ttl_ms)

    def __enter__(self) -> JobLease:
        self._renewal = process_timers().every(self.ttl_ms / 3000, self._renew_once)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _stop_renewal(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()

    def _renew_once(self) -> bool:
        """One renewal (every ttl/3 while held); False once the lease is lost."""
        try:
            if self.renew():
                return True
            if self._renewal is not None and not self._renewal.cancelled:  # not released
                logger.error("lease %s was lost (expired or taken over)", self.key)
            return False
        except redis.RedisError as exc:  # keep trying until the ttl runs out
            logger.warning("renewing lease %s failed: %s", self.key, exc)
            return True
