"""When does a schedule fire? Pure functions of a ``Schedule`` and instants; no I/O.

Every instant taken and returned is timezone-aware; results are in UTC. The cron
expression is matched against wall-clock time in the schedule's IANA timezone, and
each matching wall-clock time becomes one *slot* (a UTC instant) by these rules:

- **Normal times** fire at the instant the wall clock shows them.
- **DST gap** (spring forward; e.g. 02:00-02:59 on the last Sunday of March in
  Europe/Zurich does not exist): the slot fires at the end of the gap, the first
  instant that exists after it (03:00 CEST). All of a job's wall times inside one gap
  fire once there together, and merge with a slot that is at that instant anyway
  (an every-minute job fires once at 03:00, ``30 2 * * *`` fires at 03:00).
- **Repeated hour** (fall back; e.g. 02:00-02:59 on the last Sunday of October
  in Europe/Zurich, 01:00-01:59 on the first Sunday of November in America/New_York,
  happen twice): each wall time fires **once, at its first occurrence** (the
  daylight-time one). Nothing fires for wall times during the second pass.

Under these rules slot instants never decrease as wall times increase, so slots can
be walked forwards and backwards with croniter on naive wall times.

Misfires: a slot is *due* when ``since < slot <= now`` and *late* when it is older
than ``schedule.misfire_grace_s`` (``slot < now - grace``). Due slots that are not
late always fire. Late ones follow ``schedule.misfire``:

- ``skip``: late slots never fire;
- ``once``: when every due slot is late, the latest of them fires (one catch-up run
  for the whole backlog); otherwise the on-time slots fire and the late ones are skipped.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import cast
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from contracts.jobs import Schedule
from ticker.errors import ScheduleError

__all__ = [
    "DEFAULT_MAX_SLOTS",
    "DueSlots",
    "due_slots",
    "iter_fires",
    "next_fire",
    "previous_fire",
    "slot_instant",
]

#: At most this many slots fire in one ``due_slots`` answer; the rest come next pass.
DEFAULT_MAX_SLOTS = 1000

_MINUTE = timedelta(minutes=1)
_TICK = timedelta(microseconds=1)
# Parsed cron expressions kept (see ``_walker``).
_PARSED_CACHE_SIZE = 4096
_EPOCH = datetime(2000, 1, 1)
# A backwards walk skips at most one repeated period of slots; this bounds a bug.
_MAX_BACKWARD_STEPS = 100_000


@dataclass(frozen=True)
class DueSlots:
    """What to do with the slots due in ``(since, now]``.

    ``fire``: slots to emit now, oldest first. ``skipped_first``/``skipped_last``: the
    range of late slots that do not fire (both None if none). ``cursor``: the latest
    slot handled (fired or skipped); the next call should pass it as ``since``.
    None when nothing was due.
    """

    fire: tuple[datetime, ...] = ()
    skipped_first: datetime | None = None
    skipped_last: datetime | None = None
    cursor: datetime | None = None


def next_fire(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (UTC)."""
    return next(iter_fires(schedule, after))


