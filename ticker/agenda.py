"""The next slot of every scheduled job, in a heap: a pass touches only the due jobs.

``Agenda`` is the ticker's scheduling core, with no I/O. It keeps one ``Entry`` per
job (schedule, cursor, next slot) and a min-heap of next slots, so that

- the earliest next slot of all jobs (how long the loop may sleep) is O(1),
- taking the jobs due at ``now`` is O(k log n) for k due jobs out of n,
- a job that is not due is never looked at.

Next fire times are memoised per (expression, timezone, minute): thousands of jobs
with the same schedule that fire at the same slot need one cron evaluation, not one
each. Cron slots fall on whole minutes, so the answer for the start of a minute is
the answer for every instant in it that lies before that answer (checked on use).

Invariant: ``entry.next_slot == ticker.cron.next_fire(entry.schedule, entry.cursor)``
whenever it is not None, so ``plan`` may decide the common case (exactly one slot
due, on time) from the cached slots and fall back to ``ticker.cron.due_slots`` for
everything else (several due slots, late slots and the misfire policy).

Heap items are ``(next slot as Unix seconds, ticket, entry)``; a removed or replaced
entry leaves its item behind, recognised as stale by its ticket and dropped when it
reaches the top (the heap is rebuilt when stale items outnumber live ones).
Not thread-safe: the ticker serialises access.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contracts.jobs import Schedule
from ticker.cron import DEFAULT_MAX_SLOTS, DueSlots, due_slots, next_fire
from ticker.errors import ScheduleError

__all__ = ["DEFAULT_CACHE_SIZE", "Agenda", "Entry"]

#: Memoised next fire times kept at most (the cache is emptied when full).
DEFAULT_CACHE_SIZE = 100_000
# Plans of one slot kept for sharing (cleared when full).
_SINGLE_PLANS = 1024
# Stale heap items tolerated, beyond one per live entry, before the heap is rebuilt.
_STALE_SLACK = 1024


@dataclass(eq=False, slots=True)
class Entry:
    """One scheduled job: slots at or before ``cursor`` are handled."""

    name: str
    schedule: Schedule
    cursor: datetime
    revision: int = 0
    next_slot: datetime | None = None  # first slot after cursor; None: to compute, or never
    ticket: int | None = field(default=None, repr=False)  # set while queued in the heap
    following: datetime | None = field(default=None, repr=False)  # the slot after next_slot
    cron_key: tuple[str, str] = field(default=("", ""), repr=False)  # (expression, timezone)

    def move_to(self, cursor: datetime) -> None:
        """Mark every slot up to ``cursor`` handled (a cursor never moves back)."""
        if cursor > self.cursor:
            self.next_slot = self.following if cursor == self.next_slot else None
            self.following = None
            self.cursor = cursor


class Agenda:
    """Scheduled jobs by name, with their next slots in a heap (see the module doc)."""

    def __init__(
        self, max_slots_per_job: int = DEFAULT_MAX_SLOTS, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        if max_slots_per_job < 1:
            raise ValueError(f"max_slots_per_job must be >= 1, got {max_slots_per_job}")
        self.max_slots_per_job = max_slots_per_job
        self.cache_size = cache_size
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, int, Entry]] = []
        self._tickets = itertools.count()
        self._cache: dict[tuple[tuple[str, str], int], datetime] = {}
        self._single: dict[datetime, DueSlots] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def add(self, name: str, schedule: Schedule, cursor: datetime, revision: int = 0) -> Entry:
        """Schedule ``name`` from ``cursor`` on, replacing any entry of that name.

        Raises ``ScheduleError`` (and changes nothing) if no slot follows ``cursor``.
        """
        entry = Entry(name, schedule, cursor, revision)
        entry.cron_key = (schedule.expression, schedule.timezone)
        entry.next_slot = self._next_fire(entry.cron_key, schedule, cursor)
        self.remove(name)  # a replaced entry's heap item goes stale
        self._entries[name] = entry
        self._push(entry)
        return entry

    def remove(self, name: str) -> Entry | None:
        """Stop scheduling ``name``; its heap item goes stale (the ticket no longer
        matches). None if it was unknown."""
        entry = self._entries.pop(name, None)
        if entry is not None:
            entry.ticket = None
        return entry

    def next_due(self) -> datetime | None:
        """The earliest next slot of any queued job; None if there is none."""
        self._drop_stale()
        return self._heap[0][2].next_slot if self._heap else None

    def pop_due(self, now: datetime) -> list[Entry]:
        """Take the entries whose next slot is at or before ``now``, earliest first.

        They leave the heap: hand each back with ``requeue`` once handled.
        """
        return list(self.iter_due(now))

    def iter_due(self, now: datetime) -> Iterator[Entry]:
        """``pop_due``, one entry at a time: each leaves the heap as it is yielded, and
        the ones never asked for stay queued. Do not ``requeue`` while iterating."""
        limit = now.timestamp()
        heap = self._heap
        while heap and heap[0][0] <= limit:
            _, ticket, entry = heapq.heappop(heap)
            if entry.ticket == ticket:
                entry.ticket = None
                yield entry

    def requeue(self, entry: Entry) -> None:
        """Queue ``entry`` again at the first slot after its cursor.

        A no-op if the entry was removed or replaced meanwhile, is still queued, or
        never fires again.
        """
        if entry.ticket is not None or self._entries.get(entry.name) is not entry:
            return  # queued already, or removed or replaced meanwhile
        if entry.next_slot is None:
            try:
                entry.next_slot = self._next_fire(entry.cron_key, entry.schedule, entry.cursor)
            except ScheduleError:
                return  # no slot ever again (e.g. '0 0 29 2 *' past the last leap year)
        self._push(entry)

    def plan(self, entry: Entry, now: datetime) -> DueSlots:
        """What to do with ``entry``'s slots in ``(cursor, now]`` (see ``due_slots``)."""
        slot = entry.next_slot
        if slot is None or slot > now:
            return DueSlots()
        schedule = entry.schedule
        if now - slot <= timedelta(seconds=schedule.misfire_grace_s):  # not late
            try:
                following = self._next_fire(entry.cron_key, schedule, slot)
            except ScheduleError:
                return self._fire_one(slot)  # the schedule's last slot
            if following > now:
                entry.following = following  # so moving to ``slot`` needs no cron lookup
                return self._fire_one(slot)  # the common case
        return due_slots(schedule, entry.cursor, now, limit=self.max_slots_per_job)

    def next_fires(self) -> dict[str, datetime]:
        """The next slot of every job that has one, by name."""
        return {
            name: entry.next_slot
            for name, entry in self._entries.items()
            if entry.next_slot is not None
        }

    def next_fire(self, schedule: Schedule, after: datetime) -> datetime:
        """``ticker.cron.next_fire``, memoised per (expression, timezone, minute)."""
        return self._next_fire((schedule.expression, schedule.timezone), schedule, after)

    # -- internals --------------------------------------------------------------------

    def _next_fire(
        self, cron_key: tuple[str, str], schedule: Schedule, after: datetime
    ) -> datetime:
        stamp = after.timestamp()
        minute = int(stamp // 60) * 60
        key = (cron_key, minute)
        found = self._cache.get(key)
        if found is not None and found > after:
            return found
        if found is None:  # ask for the minute's start, which every instant of it can share
            start = after if stamp == minute else datetime.fromtimestamp(minute, UTC)
            found = next_fire(schedule, start)
            self._remember(key, found)
            if found > after:
                return found
        return next_fire(schedule, after)  # a slot inside the minute: not a cron minute

    def _fire_one(self, slot: datetime) -> DueSlots:
        """``DueSlots(fire=(slot,), cursor=slot)``, shared by the jobs due at ``slot`` (a
        burst plans tens of thousands of them; the plan is immutable)."""
        plan = self._single.get(slot)
        if plan is None:
            if len(self._single) >= _SINGLE_PLANS:
                self._single.clear()
            plan = self._single[slot] = DueSlots(fire=(slot,), cursor=slot)
        return plan

    def _remember(self, key: tuple[tuple[str, str], int], value: datetime) -> None:
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[key] = value

    def _push(self, entry: Entry) -> None:
        if entry.next_slot is None:
            return
        entry.ticket = next(self._tickets)
        heapq.heappush(self._heap, (entry.next_slot.timestamp(), entry.ticket, entry))
        if len(self._heap) > 2 * len(self._entries) + _STALE_SLACK:
            self._rebuild()

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _, ticket, entry = heap[0]
            if entry.ticket == ticket:
                return
            heapq.heappop(heap)

    def _rebuild(self) -> None:
        self._heap = [item for item in self._heap if item[2].ticket == item[1]]
        heapq.heapify(self._heap)
