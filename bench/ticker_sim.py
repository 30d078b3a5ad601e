"""Ticker scheduling core, simulated: the heap vs naive per-second loops.

    .venv/bin/python -m bench.ticker_sim [--jobs 100000] [--hours 1] [--encode]

The end-to-end benchmark (real clock, Redis, MongoDB) is ``bench.ticker``; this one
compares loop designs. It simulates one core ticking ``--jobs`` schedules (a mix
from every minute to weekly, in four timezones) through ``--hours`` of schedule
time, without Redis or MongoDB:

- **heap**: the ticker's own core (``ticker.agenda.Agenda``): sleep until the earliest
  next slot, take the due jobs from the heap, plan their slots, requeue them;
- **scan**: every second, compare every job's cached next slot with the clock (the
  ticker's loop before the heap), then the same planning for the due ones;
- **match**: every second, ``croniter.match`` every schedule against the wall clock
  of its timezone (the textbook naive loop). It cannot keep up at this scale, so it
  runs for ``--match-seconds`` seconds only and its CPU time is extrapolated.

Like ``slurp ticker`` after a big reload, both heap and scan freeze the GC after setup
(``ticker.service.freeze_gc``).

CPU time is ``time.process_time``. Lag is simulated on one core: a loop wakes at
its next slot (heap) or second (scan), or when it finishes the previous pass if that
ran long, and each emission happens after the CPU time spent in the pass so far;
lag = emission time - slot time. ``--encode`` adds the work of building each run's
message (``ScheduledRunEncoder``, as the ticker does) to every emission; without it
only the scheduling is measured. Setup (building 100k entries) is reported apart.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from contracts.jobs import Schedule
from contracts.publish import ScheduledRunEncoder
from ticker.agenda import Agenda
from ticker.service import freeze_gc

START = datetime(2026, 1, 5, 0, 0, 30, tzinfo=UTC)  # a Monday
ZONES = ("UTC",) * 7 + ("Europe/Zurich", "America/New_York", "Asia/Tokyo")

Emit = Callable[[str, datetime], None]


@dataclass
class Result:
    name: str
    cpu_s: float  # CPU seconds for the simulated span, setup excluded
    setup_cpu_s: float
    emissions: int
    lags: array[float]

    def lag(self, quantile: float) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else 0.0


def make_schedules(count: int, seed: int) -> list[tuple[str, Schedule]]:
    """``count`` schedules: 10 % every minute, 15 % every 5 min, 15 % every 15 min,
    25 % hourly, 20 % daily, 15 % weekly (random minutes, hours and days)."""
    rng = random.Random(seed)
    kinds = ["minute"] * 10 + ["5min"] * 15 + ["15min"] * 15 + ["hourly"] * 25
    kinds += ["daily"] * 20 + ["weekly"] * 15
    cache: dict[tuple[str, str], Schedule] = {}
    jobs = []
    for index in range(count):
        kind = rng.choice(kinds)
        minute, hour, day = rng.randrange(60), rng.randrange(24), rng.randrange(7)
        cron = {
            "minute": "* * * * *",
            "5min": "*/5 * * * *",
            "15min": "*/15 * * * *",
            "hourly": f"{minute} * * * *",
            "daily": f"{minute} {hour} * * *",
            "weekly": f"{minute} {hour} * * {day}",
        }[kind]
        zone = rng.choice(ZONES)
        schedule = cache.get((cron, zone))
        if schedule is None:
            schedule = cache[(cron, zone)] = Schedule(cron=cron, timezone=zone)
        jobs.append((f"job-{index}", schedule))
    return jobs


def heap_loop(jobs: list[tuple[str, Schedule]], end: datetime, emit: Emit) -> Result:
    cpu = time.process_time
    started = cpu()
    agenda = Agenda()
    for name, schedule in jobs:
        agenda.add(name, schedule, START)
    freeze_gc()  # as `slurp ticker` does after loading many jobs
    setup = cpu() - started
    lags: array[float] = array("d")
    busy_until = START.timestamp()
    end_ts = end.timestamp()
    spent_total = 0.0
    while True:
        slot = agenda.next_due()
        if slot is None or slot.timestamp() > end_ts:
            break
        wake = max(slot.timestamp(), busy_until)
        now = datetime.fromtimestamp(wake, UTC)
        t0 = cpu()
        for entry in agenda.pop_due(now):
            plan = agenda.plan(entry, now)
            for fire in plan.fire:
                emit(entry.name, fire)
                lags.append(wake + (cpu() - t0) - fire.timestamp())
            if plan.cursor is not None:
                entry.move_to(plan.cursor)
            agenda.requeue(entry)
        spent = cpu() - t0
        spent_total += spent
        busy_until = wake + spent
    return Result("heap", spent_total, setup, len(lags), lags)


def scan_loop(jobs: list[tuple[str, Schedule]], end: datetime, emit: Emit) -> Result:
    cpu = time.process_time
    started = cpu()
    agenda = Agenda()  # for its planning and memoised next fire times only
    entries = [agenda.add(name, schedule, START) for name, schedule in jobs]
    nexts = [entry.next_slot.timestamp() if entry.next_slot else float("inf") for entry in entries]
    freeze_gc()
    setup = cpu() - started
    lags: array[float] = array("d")
    busy_until = START.timestamp()
    spent_total = 0.0
    second = int(START.timestamp()) + 1
    while second <= end.timestamp():
        wake = max(float(second), busy_until)
        now = datetime.fromtimestamp(wake, UTC)
        t0 = cpu()
        for index, next_ts in enumerate(nexts):  # every schedule, every second
            if next_ts <= wake:
                entry = entries[index]
                plan = agenda.plan(entry, now)
                for fire in plan.fire:
                    emit(entry.name, fire)
                    lags.append(wake + (cpu() - t0) - fire.timestamp())
                if plan.cursor is not None:
                    entry.move_to(plan.cursor)
                entry.next_slot = agenda.next_fire(entry.schedule, entry.cursor)
                nexts[index] = entry.next_slot.timestamp()
        spent = cpu() - t0
        spent_total += spent
        busy_until = wake + spent
        second = int(max(second + 1, busy_until))  # a long pass delays the next second
    return Result("scan", spent_total, setup, len(lags), lags)


def match_loop(jobs: list[tuple[str, Schedule]], seconds: int, emit: Emit) -> Result:
    """``croniter.match`` of every schedule each second, for ``seconds`` seconds
    (a job fires once per matching minute: the last minute fired is remembered)."""
    cpu = time.process_time
    zones = {zone: ZoneInfo(zone) for zone in ZONES}
    compiled = [(name, schedule.expression, zones[schedule.timezone]) for name, schedule in jobs]
    fired: dict[str, datetime] = {}
    spent_total = 0.0
    emissions = 0
    for offset in range(seconds):
        now = START + timedelta(seconds=30 + offset)  # from a minute's start
        t0 = cpu()
        for name, expression, zone in compiled:
            wall = now.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
            if fired.get(name) != wall and croniter.match(expression, wall):
                fired[name] = wall
                emit(name, now)
                emissions += 1
        spent_total += cpu() - t0
    return Result("match", spent_total, 0.0, emissions, array("d"))


def no_op(job: str, slot: datetime) -> None:
    return None


_ENCODER = ScheduledRunEncoder("slurp", "ticker bench")


def encode(job: str, slot: datetime) -> None:
    _ENCODER.encode(job, slot)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--encode", action="store_true", help="also build each message")
    parser.add_argument("--match-seconds", type=int, default=1)
    parser.add_argument("--skip-scan", action="store_true", help="only the heap loop")
    args = parser.parse_args(argv)

    jobs = make_schedules(args.jobs, args.seed)
    end = START + timedelta(hours=args.hours)
    emit = encode if args.encode else no_op
    print(
        f"{args.jobs} schedules, {args.hours} simulated hour(s) from {START.isoformat()}, "
        f"one core, {'with' if args.encode else 'without'} message encoding"
    )
    results = [heap_loop(jobs, end, emit)]
    if not args.skip_scan:
        results.append(scan_loop(jobs, end, emit))
    match = match_loop(jobs, args.match_seconds, emit) if args.match_seconds else None

    print(f"{'loop':<6} {'CPU s/sim h':>12} {'setup CPU s':>12} {'emitted':>9} "
          f"{'lag p50 s':>10} {'lag p99 s':>10} {'lag max s':>10}")  # fmt: skip
    for result in results:
        per_hour = result.cpu_s / args.hours
        print(
            f"{result.name:<6} {per_hour:>12.2f} {result.setup_cpu_s:>12.2f} "
            f"{result.emissions:>9} {result.lag(0.5):>10.4f} {result.lag(0.99):>10.4f} "
            f"{max(result.lags, default=0.0):>10.4f}"
        )
    heap = results[0]
    if len(results) > 1:
        scan = results[1]
        assert scan.emissions == heap.emissions, "the loops disagree on what fires"
        print(f"CPU ratio scan/heap: {scan.cpu_s / heap.cpu_s:.1f}x")
    if match is not None:
        per_second = match.cpu_s / args.match_seconds
        print(
            f"match  {per_second * 3600:>12.2f} (extrapolated from {args.match_seconds} s: "
            f"{per_second:.3f} CPU s per simulated second"
            f"{', cannot keep up' if per_second > 1 else ''})"
        )
        print(f"CPU ratio match/heap: {per_second * 3600 / (heap.cpu_s / args.hours):.1f}x")
    lags = sorted(heap.lags)
    if lags:
        print(
            f"heap lag: mean {statistics.fmean(lags):.4f} s, p50 {heap.lag(0.5):.4f} s, "
            f"p99 {heap.lag(0.99):.4f} s, max {lags[-1]:.4f} s "
            f"(target p99 < 1 s: {'met' if heap.lag(0.99) < 1 else 'MISSED'})"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
