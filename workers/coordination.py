"""What runs of one job coordinate on: the job lease, run markers, progress.

``admit`` is the one gate of a run: in one atomic step it refuses a run already
marked done, takes the job lease, and counts the start of the attempt. Because the
"done" check and the lease are one step, however many copies of a message arrive at
once, the slurper runs at most once per attempt (a copy admitted after the first
finished finds the run marked done; the marker is set before the lease is released).

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

from workers.lease import JobLease, lease_key, run_of_token

__all__ = ["Admission", "Coordination", "Lease", "LocalCoordination", "RedisCoordination"]

#: Lifetime of the per-run markers in Redis (success, start counts).
MARKER_TTL_S = 30 * 86_400

#: KEYS: done marker, lease, start counter. ARGV: token, lease ttl (ms), marker ttl (s).
#: Returns {2, 0} done, {0, 0} lease busy, {1, starts} admitted.
_ADMIT = """
if redis.call('exists', KEYS[1]) == 1 then return {2, 0} end
if not redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, 0} end
local starts = redis.call('incr', KEYS[3])
redis.call('expire', KEYS[3], ARGV[3])
return {1, starts}
"""


class Lease(Protocol):
    def held(self) -> bool: ...
    def __enter__(self) -> Lease: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class Admission:
    """The answer of ``admit``: ``admitted`` (``lease`` is held, ``starts`` counts the
    starts of this attempt, more than 1 when its worker died before), ``done`` (the
    run already succeeded) or ``busy`` (another run holds the job)."""

    status: Literal["admitted", "done", "busy"]
    lease: Lease | None = None
    starts: int = 0


class Coordination(Protocol):
    def admit(self, job: str, run_id: str, attempt: int, holder: str, ttl_s: float) -> Admission:
        """Atomically: refuse a run marked done; else take ``job``'s lease for the run
        and count a start of ``attempt``."""

    def mark_done(self, run_id: str) -> None:
        """Mark ``run_id`` done; call it while holding the lease."""

    def lease_run(self, job: str) -> str | None:
        """The run id holding ``job``'s lease right now (None: nobody)."""

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None: ...


class RedisCoordination:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)

    def admit(self, job: str, run_id: str, attempt: int, holder: str, ttl_s: float) -> Admission:
        lease = JobLease(self.client, job, holder, ttl_s, run_id=run_id)
        keys = [f"slurp:done:{run_id}", lease.key, f"slurp:starts:{run_id}:{attempt}"]
        status, starts = self._admit(keys=keys, args=[lease.token, lease.ttl_ms, MARKER_TTL_S])
        if status == 2:
            return Admission("done")
        if status == 0:
            return Admission("busy")
        return Admission("admitted", lease, int(starts))

    def mark_done(self, run_id: str) -> None:
        self.client.set(f"slurp:done:{run_id}", "1", ex=MARKER_TTL_S)

    def lease_run(self, job: str) -> str | None:
        return run_of_token(self.client.get(lease_key(job)))

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

    def __enter__(self) -> _LocalLease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self.owner.lock:
            if self.owner.leases.get(self.job, (None, ""))[0] is self.token:
                del self.owner.leases[self.job]


class LocalCoordination:
    """In-process coordination; ``progress`` holds the latest counts per run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: job -> (token, run id) of the lease holder
        self.leases: dict[str, tuple[object, str]] = {}
        self.done: set[str] = set()
        self.starts: dict[tuple[str, int], int] = {}
        self.progress: dict[str, tuple[float, dict[str, int]]] = {}

    def admit(self, job: str, run_id: str, attempt: int, holder: str, ttl_s: float) -> Admission:
        with self.lock:
            if run_id in self.done:
                return Admission("done")
            if job in self.leases:
                return Admission("busy")
            lease = _LocalLease(self, job, run_id)
            self.leases[job] = (lease.token, run_id)
            count = self.starts.get((run_id, attempt), 0) + 1
            self.starts[(run_id, attempt)] = count
            return Admission("admitted", lease, count)

    def mark_done(self, run_id: str) -> None:
        with self.lock:
            self.done.add(run_id)

    def lease_run(self, job: str) -> str | None:
        with self.lock:
            held = self.leases.get(job)
            return held[1] if held else None

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None:
        with self.lock:
            self.progress[run_id] = (time.monotonic(), dict(fields))