def iter_fires(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The slots strictly after ``after``, in increasing order, without end.

    Raises ``ScheduleError`` when no further slot exists (e.g. ``0 0 30 2 *``).
    """
    after = _utc(after, "after")
    zone = ZoneInfo(schedule.timezone)
    walls = _walker(schedule.expression, _wall(after, zone))
    last = after
    while True:
        try:
            wall = cast(datetime, walls.get_next(datetime))
        except CroniterBadDateError:
            raise ScheduleError(_never(schedule, "after", after)) from None
        instant = slot_instant(wall, zone)
        if instant > last:  # skips second-pass wall times and merged gap slots
            yield instant
            last = instant


def previous_fire(schedule: Schedule, at: datetime) -> datetime | None:
    """The latest slot at or before ``at`` (UTC); None if the schedule never fired."""
    at = _utc(at, "at")
    zone = ZoneInfo(schedule.timezone)
    local = at.astimezone(zone)
    start = local.replace(tzinfo=None, second=0, microsecond=0) + _MINUTE
    if local.fold:  # second pass of a repeated hour: its wall times fired on the first pass
        start += _fold_length(start - _MINUTE, zone)
    walls = _walker(schedule.expression, start)
    for _ in range(_MAX_BACKWARD_STEPS):
        try:
            wall = cast(datetime, walls.get_prev(datetime))
        except CroniterBadDateError:
            return None
        instant = slot_instant(wall, zone)
        if instant <= at:
            return instant
    raise ScheduleError(_never(schedule, "at or before", at))  # pragma: no cover


def due_slots(
    schedule: Schedule, since: datetime, now: datetime, *, limit: int = DEFAULT_MAX_SLOTS
) -> DueSlots:
    """Apply the misfire policy to the slots in ``(since, now]``.

    ``since`` is exclusive: the last slot already handled, or the instant the schedule
    took effect (a new job never fires for slots before it existed). At most ``limit``
    slots fire; the cursor then stops at the last of them so the next call goes on.
    """
    since, now = _utc(since, "since"), _utc(now, "now")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if now <= since:
        return DueSlots()
    horizon = now - timedelta(seconds=schedule.misfire_grace_s)  # older slots are late
    fires = iter_fires(schedule, since)
    first = next(fires)
    if first > now:
        return DueSlots()
    late_first: datetime | None = None
    late_last: datetime | None = None
    candidates: Iterator[datetime] = chain([first], fires)
    if first < horizon:
        late_first = first
        late_last = previous_fire(schedule, horizon - _TICK)
        candidates = iter_fires(schedule, horizon - _TICK)
    on_time: list[datetime] = []
    for slot in candidates:
        if slot > now or len(on_time) == limit:
            break
        on_time.append(slot)
    fire = tuple(on_time)
    skipped_last = late_last
    if not fire and schedule.misfire == "once" and late_first and late_last:
        fire = (late_last,)  # one catch-up run for the whole backlog
        skipped_last = (
            previous_fire(schedule, late_last - _TICK) if late_first < late_last else None
        )
    return DueSlots(
        fire=fire,
        skipped_first=late_first if skipped_last is not None else None,
        skipped_last=skipped_last,
        cursor=fire[-1] if fire else late_last,
    )


def _walker(expression: str, wall: datetime) -> croniter:
    """A croniter over naive wall times from ``wall``; parsing is done once per expression."""
    walker = copy.copy(_parsed(expression))
    walker.set_current(wall, force=True)
    return walker


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _parsed(expression: str) -> croniter:
    # Never iterated itself: ``_walker`` hands out copies (croniter parses on construction,
    # which costs more than the walk; a copy shares the read-only parsed fields).
    return croniter(expression, _EPOCH)


def slot_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the naive wall-clock time ``wall`` in ``zone`` fires."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first  # an ordinary time, or the first pass of a repeated one
    return _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the DST gap containing the non-existent ``wall``."""
    # fold=1 reads ``wall`` with the offset after the change, fold=0 with the one before:
    # the transition lies between the two readings. Offsets change on whole seconds.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) > wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _fold_length(wall: datetime, zone: ZoneInfo) -> timedelta:
    earlier = wall.replace(tzinfo=zone, fold=0).utcoffset()
    later = wall.replace(tzinfo=zone, fold=1).utcoffset()
    if earlier is None or later is None:  # pragma: no cover - ZoneInfo always answers
        return timedelta(0)
    return max(earlier - later, timedelta(0))


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _never(schedule: Schedule, where: str, instant: datetime) -> str:
    return (
        f"schedule {schedule.cron!r} ({schedule.timezone}) has no slot {where} "
        f"{instant.isoformat()}: check day-of-month and month (e.g. there is no February 30)"
    )
