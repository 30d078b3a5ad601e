"""What runs of one job coordinate on: the job lease, run markers, progress.

``admit`` is the one gate of a run: in one atomic step it refuses a run already
marked done, takes the job lease, and counts the start of the attempt. Because the
"done" check and the lease are one step, however many copies of a message arrive at
once, the slurper runs at most once per attempt (a copy admitted after the first
finished finds the run marked done; the marker is set in the same step that releases
the lease, ``Lease.mark_done``).

Cancelling: ``request_cancel`` marks a run cancelled unless it is done or committing;
``admit`` refuses a run marked cancelled (a queued run is skipped), a running run
sees the mark through ``cancel_requested`` (at batch boundaries and from a timer,
``workers.cancel``), and the lease's ``begin_commit`` is the last gate: in one atomic step it
checks the lease is still the run's, refuses a cancelled run or marks it committing,
after which ``request_cancel`` is refused (the release clears the mark). So a commit
either completes or never starts, whatever the timing.

``RedisCoordination`` is the real thing, shared by every worker on every host.
``LocalCoordination`` does the same inside one process (``slurp dev`` and manual
runs without a broker, where there is no Redis): a lease is a lock-protected entry,
markers live in memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

import redis

from workers.lease import (
    CommitGate,
    JobLease,
    cancel_key,
    committing_key,
    done_key,
    lease_key,
    run_of_token,
)

__all__ = [
    "Admission",
    "CancelAnswer",
    "Coordination",
    "Lease",
    "LocalCoordination",
    "RedisCoordination",
    "cancel_key",
]

#: Lifetime of the per-run markers in Redis (success, start counts, cancel requests).
MARKER_TTL_S = 30 * 86_400

#: What ``request_cancel`` did: ``requested`` (the run stops or is skipped), or refused
#: because the run is ``committing`` (it completes) or ``done`` (it succeeded).
CancelAnswer = Literal["requested", "committing", "done"]

#: KEYS: done marker, lease, start counter, cancel marker. ARGV: token, lease ttl (ms),
#: marker ttl (s). Returns {2, 0} done, {3, 0} cancelled, {0, 0} lease busy,
#: {1, starts} admitted.
_ADMIT = """
if redis.call('exists', KEYS[1]) == 1 then return {2, 0} end
if redis.call('exists', KEYS[4]) == 1 then return {3, 0} end
if not redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, 0} end
local starts = redis.call('incr', KEYS[3])
redis.call('expire', KEYS[3], ARGV[3])
return {1, starts}
"""
#: KEYS: cancel marker, committing marker, done marker. ARGV: who, marker ttl (s).
_REQUEST_CANCEL = """
if redis.call('exists', KEYS[3]) == 1 then return 'done' end
if redis.call('exists', KEYS[2]) == 1 then return 'committing' end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 'requested'
"""


class Lease(Protocol):
    def held(self) -> bool: ...
    def begin_commit(self) -> CommitGate:
        """Atomically: the lease is still the run's, the run is not cancelled, and it
        is marked committing (a cancel is refused until the release)."""

    def mark_done(self) -> None:
        """The run succeeded: mark it done, at the latest atomically with the release."""

    def __enter__(self) -> Lease: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class Admission:
    """The answer of ``admit``: ``admitted`` (``lease`` is held, ``starts`` counts the
    starts of this attempt, more than 1 when its worker died before), ``done`` (the
    run already succeeded), ``cancelled`` (an operator cancelled it) or ``busy``
    (another run holds the job)."""

    status: Literal["admitted", "done", "cancelled", "busy"]
    lease: Lease | None = None
    starts: int = 0


class Coordination(Protocol):
    def admit(self, job: str, run_id: str, attempt: int, holder: str, ttl_s: float) -> Admission:
        """Atomically: refuse a run marked done or cancelled; else take ``job``'s lease
        for the run and count a start of ``attempt``."""

    def request_cancel(self, run_id: str, by: str) -> CancelAnswer:
        """Mark ``run_id`` cancelled (``by``: who asks), unless it is committing or done."""

    def cancel_requested(self, run_id: str) -> str | None:
        """Who cancelled ``run_id`` ('' if unknown); None if nobody did."""

    def lease_run(self, job: str) -> str | None:
        """The run id holding ``job``'s lease right now (None: nobody)."""

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None: ...


