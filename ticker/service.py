"""The ticker loop: due slots of every scheduled job -> one ``RunJob`` each, exactly once.

One pass (``Ticker.tick``):

1. Re-read definitions if the registry's ``version_token`` changed (one cheap query),
   so created, edited, paused, resumed and deleted jobs take effect on the next pass.
   A stored definition that does not validate is logged and left out; the others run.
2. For each scheduled, non-paused job: ``ticker.cron.due_slots`` from its cursor (the
   later of the last handled slot and the instant its schedule took effect, see
   ``storage.jobs``) to now, then claim + publish each slot to fire
   (``ticker.claims``). A slot someone else claimed is counted, not re-sent.
3. Record the new cursors in the registry (``advance_slots``: one bulk write, and a
   slot only ever moves forwards).

Where the last slot lives: in the registry (MongoDB), beside the definition, so it
survives restarts and shows in listings. The ticker keeps its own copy in memory and
writes only when it moves; exactness does not depend on it, the Redis claim does.

``run_forever`` repeats passes until its stop event is set, waking at the next slot
or after ``poll_s``, whichever comes first; it never sleeps past the stop event. A
failing pass (Redis or MongoDB down) is logged and retried on the next one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from pymongo.errors import PyMongoError

from contracts.base import utcnow
from contracts.jobs import Schedule
from contracts.messages import RunJob
from contracts.publish import DEFAULT_NAMESPACE, DEFAULT_QUEUE
from storage.errors import InvalidJobRecordError
from storage.jobs import JobRecord, JobRegistry
from ticker.claims import CLAIM_PREFIX, DEFAULT_CLAIM_TTL_S, SlotClaimer
from ticker.cron import DEFAULT_MAX_SLOTS, due_slots, next_fire
from ticker.errors import ScheduleError
from ticker.stats import TickerStats

__all__ = ["DEFAULT_POLL_S", "MIN_WAIT_S", "Ticker", "default_ticker_id"]

#: How often definitions are re-read when no slot comes sooner (``SLURP_TICKER_POLL_S``).
DEFAULT_POLL_S = 1.0
#: Shortest wait between two passes, so a frozen or stepping clock cannot spin the loop.
MIN_WAIT_S = 0.01

log = logging.getLogger(__name__)


def default_ticker_id() -> str:
    """``<host>:<pid>:<random>``: unique per ticker instance, readable in claim keys."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Job:
    """What the ticker keeps per scheduled job between passes."""

    name: str
    revision: int
    schedule: Schedule
    cursor: datetime  # slots at or before this are handled
    next_slot: datetime | None = None  # cache of next_fire(schedule, cursor)

    def move_to(self, cursor: datetime) -> None:
        if cursor > self.cursor:
            self.cursor = cursor
            self.next_slot = None


