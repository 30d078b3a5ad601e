"""Pure schedule arithmetic: next/previous fire times and misfire handling, by tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.jobs import Schedule
from ticker.cron import DueSlots, due_slots, iter_fires, next_fire, previous_fire
from ticker.errors import ScheduleError

ZRH = "Europe/Zurich"
NYC = "America/New_York"


def at(iso: str) -> datetime:
    """An aware instant from ISO-8601 with an explicit offset ('Z' = UTC)."""
    value = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    assert value.tzinfo is not None, iso
    return value


def sched(
    cron: str,
    tz: str = "UTC",
    misfire: Literal["skip", "once"] = "skip",
    grace_s: float = 3600.0,
) -> Schedule:
    return Schedule(cron=cron, timezone=tz, misfire=misfire, misfire_grace_s=grace_s)


# (cron, timezone, after, expected next fire) - offsets show the local wall time.
NEXT_FIRE = [
    ("* * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
    ("* * * * *", "UTC", "2026-01-01T00:00:30.5Z", "2026-01-01T00:01:00Z"),
    ("* * * * *", "UTC", "2026-12-31T23:59:00Z", "2027-01-01T00:00:00Z"),
    ("@hourly", "UTC", "2026-01-01T10:15:00Z", "2026-01-01T11:00:00Z"),
    ("@daily", ZRH, "2026-01-01T12:00:00+01:00", "2026-01-02T00:00:00+01:00"),
    ("@midnight", NYC, "2026-07-01T00:00:00-04:00", "2026-07-02T00:00:00-04:00"),
    ("@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),  # a Sunday
    ("@monthly", "UTC", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"),
    ("@yearly", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("0 9 * * 1-5", "UTC", "2026-01-02T10:00:00Z", "2026-01-05T09:00:00Z"),  # Fri -> Mon
    ("0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T09:00:00+05:30"),
    # Offset changes between two daily slots: same wall time, other UTC time.
    ("0 4 * * *", ZRH, "2026-03-28T04:00:00+01:00", "2026-03-29T04:00:00+02:00"),
    ("0 4 * * *", ZRH, "2026-10-24T04:00:00+02:00", "2026-10-25T04:00:00+01:00"),
    # Spring forward, Zurich 2026-03-29 02:00 CET -> 03:00 CEST: 02:xx fires at 03:00.
    ("30 2 * * *", ZRH, "2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00"),
    ("30 2 * * *", ZRH, "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"),
    ("*/15 * * * *", ZRH, "2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00"),
    ("*/15 * * * *", ZRH, "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"),
    ("30 * * * *", ZRH, "2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00"),
    ("30 * * * *", ZRH, "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"),
    # Fall back, Zurich 2026-10-25 03:00 CEST -> 02:00 CET: 02:xx fires once, in CEST.
    ("30 2 * * *", ZRH, "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00"),
    ("30 2 * * *", ZRH, "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"),
    ("*/30 * * * *", ZRH, "2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00"),
    ("*/30 * * * *", ZRH, "2026-10-25T02:10:00+01:00", "2026-10-25T03:00:00+01:00"),
    # New York: spring forward 2026-03-08 02:00 EST -> 03:00 EDT.
    ("30 2 * * *", NYC, "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"),
    ("0 3 * * *", NYC, "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"),
    # New York: fall back 2026-11-01 02:00 EDT -> 01:00 EST; 01:30 fires once, in EDT.
    ("30 1 * * *", NYC, "2026-11-01T00:00:00-04:00", "2026-11-01T01:30:00-04:00"),
    ("30 1 * * *", NYC, "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"),
    ("30 1 * * *", NYC, "2026-11-01T01:15:00-05:00", "2026-11-02T01:30:00-05:00"),
    # Lord Howe Island: a 30-minute gap (02:00 -> 02:30, +10:30 -> +11:00).
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-04T00:00:00+10:30", "2026-10-04T02:30:00+11:00"),
]


@pytest.mark.parametrize(("cron", "tz", "after", "expected"), NEXT_FIRE)
def test_next_fire(cron: str, tz: str, after: str, expected: str) -> None:
    got = next_fire(sched(cron, tz), at(after))
    assert got == at(expected)
    assert got.tzinfo is UTC


# (cron, timezone, after, the next few fire times)
SEQUENCES = [
    (
        "0 * * * *",
        NYC,
        "2026-11-01T00:30:00-04:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"],
    ),
    (
        "*/20 * * * *",
        ZRH,
        "2026-03-29T01:30:00+01:00",
        ["2026-03-29T01:40:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:20:00+02:00"],
    ),
    (
        "0 2 * * *",
        ZRH,
        "2026-03-27T12:00:00+01:00",
        ["2026-03-28T02:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
    ),
]


@pytest.mark.parametrize(("cron", "tz", "after", "expected"), SEQUENCES)
def test_iter_fires(cron: str, tz: str, after: str, expected: list[str]) -> None:
    got = list(islice(iter_fires(sched(cron, tz), at(after)), len(expected)))
    assert got == [at(e) for e in expected]


@pytest.mark.parametrize(
    ("tz", "day", "slots"),
    [
        (ZRH, "2026-03-29", 24 * 60 - 60),  # 02:00-02:59 fire once, merged with 03:00
        (ZRH, "2026-10-25", 24 * 60),  # 25 hours long, each wall minute once
        (NYC, "2026-03-08", 24 * 60 - 60),
        (NYC, "2026-11-01", 24 * 60),
        (ZRH, "2026-06-01", 24 * 60),
    ],
)
def test_every_minute_over_a_whole_day(tz: str, day: str, slots: int) -> None:
    schedule = sched("* * * * *", tz)
    start = datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=ZoneInfo(tz))
    end = start + timedelta(days=1)
    got = []
    for slot in iter_fires(schedule, start - timedelta(seconds=1)):
        if slot.astimezone(ZoneInfo(tz)).date() != start.date():
            break
        got.append(slot)
    assert len(got) == slots
    assert got == sorted(set(got))
    assert got[0] == start
    assert got[-1] < end


# (cron, timezone, at, latest slot at or before it)
PREVIOUS_FIRE = [
    ("0 4 * * *", "UTC", "2026-01-02T04:00:00Z", "2026-01-02T04:00:00Z"),  # inclusive
    ("0 4 * * *", "UTC", "2026-01-02T03:59:59Z", "2026-01-01T04:00:00Z"),
    ("30 2 * * *", ZRH, "2026-03-29T03:10:00+02:00", "2026-03-29T03:00:00+02:00"),
    ("*/20 * * * *", ZRH, "2026-10-25T02:30:00+01:00", "2026-10-25T02:40:00+02:00"),
    ("30 1 * * *", NYC, "2026-11-01T01:45:00-05:00", "2026-11-01T01:30:00-04:00"),
]


@pytest.mark.parametrize(("cron", "tz", "when", "expected"), PREVIOUS_FIRE)
def test_previous_fire(cron: str, tz: str, when: str, expected: str) -> None:
    assert previous_fire(sched(cron, tz), at(when)) == at(expected)


# (schedule, since, now, fired, skipped range or None, cursor or None)
DUE = [
    # nothing due yet / clock not past the cursor
    (sched("* * * * *"), "2026-01-01T10:00:00Z", "2026-01-01T10:00:30Z", [], None, None),
    (sched("* * * * *"), "2026-01-01T10:00:00Z", "2026-01-01T09:00:00Z", [], None, None),
    # a slot at exactly `now` is due; every on-time slot fires
    (
        sched("* * * * *"),
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:03:00Z",
        ["2026-01-01T10:01:00Z", "2026-01-01T10:02:00Z", "2026-01-01T10:03:00Z"],
        None,
        "2026-01-01T10:03:00Z",
    ),
    # first run: a job created at 10:00:30 does not fire for 10:00
    (sched("* * * * *"), "2026-01-01T10:00:30Z", "2026-01-01T10:00:59Z", [], None, None),
    (
        sched("* * * * *"),
        "2026-01-01T10:00:30Z",
        "2026-01-01T10:01:00Z",
        ["2026-01-01T10:01:00Z"],
        None,
        "2026-01-01T10:01:00Z",
    ),
    # 3 hours down, hourly, grace 1 h: 08:00 and 09:00 are late, 10:00 is on time
    *[
        (
            sched("@hourly", misfire=policy),
            "2026-01-01T07:00:00Z",
            "2026-01-01T10:30:00Z",
            ["2026-01-01T10:00:00Z"],
            ("2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z"),
            "2026-01-01T10:00:00Z",
        )
        for policy in ("skip", "once")
    ],
    # ... grace 60 s: every slot is late; skip fires none, once fires the latest
    (
        sched("@hourly", misfire="skip", grace_s=60),
        "2026-01-01T07:00:00Z",
        "2026-01-01T10:30:00Z",
        [],
        ("2026-01-01T08:00:00Z", "2026-01-01T10:00:00Z"),
        "2026-01-01T10:00:00Z",
    ),
    (
        sched("@hourly", misfire="once", grace_s=60),
        "2026-01-01T07:00:00Z",
        "2026-01-01T10:30:00Z",
        ["2026-01-01T10:00:00Z"],
        ("2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z"),
        "2026-01-01T10:00:00Z",
    ),
    # one late daily slot: once runs it, skip does not
    (
        sched("0 4 * * *", misfire="once", grace_s=600),
        "2026-01-01T04:00:00Z",
        "2026-01-02T07:00:00Z",
        ["2026-01-02T04:00:00Z"],
        None,
        "2026-01-02T04:00:00Z",
    ),
    (
        sched("0 4 * * *", misfire="skip", grace_s=600),
        "2026-01-01T04:00:00Z",
        "2026-01-02T07:00:00Z",
        [],
        ("2026-01-02T04:00:00Z", "2026-01-02T04:00:00Z"),
        "2026-01-02T04:00:00Z",
    ),
    # late by exactly the grace is still on time
    (
        sched("0 4 * * *", grace_s=600),
        "2026-01-01T04:00:00Z",
        "2026-01-02T04:10:00Z",
        ["2026-01-02T04:00:00Z"],
        None,
        "2026-01-02T04:00:00Z",
    ),
    # across the Zurich spring-forward gap, every minute
    (
        sched("* * * * *", ZRH),
        "2026-03-29T01:58:00+01:00",
        "2026-03-29T03:01:00+02:00",
        ["2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:01:00+02:00"],
        None,
        "2026-03-29T03:01:00+02:00",
    ),
    # across the New York fall-back repeat: the second 01:xx pass fires nothing
    (
        sched("*/30 * * * *", NYC, grace_s=7200),
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:59:00-05:00",
        ["2026-11-01T01:30:00-04:00"],
        None,
        "2026-11-01T01:30:00-04:00",
    ),
]


@pytest.mark.parametrize(("schedule", "since", "now", "fired", "skipped", "cursor"), DUE)
def test_due_slots(
    schedule: Schedule,
    since: str,
    now: str,
    fired: list[str],
    skipped: tuple[str, str] | None,
    cursor: str | None,
) -> None:
    due = due_slots(schedule, at(since), at(now))
    expected = DueSlots(
        fire=tuple(at(f) for f in fired),
        skipped_first=at(skipped[0]) if skipped else None,
        skipped_last=at(skipped[1]) if skipped else None,
        cursor=at(cursor) if cursor else None,
    )
    assert due == expected


def test_due_slots_limit_resumes_where_it_stopped() -> None:
    schedule = sched("* * * * *")
    now = at("2026-01-01T10:10:00Z")
    first = due_slots(schedule, at("2026-01-01T10:00:00Z"), now, limit=3)
    assert [s.minute for s in first.fire] == [1, 2, 3]
    assert first.cursor == at("2026-01-01T10:03:00Z")
    rest = due_slots(schedule, first.cursor, now, limit=100)
    assert [s.minute for s in rest.fire] == list(range(4, 11))


def test_long_downtime_is_cheap() -> None:
    """A year of missed every-minute slots is not walked one by one."""
    schedule = sched("* * * * *", misfire="once", grace_s=60)
    due = due_slots(schedule, at("2025-01-01T00:00:00Z"), at("2026-01-01T00:00:30Z"))
    assert due.fire == (at("2026-01-01T00:00:00Z"),)
    assert due.skipped_first == at("2025-01-01T00:01:00Z")
    assert due.skipped_last == at("2025-12-31T23:59:00Z")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(sched("@daily"), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        due_slots(sched("@daily"), datetime(2026, 1, 1), datetime.now(UTC))


def test_a_schedule_that_never_fires_raises_schedule_error() -> None:
    # Validation refuses such a schedule; one stored before that rule is built unchecked.
    never = Schedule.model_construct(cron="0 0 30 2 *", timezone="UTC")
    with pytest.raises(ScheduleError, match="February 30"):
        next_fire(never, at("2026-01-01T00:00:00Z"))
    assert previous_fire(never, at("2026-01-01T00:00:00Z")) is None


CRONS = ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 * * * *", "15 1,2,3 * * 0", "@daily"]


@settings(max_examples=150, deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    tz=st.sampled_from([ZRH, NYC, "UTC", "Australia/Lord_Howe"]),
    after=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_next_and_previous_agree(cron: str, tz: str, after: datetime) -> None:
    schedule = sched(cron, tz)
    following = next_fire(schedule, after)
    before = previous_fire(schedule, after)
    assert following > after
    assert previous_fire(schedule, following) == following
    assert before is not None and before <= after
    assert next_fire(schedule, before) == following  # no slot in (before, following)
