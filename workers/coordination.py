"""What runs of one job coordinate on: the job lease, run markers, progress.

``RedisCoordination`` is the real thing, shared by every worker on every host.
``LocalCoordination`` does the same inside one process (``slurp dev`` and manual
runs without a broker, where there is no Redis): a lease is a lock-protected entry,
markers live in memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

import redis

from workers.lease import JobLease

__all__ = ["Coordination", "Lease", "LocalCoordination", "RedisCoordination"]

#: Lifetime of the per-run markers in Redis (success, start counts).
MARKER_TTL_S = 30 * 86_400


class Lease(Protocol):
    def acquire(self) -> bool: ...
    def held(self) -> bool: ...
    def __enter__(self) -> Lease: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Coordination(Protocol):
    def lease(self, job: str, holder: str, ttl_s: float) -> Lease:
        """A lease on ``job`` (not yet acquired)."""

    def already_done(self, run_id: str) -> bool:
        """Was ``run_id`` marked done?"""

    def mark_done(self, run_id: str) -> None: ...

    def count_start(self, run_id: str, attempt: int) -> int:
        """Count one more start of this attempt; return the count."""

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None: ...


class RedisCoordination:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def lease(self, job: str, holder: str, ttl_s: float) -> Lease:
        return JobLease(self.client, job, holder, ttl_s)

    def already_done(self, run_id: str) -> bool:
        return bool(self.client.exists(f"slurp:done:{run_id}"))

    def mark_done(self, run_id: str) -> None:
        self.client.set(f"slurp:done:{run_id}", "1", ex=MARKER_TTL_S)

    def count_start(self, run_id: str, attempt: int) -> int:
        key = f"slurp:starts:{run_id}:{attempt}"
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, MARKER_TTL_S)
        return int(pipe.execute()[0])

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None:
        key = f"slurp:progress:{run_id}"
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
        pipe.expire(key, 86_400)
        pipe.execute()


class _LocalLease:
    def __init__(self, owner: LocalCoordination, job: str, ttl_s: float) -> None:
        self.owner = owner
        self.job = job
        self.token = object()

    def acquire(self) -> bool:
        with self.owner.lock:
            if self.job in self.owner.leases:
                return False
            self.owner.leases[self.job] = self.token
            return True

    def held(self) -> bool:
        with self.owner.lock:
            return self.owner.leases.get(self.job) is self.token

    def __enter__(self) -> _LocalLease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self.owner.lock:
            if self.owner.leases.get(self.job) is self.token:
                del self.owner.leases[self.job]


class LocalCoordination:
    """In-process coordination; ``progress`` holds the latest counts per run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leases: dict[str, object] = {}
        self.done: set[str] = set()
        self.starts: dict[tuple[str, int], int] = {}
        self.progress: dict[str, tuple[float, dict[str, int]]] = {}

    def lease(self, job: str, holder: str, ttl_s: float) -> Lease:
        return _LocalLease(self, job, ttl_s)

    def already_done(self, run_id: str) -> bool:
        with self.lock:
            return run_id in self.done

    def mark_done(self, run_id: str) -> None:
        with self.lock:
            self.done.add(run_id)

    def count_start(self, run_id: str, attempt: int) -> int:
        with self.lock:
            count = self.starts.get((run_id, attempt), 0) + 1
            self.starts[(run_id, attempt)] = count
            return count

    def publish_progress(self, run_id: str, fields: Mapping[str, int]) -> None:
        with self.lock:
            self.progress[run_id] = (time.monotonic(), dict(fields))
