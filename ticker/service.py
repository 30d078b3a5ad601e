"""The ticker loop: due slots of every scheduled job -> one ``RunJob`` each, exactly once.

One pass (``Ticker.tick``):

1. Pick up definition changes (``refresh``): read the registry's *generation*, one
   small document that grows after every create, change and delete; only when it
   moved, scan the revisions (two small fields per job) and re-read just the jobs
   whose revision changed. Every ``resync_s`` the scan runs anyway, to catch a
   change whose generation bump was lost. A stored definition that does not validate
   is logged and left out; the others run.
2. Take the jobs due now from the ``Agenda`` (a heap of next slots: jobs that are
   not due are not touched), decide their slots with the misfire policy
   (``ticker.cron``), and claim + publish the slots to fire (``ticker.claims``): one
   script call per ``claim_batch`` slots, each message built from a template
   (``ScheduledRunEncoder``), the next batch planned while Redis runs the last. A slot
   someone else claimed is counted, not re-sent. Moving the cursors, the counters and
   the log line of each run come after the last batch is on the queue.
3. Only now, if it is due and there is room for it before the next slot (twice the
   last scan's duration), the periodic comparison of every revision, and the slots
   of the jobs it found changed: a scan of every job never delays due slots.
4. Record the new cursors in the registry (``advance_slots``: one bulk write, and a
   slot only ever moves forwards).

Where the last slot lives: in the registry (MongoDB), beside the definition, so it
survives restarts and shows in listings. The ticker keeps its own copy in memory and
writes only when it moves; exactness does not depend on it, the Redis claim does.

Wake-up rule (``run_forever``): sleep until the earliest next slot of any job, or
``poll_s`` (the definition poll), whichever comes first, and never past the stop
event. A pass costs O(1) when nothing is due and O(k log n) for k due jobs out of n,
plus k/``claim_batch`` Redis round trips (measured: 40k slots due at once, 100k jobs,
in ``bench/ticker.py``).
After a failing pass (Redis or MongoDB down) the loop waits ``poll_s`` and retries.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import NamedTuple

import redis
from pymongo.errors import PyMongoError

from contracts.base import utcnow
from contracts.messages import RunJob
from contracts.publish import DEFAULT_NAMESPACE, DEFAULT_QUEUE
from storage.errors import InvalidJobRecordError
from storage.jobs import JobRecord, JobRegistry
from ticker.agenda import Agenda, Entry
from ticker.claims import (
    CLAIM_PREFIX,
    DEFAULT_CLAIM_TTL_S,
    MAX_SCRIPT_SLOTS,
    Claimer,
    SentRun,
    SlotClaimer,
)
from ticker.cron import DEFAULT_MAX_SLOTS, DueSlots
from ticker.errors import ScheduleError
from ticker.stats import TickerStats

__all__ = [
    "DEFAULT_CLAIM_BATCH",
    "DEFAULT_POLL_S",
    "DEFAULT_RESYNC_S",
    "FREEZE_GC_MIN_CHANGES",
    "FULL_READ_MIN_CHANGES",
    "MIN_WAIT_S",
    "Emission",
    "Ticker",
    "default_ticker_id",
    "freeze_gc",
]

#: How often definitions are polled when no slot comes sooner (``SLURP_TICKER_POLL_S``).
DEFAULT_POLL_S = 1.0
#: How often every job's revision is compared, whatever the generation says.
DEFAULT_RESYNC_S = 60.0
#: Slots claimed per Redis round trip (one script call).
DEFAULT_CLAIM_BATCH = 1000
#: Shortest wait between two passes, so a frozen or stepping clock cannot spin the loop.
MIN_WAIT_S = 0.01
#: With ``freeze_gc``, a reload changing at least this many jobs freezes the GC.
FREEZE_GC_MIN_CHANGES = 1000
#: A reload of at least this many jobs, and of at least half of them, reads every
#: definition in one scan (``JobRegistry.list``) instead of by name.
FULL_READ_MIN_CHANGES = 1000
# Job names listed in one log line about a reload.
_NAMES_LOGGED = 20

log = logging.getLogger(__name__)


def freeze_gc() -> None:
    """Collect garbage, then exempt every surviving object from later cyclic collections
    (``gc.freeze``; refcounting still frees them). The agenda's entries live long: left
    to the GC, each full collection scans all of them, in the middle of a burst of
    slots (measured at 100k jobs: p99 tick lag 0.78 s instead of 0.46 s). A
    process-wide setting: ``slurp ticker`` turns it on, a library user decides."""
    gc.collect()
    gc.freeze()


class Emission(NamedTuple):
    """A run this ticker enqueued in a pass."""

    job: str
    slot: datetime
    run_id: str
    message_id: str
    requested_at: datetime
    lag_s: float
    run: RunJob | None  # the RunJob itself, when the claimer was handed RunJobs


def default_ticker_id() -> str:
    """``<host>:<pid>:<random>``: unique per ticker instance, readable in claim keys."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Ticker:
    """Emits scheduled runs of the jobs in ``registry`` onto ``queue_name``.

    Every replica (process or host) builds its own ``Ticker`` on the same registry and
    Redis; claims make each slot fire once in total. ``clock`` returns aware UTC
    datetimes (inject one for tests); ``clock_rate`` is how many clock seconds pass per
    real second (1 except for a test clock running fast), used to turn the wait for
    the next slot into real seconds. ``freeze_gc``: call ``freeze_gc()`` after a
    reload of at least ``FREEZE_GC_MIN_CHANGES`` jobs, and pause the cyclic GC while
    a pass sends its slots (at 40k slots, its collections of the pass's own young
    objects cost ~0.25 s; the pass makes no cycles). Deployments sharing one Redis
    keep their claims apart with distinct ``claim_prefix`` values. Thread-safe:
    concurrent calls on one instance run one at a time.
    """

    def __init__(
        self,
        registry: JobRegistry,
        redis_client: redis.Redis | None,
        queue_name: str = DEFAULT_QUEUE,
        poll_s: float = DEFAULT_POLL_S,
        clock: Callable[[], datetime] = utcnow,
        *,
        ticker_id: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        claim_ttl_s: int = DEFAULT_CLAIM_TTL_S,
        claim_prefix: str = CLAIM_PREFIX,
        claim_batch: int = DEFAULT_CLAIM_BATCH,
        max_slots_per_job: int = DEFAULT_MAX_SLOTS,
        resync_s: float = DEFAULT_RESYNC_S,
        clock_rate: float = 1.0,
        freeze_gc: bool = False,
        stats: TickerStats | None = None,
        claimer: Claimer | None = None,
    ) -> None:
        """``redis_client`` claims and publishes slots; or pass a ``claimer`` instead
        (``slurp dev`` sends through its in-process broker) and ``redis_client=None``."""
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be > 0, got {clock_rate}")
        if claim_batch < 1:
            raise ValueError(f"claim_batch must be >= 1, got {claim_batch}")
        self.registry = registry
        self.poll_s = poll_s
        self.clock = clock
        self.clock_rate = clock_rate
        self.resync_s = resync_s
        self.claim_batch = claim_batch
        self.freeze_gc = freeze_gc
        self.id = ticker_id or default_ticker_id()
        if claimer is None:
            if redis_client is None:
                raise ValueError("a Ticker needs a redis_client or a claimer")
            claimer = SlotClaimer(
                redis_client, self.id, queue_name, namespace, claim_ttl_s, claim_prefix
            )
        self.claimer: Claimer = claimer
        self.agenda = Agenda(max_slots_per_job)
        self.stats = stats or TickerStats()
        self._requested_by = f"ticker {self.id}"[:200]
        self._lock = threading.RLock()  # tick -> refresh re-enters
        self._generation: int | None = None  # registry generation at the last refresh
        self._revisions: dict[str, int] = {}  # every stored job's revision, as last read
        self._invalid: set[str] = set()  # stored jobs whose definition does not validate
        self._resynced_at = float("-inf")  # monotonic time of the last revision scan
        self._scan_s = 0.0  # how long the last revision scan took
        self._refreshed_at = float("-inf")  # monotonic time of the last refresh attempt
        self._pass_started = 0.0
        self._failed = False  # the last pass hit an error: retry after poll_s

    @property
    def job_names(self) -> list[str]:
        """The jobs scheduled as of the last refresh (non-paused, with a schedule)."""
        with self._lock:
            return self.agenda.names()

    def next_fires(self) -> dict[str, datetime]:
        """The next slot of every scheduled job (UTC), by name."""
        with self._lock:
            return self.agenda.next_fires()

    def refresh(self, *, full: bool = False) -> bool:
        """Pick up definition changes; True if any scheduled job was added, changed or
        removed. ``full`` compares every revision even if the generation did not move."""
        with self._lock:
            return self._refresh(full)

    def tick(self, now: datetime | None = None, *, refresh: bool = True) -> list[RunJob]:
        """One pass at ``now`` (default: the clock); returns the runs this ticker enqueued.

        ``refresh=False`` skips the definition check (``run_forever`` checks every
        ``poll_s`` only, however often slots wake it).
        """
        return [
            emission.run
            or RunJob(
                job=emission.job,
                run_id=emission.run_id,
                trigger="schedule",
                scheduled_for=emission.slot,
                requested_at=emission.requested_at,
                requested_by=self._requested_by,
            )
            for emission in self.run_pass(now, refresh=refresh)
        ]

    def run_pass(self, now: datetime | None = None, *, refresh: bool = True) -> list[Emission]:
        """``tick`` without building a ``RunJob`` per run sent (``run_forever`` uses it)."""
        with self._lock:
            now = (now or self.clock()).astimezone(UTC)
            self._pass_started = time.monotonic()
            self._failed = False
            paused = self.freeze_gc and gc.isenabled()
            if paused:
                gc.disable()
            try:
                return self._run_pass(now, refresh)
            finally:
                if paused:
                    gc.enable()

    def _run_pass(self, now: datetime, refresh: bool) -> list[Emission]:
        """One pass (see the module docstring), under the lock."""
        emitted: list[Emission] = []
        handled: dict[str, datetime] = {}
        scan = False
        if refresh:
            self._refreshed_at = self._pass_started
            # announced changes count for this pass; the periodic scan of every job
            # waits until this pass's slots are sent
            scan = self._guarded_refresh(periodic=False)
        self._emit_due(now, emitted, handled)
        if scan and self._scan_fits(now):
            self._guarded_refresh(periodic=True)
            self._emit_due(now, emitted, handled)  # jobs the scan found changed
        try:
            self.registry.advance_slots(handled)  # one round trip for every job
        except PyMongoError as exc:  # memory is ahead; claims still stop duplicates
            log.warning("ticker: cannot record handled slots: %s", exc)
            self.stats.record_error(None, exc)
        self.stats.record_tick(now)
        return emitted

    def run_forever(self, stop_event: threading.Event) -> None:
        """Tick until ``stop_event`` is set; returns promptly once it is."""
        log.info("ticker %s: started (definitions polled every %ss)", self.id, self.poll_s)
        while not stop_event.is_set():
            try:
                refresh = time.monotonic() - self._refreshed_at >= self.poll_s
                self.run_pass(refresh=refresh)
            except Exception as exc:  # never let the loop die; the next pass retries
                log.exception("ticker: pass failed")
                self.stats.record_error(None, exc)
                self._failed = True
            stop_event.wait(self.wait_s(self.clock()))
        log.info("ticker %s: stopped", self.id)

    def wait_s(self, now: datetime) -> float:
        """Real seconds until the next pass: until the earliest next slot of any job, at
        most ``poll_s``; ``poll_s`` after a failed pass. O(1)."""
        with self._lock:
            wait_s = self.poll_s
            if not self._failed:
                slot = self.agenda.next_due()
                if slot is not None:
                    wait_s = min(wait_s, (slot - now).total_seconds() / self.clock_rate)
            until_poll_s = self.poll_s - (time.monotonic() - self._refreshed_at)
            return max(min(wait_s, until_poll_s), MIN_WAIT_S)

    # -- definitions --------------------------------------------------------------------

    def _scan_fits(self, now: datetime) -> bool:
        """Is the periodic revision scan due, and is there room for it before the next
        slot? It holds the loop (seconds, at 100k jobs), so it waits for a gap of twice
        the last scan's duration plus ``poll_s``; postponed by ``resync_s`` at most."""
        waited_s = time.monotonic() - self._resynced_at
        if waited_s < self.resync_s:
            return False
        slot = self.agenda.next_due()
        if slot is None or waited_s >= 2 * self.resync_s:
            return True
        passed_s = time.monotonic() - self._pass_started
        room_s = (slot - now).total_seconds() / self.clock_rate - passed_s
        return room_s >= 2 * self._scan_s + self.poll_s

    def _guarded_refresh(self, *, periodic: bool) -> bool:
        """``_refresh``; False (logged, counted) if MongoDB failed."""
        try:
            self._refresh(False, periodic=periodic)
        except PyMongoError as exc:  # keep scheduling the known jobs meanwhile
            log.warning("ticker: cannot re-read definitions, using the last ones: %s", exc)
            self.stats.record_error(None, exc)
            self._failed = True
            return False
        return True

    def _refresh(self, full: bool, *, periodic: bool = True) -> bool:
        """``periodic=False``: only an announced change (the generation) or ``full``
        scans, not the periodic comparison that is due every ``resync_s``."""
        generation = self.registry.generation()  # before the scan: see storage.jobs
        resync = full or (periodic and time.monotonic() - self._resynced_at >= self.resync_s)
        if generation == self._generation and not resync:
            return False
        scanned_at = time.monotonic()
        revisions = self.registry.revisions()
        self._scan_s = time.monotonic() - scanned_at
        changed = [name for name, rev in revisions.items() if self._revisions.get(name) != rev]
        removed = [name for name in self._revisions if name not in revisions]
        if not changed and not removed:
            self._generation, self._resynced_at = generation, scanned_at
            return False
        invalid: dict[str, InvalidJobRecordError] = {}

        def note_invalid(error: InvalidJobRecordError) -> None:
            invalid[error.name] = error

        if len(changed) >= FULL_READ_MIN_CHANGES and 2 * len(changed) >= len(revisions):
            wanted = set(changed)  # most jobs (a start): one scan, not many $in queries
            found = [r for r in self.registry.list(on_invalid=note_invalid) if r.name in wanted]
        else:
            found = self.registry.get_many(changed, on_invalid=note_invalid)
        records = {record.name: record for record in found}
        before = set(self.agenda)
        for name in removed:
            self._forget(name)
        for name in changed:
            record = records.get(name)
            if record is not None:
                self._revisions[name] = record.revision
                self._invalid.discard(name)
                self._schedule(record)
            elif name in invalid:
                log.error("ticker: not scheduling job %r: %s", name, invalid[name].problem)
                self._revisions[name] = revisions[name]
                self._invalid.add(name)
                self.agenda.remove(name)
            else:  # deleted between the scan and the read
                self._forget(name)
        # only now: if a read above failed, the next pass tries again
        self._generation, self._resynced_at = generation, scanned_at
        after = set(self.agenda)
        if self.freeze_gc and len(changed) >= FREEZE_GC_MIN_CHANGES:
            freeze_gc()
        self.stats.record_reload(len(self.agenda), len(self._invalid))
        log.info(
            "ticker: definitions reloaded: %d scheduled job(s), %d changed%s%s",
            len(after),
            len(changed) + len(removed),
            _names(", now scheduling", after - before),
            _names(", no longer scheduling", before - after),
        )
        return bool(changed or removed)

    def _forget(self, name: str) -> None:
        self._revisions.pop(name, None)
        self._invalid.discard(name)
        self.agenda.remove(name)

    def _schedule(self, record: JobRecord) -> None:
        definition = record.definition
        schedule = definition.schedule
        if schedule is None or definition.paused:
            self.agenda.remove(record.name)
            return
        cursor = record.schedule_cursor
        known = self.agenda.get(record.name)
        if known is not None and known.schedule == schedule and cursor <= known.cursor:
            known.revision = record.revision  # same schedule, and our progress is ahead
            return
        try:
            self.agenda.add(record.name, schedule, cursor, record.revision)
        except ScheduleError as exc:
            log.error("ticker: not scheduling job %r: %s", record.name, exc)
            self.agenda.remove(record.name)

    # -- emission -------------------------------------------------------------------

    def _emit_due(
        self, now: datetime, emitted: list[Emission], handled: dict[str, datetime]
    ) -> None:
        """Plan, claim and send the due slots; then move the cursors, count, log."""
        slot = self.agenda.next_due()
        if slot is None or slot > now:
            return
        due: list[tuple[Entry, datetime]] = []  # (entry, cursor before) as popped
        planned: list[tuple[Entry, datetime]] = []  # in the order handed to the claimer
        sent: list[SentRun | None] = []
        runs: list[RunJob] = []  # with a claimer taking RunJobs: the ones sent
        try:
            self._send(self._plan(now, due, planned), sent, runs)
        except redis.RedisError as exc:  # affects every job: one line, retry after poll_s
            log.warning("ticker: Redis unavailable, retrying next pass: %s", exc)
            self.stats.record_error(None, exc)
            self._failed = True
        finally:
            first = len(emitted)
            self._record(now, planned, sent, runs, emitted)
            for entry, cursor in due:
                if entry.cursor != cursor:
                    handled[entry.name] = entry.cursor
                self.agenda.requeue(entry)
            self._log_emitted(emitted[first:])

    def _plan(
        self,
        now: datetime,
        due: list[tuple[Entry, datetime]],
        planned: list[tuple[Entry, datetime]],
    ) -> Iterator[tuple[str, datetime]]:
        """The (job, slot) pairs to fire, planned as the claimer asks for them: due jobs
        leave the heap one by one (into ``due``), so the first batch goes out at once
        and the next is planned while Redis runs the last. Each pair also goes to
        ``planned``."""
        plan_entry, note_skipped = self.agenda.plan, self._note_skipped
        for entry in self.agenda.iter_due(now):
            due.append((entry, entry.cursor))
            try:
                plan = plan_entry(entry, now)
            except Exception as exc:  # one bad job must not stop the others
                log.exception("ticker: planning job %r failed", entry.name)
                self.stats.record_error(entry.name, exc)
                self._failed = True
                continue
            if plan.skipped_first is not None:
                note_skipped(entry, plan)
            if not plan.fire:
                if plan.cursor is not None:
                    entry.move_to(plan.cursor)  # only late slots, all skipped
                continue
            for slot in plan.fire:
                planned.append((entry, slot))
                yield entry.name, slot

    def _send(
        self,
        pairs: Iterator[tuple[str, datetime]],
        sent: list[SentRun | None],
        runs: list[RunJob],
    ) -> None:
        """Claim + publish through the claimer's fastest method, appending the answers
        to ``sent`` as they come; a claimer taking ``RunJob``s gets them in batches of
        ``claim_batch``, collected in ``runs``."""
        slots = getattr(self.claimer, "claim_and_publish_slots", None)
        if slots is not None:
            slots(pairs, self._requested_by, min(self.claim_batch, MAX_SCRIPT_SLOTS), sent)
            return
        many = getattr(self.claimer, "claim_and_publish_many", None)
        while True:  # a claimer taking RunJobs (see ticker.claims.Claimer)
            batch = [
                RunJob.for_slot(job, slot, self._requested_by)
                for job, slot in itertools.islice(pairs, self.claim_batch)
            ]
            if not batch:
                return
            if many is not None:
                ids: list[str | None] = many(batch)
            else:
                ids = [self.claimer.claim_and_publish(run) for run in batch]
            done = time.monotonic()
            runs += batch
            sent += [
                SentRun(run.run_id, message_id, run.requested_at, done)
                if message_id is not None
                else None
                for run, message_id in zip(batch, ids, strict=True)
            ]

    def _record(
        self,
        now: datetime,
        planned: list[tuple[Entry, datetime]],
        sent: list[SentRun | None],
        runs: list[RunJob],
        emitted: list[Emission],
    ) -> None:
        """Move the cursors of the slots the claimer answered for, count them, note
        the runs sent. Slots without an answer (Redis failed) stay due."""
        start, rate = now.timestamp() - self._pass_started * self.clock_rate, self.clock_rate
        record, lost = self.stats.record_emission, self.stats.record_lost_claim
        for index, ((entry, slot), run) in enumerate(zip(planned, sent, strict=False)):
            entry.move_to(slot)
            if run is None:
                log.debug("ticker: job %r slot %s already claimed", entry.name, slot.isoformat())
                lost(entry.name, slot)
                continue
            lag_s = start + run.enqueued_at * rate - slot.timestamp()  # wall clock
            record(entry.name, slot, lag_s)
            emitted.append(
                Emission(
                    entry.name,
                    slot,
                    run.run_id,
                    run.message_id,
                    run.requested_at,
                    lag_s,
                    runs[index] if runs else None,
                )
            )

    def _log_emitted(self, emitted: list[Emission]) -> None:
        """One INFO line per run sent: after the pass's last batch, not between batches."""
        if not emitted or not log.isEnabledFor(logging.INFO):
            return
        for emission in emitted:
            log.info(
                "ticker: emitted job %r slot %s run_id %s (lag %.3fs, message %s)",
                emission.job,
                emission.slot.isoformat(),
                emission.run_id,
                emission.lag_s,
                emission.message_id,
            )

    def _note_skipped(self, entry: Entry, plan: DueSlots) -> None:
        if plan.skipped_first is None or plan.skipped_last is None:
            return
        schedule = entry.schedule
        log.warning(
            "ticker: job %r: skipping late slots %s .. %s (misfire=%s, grace %ss)",
            entry.name,
            plan.skipped_first.isoformat(),
            plan.skipped_last.isoformat(),
            schedule.misfire,
            schedule.misfire_grace_s,
        )
        self.stats.record_skipped(entry.name, plan.skipped_first, plan.skipped_last)


def _names(label: str, names: set[str]) -> str:
    if not names:
        return ""
    shown = sorted(names)[:_NAMES_LOGGED]
    more = f" (+{len(names) - len(shown)} more)" if len(names) > len(shown) else ""
    return f"{label} {shown}{more}"