class RedisCoordination:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)
        self._request_cancel = client.register_script(_REQUEST_CANCEL)

    def admit(self, job: str, run_id: str, attempt: int, holder: str, ttl_s: float) -> Admission:
        lease = JobLease(self.client, job, holder, ttl_s, run_id=run_id)
        keys = [lease.done_key, lease.key, f"slurp:starts:{run_id}:{attempt}", cancel_key(run_id)]
        status, starts = self._admit(keys=keys, args=[lease.token, lease.ttl_ms, MARKER_TTL_S])
        if status == 2:
            return Admission("done")
        if status == 3:
            return Admission("cancelled")
        if status == 0:
            return Admission("busy")
        return Admission("admitted", lease, int(starts))

    def lease_run(self, job: str) -> str | None:
        return run_of_token(self.client.get(lease_key(job)))

    def request_cancel(self, run_id: str, by: str) -> CancelAnswer:
        keys = [cancel_key(run_id), committing_key(run_id), done_key(run_id)]
        answer = self._request_cancel(keys=keys, args=[by, MARKER_TTL_S])
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        assert text in ("requested", "committing", "done")
        return text  # type: ignore[return-value]

    def cancel_requested(self, run_id: str) -> str | None:
        value = self.client.get(cancel_key(run_id))
        if value is None:
            return None
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None:
        key = f"slurp:progress:{run_id}"
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
        pipe.expire(key, 86_400)
        pipe.execute()


class _LocalLease:
    def __init__(self, owner: LocalCoordination, job: str, run_id: str) -> None:
        self.owner = owner
        self.job = job
        self.run_id = run_id
        self.token = object()

    def held(self) -> bool:
        with self.owner.lock:
            return self.owner.leases.get(self.job, (None, ""))[0] is self.token

    def begin_commit(self) -> CommitGate:
        with self.owner.lock:
            if self.owner.leases.get(self.job, (None, ""))[0] is not self.token:
                return "lost"
            if self.run_id in self.owner.cancelled:
                return "cancelled"
            self.owner.committing.add(self.run_id)
            return "open"

    def mark_done(self) -> None:
        with self.owner.lock:
            self.owner.done.add(self.run_id)

    def __enter__(self) -> _LocalLease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self.owner.lock:
            self.owner.committing.discard(self.run_id)
            if self.owner.leases.get(self.job, (None, ""))[0] is self.token:
                del self.owner.leases[self.job]


class LocalCoordination:
    """In-process coordination; ``progress`` holds the latest counts per run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: job -> (token, run id) of the lease holder
        self.leases: dict[str, tuple[object, str]] = {}
        self.done: set[str] = set()
        self.cancelled: dict[str, str] = {}
        self.committing: set[str] = set()
        self.starts: dict[tuple[str, int], int] = {}
        self.progress: dict[str, tuple[float, dict[str, int]]] = {}

    def admit(self, job: str, run_id: str, attempt: int, holder: str, ttl_s: float) -> Admission:
        with self.lock:
            if run_id in self.done:
                return Admission("done")
            if run_id in self.cancelled:
                return Admission("cancelled")
            if job in self.leases:
                return Admission("busy")
            lease = _LocalLease(self, job, run_id)
            self.leases[job] = (lease.token, run_id)
            count = self.starts.get((run_id, attempt), 0) + 1
            self.starts[(run_id, attempt)] = count
            return Admission("admitted", lease, count)

    def lease_run(self, job: str) -> str | None:
        with self.lock:
            held = self.leases.get(job)
            return held[1] if held else None

    def request_cancel(self, run_id: str, by: str) -> CancelAnswer:
        with self.lock:
            if run_id in self.done:
                return "done"
            if run_id in self.committing:
                return "committing"
            self.cancelled[run_id] = by
            return "requested"

    def cancel_requested(self, run_id: str) -> str | None:
        with self.lock:
            return self.cancelled.get(run_id)

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None:
        with self.lock:
            self.progress[run_id] = (time.monotonic(), dict(fields))