class Ticker:
    """Emits scheduled runs of the jobs in ``registry`` onto ``queue_name``.

    Every replica (process or host) builds its own ``Ticker`` on the same registry and
    Redis; claims make each slot fire once in total. ``clock`` returns aware UTC
    datetimes (inject one for tests). Deployments sharing one Redis keep their claims
    apart with distinct ``claim_prefix`` values. Thread-safe: concurrent ``tick``
    calls on one instance run one at a time.
    """

    def __init__(
        self,
        registry: JobRegistry,
        redis_client: redis.Redis,
        queue_name: str = DEFAULT_QUEUE,
        poll_s: float = DEFAULT_POLL_S,
        clock: Callable[[], datetime] = utcnow,
        *,
        ticker_id: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        claim_ttl_s: int = DEFAULT_CLAIM_TTL_S,
        claim_prefix: str = CLAIM_PREFIX,
        max_slots_per_job: int = DEFAULT_MAX_SLOTS,
        stats: TickerStats | None = None,
    ) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        self.registry = registry
        self.poll_s = poll_s
        self.clock = clock
        self.id = ticker_id or default_ticker_id()
        self.claimer = SlotClaimer(
            redis_client, self.id, queue_name, namespace, claim_ttl_s, claim_prefix
        )
        self.max_slots_per_job = max_slots_per_job
        self.stats = stats or TickerStats()
        self._lock = threading.RLock()  # tick -> refresh re-enters
        self._token: str | None = None
        self._jobs: dict[str, _Job] = {}
        self._pass_started = 0.0

    @property
    def job_names(self) -> list[str]:
        """The jobs scheduled as of the last reload (non-paused, with a schedule)."""
        return sorted(self._jobs)

    def refresh(self) -> bool:
        """Re-read definitions if they changed since the last call; True if they did."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        token = self.registry.version_token()
        if token == self._token:
            return False
        invalid: list[InvalidJobRecordError] = []
        records = self.registry.list(on_invalid=invalid.append)
        for error in invalid:
            log.error("ticker: not scheduling job %r: %s", error.name, error.problem)
        jobs: dict[str, _Job] = {}
        for record in records:
            job = self._job_of(record)
            if job is not None:
                jobs[job.name] = job
        added = jobs.keys() - self._jobs.keys()
        removed = self._jobs.keys() - jobs.keys()
        self._jobs, self._token = jobs, token
        self.stats.record_reload(len(jobs), len(invalid))
        log.info(
            "ticker: definitions reloaded: %d scheduled job(s)%s%s",
            len(jobs),
            f", now scheduling {sorted(added)}" if added else "",
            f", no longer scheduling {sorted(removed)}" if removed else "",
        )
        return True

    def tick(self, now: datetime | None = None) -> list[RunJob]:
        """One pass at ``now`` (default: the clock); returns the runs this ticker enqueued."""
        with self._lock:
            now = (now or self.clock()).astimezone(UTC)
            self._pass_started = time.monotonic()
            try:
                self.refresh()
            except PyMongoError as exc:  # keep scheduling the known jobs meanwhile
                log.warning("ticker: cannot re-read definitions, using the last ones: %s", exc)
                self.stats.record_error(None, exc)
            emitted: list[RunJob] = []
            handled: dict[str, datetime] = {}
            for job in list(self._jobs.values()):
                try:
                    self._tick_job(job, now, emitted, handled)
                except redis.RedisError as exc:  # affects every job: one line, next pass
                    log.warning("ticker: Redis unavailable, retrying next pass: %s", exc)
                    self.stats.record_error(job.name, exc)
                    break
                except Exception as exc:  # one bad job must not stop the others
                    log.exception("ticker: pass over job %r failed", job.name)
                    self.stats.record_error(job.name, exc)
            try:
                self.registry.advance_slots(handled)  # one round trip for every job
            except PyMongoError as exc:  # memory is ahead; claims still stop duplicates
                log.warning("ticker: cannot record handled slots: %s", exc)
                self.stats.record_error(None, exc)
            self.stats.record_tick(now)
            return emitted

    def run_forever(self, stop_event: threading.Event) -> None:
        """Tick until ``stop_event`` is set; returns promptly once it is."""
        log.info("ticker %s: started (poll every %ss)", self.id, self.poll_s)
        while not stop_event.is_set():
            try:
                self.tick()
            except Exception as exc:  # never let the loop die; the next pass retries
                log.exception("ticker: pass failed")
                self.stats.record_error(None, exc)
            stop_event.wait(self.wait_s(self.clock()))
        log.info("ticker %s: stopped", self.id)

    def wait_s(self, now: datetime) -> float:
        """Seconds until the next pass: the next slot of any job, at most ``poll_s``."""
        wait_s = self.poll_s
        for job in list(self._jobs.values()):
            slot = self._next_slot(job)
            if slot is not None:
                wait_s = min(wait_s, (slot - now).total_seconds())
        return max(wait_s, MIN_WAIT_S)

    # -- internals --------------------------------------------------------------------

    def _job_of(self, record: JobRecord) -> _Job | None:
        definition = record.definition
        if definition.schedule is None or definition.paused:
            return None
        cursor = record.schedule_cursor
        known = self._jobs.get(record.name)
        if known is not None and known.schedule == definition.schedule:
            cursor = max(cursor, known.cursor)  # our own progress may be ahead of the store
        job = _Job(record.name, record.revision, definition.schedule, cursor)
        try:
            self._next_slot(job, strict=True)
        except ScheduleError as exc:
            log.error("ticker: not scheduling job %r: %s", record.name, exc)
            return None
        return job

    def _tick_job(
        self, job: _Job, now: datetime, emitted: list[RunJob], handled: dict[str, datetime]
    ) -> None:
        next_slot = self._next_slot(job)
        if next_slot is None or next_slot > now:
            return  # the common case, decided from the cached next slot
        due = due_slots(job.schedule, job.cursor, now, limit=self.max_slots_per_job)
        if due.skipped_first is not None and due.skipped_last is not None:
            log.warning(
                "ticker: job %r: skipping late slots %s .. %s (misfire=%s, grace %ss)",
                job.name,
                due.skipped_first.isoformat(),
                due.skipped_last.isoformat(),
                job.schedule.misfire,
                job.schedule.misfire_grace_s,
            )
            self.stats.record_skipped(job.name, due.skipped_first, due.skipped_last)
        for slot in due.fire:
            run = RunJob.for_slot(job.name, slot, requested_by=f"ticker {self.id}"[:200])
            message_id = self.claimer.claim_and_publish(run)
            job.move_to(slot)
            if message_id is None:
                log.debug("ticker: job %r slot %s already claimed", job.name, slot.isoformat())
                self.stats.record_lost_claim(job.name, slot)
                continue
            # emission time = the pass's now + time spent in this pass so far
            lag_s = (now - slot).total_seconds() + time.monotonic() - self._pass_started
            log.info(
                "ticker: emitted job %r slot %s run_id %s (lag %.3fs, message %s)",
                job.name,
                slot.isoformat(),
                run.run_id,
                lag_s,
                message_id,
            )
            self.stats.record_emission(job.name, slot, lag_s)
            emitted.append(run)
        if due.cursor is not None:
            job.move_to(due.cursor)
            handled[job.name] = due.cursor

    def _next_slot(self, job: _Job, strict: bool = False) -> datetime | None:
        if job.next_slot is None:
            try:
                job.next_slot = next_fire(job.schedule, job.cursor)
            except ScheduleError:
                if strict:
                    raise
                return None
        return job.next_slot
