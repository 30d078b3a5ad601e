"""Ticker benchmark, end to end: a burst of ~40k slots at one instant, on the real clock.

    .venv/bin/python -m bench.ticker [--jobs 100000] [--runs 2] [--modes batched,per-slot]

``--jobs`` schedules (the mix of ``bench.ticker_sim``: 10 % every minute, 15 % every
5 min, 15 % every 15 min, 25 % hourly, 20 % daily, 15 % weekly; four timezones) are
registered in a real SecantusDB, written with ``insert_many`` in the registry's
document layout (``JobRegistry.put``, four round trips per job, would take minutes).
At BURST, the top of an hour, about 40 % of them are due at once. Each run is a fresh
ticker process (``ticker.service.Ticker`` as ``slurp ticker`` builds it: GC frozen
after the load, ``run_forever`` in a thread, a real redis-server) that:

1. loads every definition from the registry (reported apart: ``load``);
2. sets its clock to real time plus an offset, so that the clock reads BURST
   ``--lead-s`` seconds later: the only thing faked is that offset, every second
   after it is a real one;
3. sleeps until BURST like any ticker, wakes, claims and enqueues every due slot,
   logs one INFO line per run to a file (as ``slurp ticker`` does by default) and
   records the handled slots in the registry (``bookkeeping``).

Lag is measured two ways, both on the wall clock:

- ticker: per slot, when the claim call that enqueued it returned, minus the slot
  (what ``slurp_ticker_lag_seconds`` records);
- queue: this process polls ``LLEN`` of the queue every ~2 ms from outside: the
  i-th message is on the queue at the first poll that sees at least i messages.

Modes, run alternately on the same servers in one invocation:

- ``batched``: the ticker as shipped: messages from ``ScheduledRunEncoder``, one
  claim script call per 1000 slots, ``advance_slots`` grouped per shared slot;
- ``per-slot``: the previous path, kept here for the comparison: ``RunJob.for_slot``
  and ``encode_run_job`` (pydantic) per slot, one claim script call per slot
  pipelined 500 per round trip, one ``UpdateOne`` per job in the bookkeeping.

CPU is ``time.process_time`` of the ticker process (one Python thread does the
work): ``burst`` from just before BURST to the last enqueue, ``pass`` to the end of
the pass (log lines and bookkeeping included). Redis CPU is from ``INFO cpu``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from pymongo import UpdateOne

from bench.ticker_sim import make_schedules
from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import encode_run_job, queue_keys
from slurp.localservers import RedisServer, SecantusServer
from storage.jobs import JOBS_COLLECTION, JobRegistry
from storage.store import connect
from ticker.claims import DEFAULT_CLAIM_TTL_S, MAX_SCRIPT_SLOTS, SentRun, SlotClaimer, claim_key
from ticker.cron import next_fire
from ticker.service import Ticker
from ticker.stats import TickerStats

BURST = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # a Monday, top of the hour
QUEUE = "slurp"
BURST_KEY = "bench:burst_at"  # real Unix time at which the ticker's clock reads BURST
MODES = ("batched", "per-slot")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `slurp ticker`

# The ticker's previous claim: one script call per slot.
_PER_SLOT_SCRIPT = """
if redis.call("SET", KEYS[1], ARGV[1], "NX", "EX", ARGV[2]) then
    redis.call("HSET", KEYS[3], ARGV[3], ARGV[4])
    redis.call("RPUSH", KEYS[2], ARGV[3])
    return 1
end
return 0
"""


# -- the ticker process -------------------------------------------------------------------


class OffsetClock:
    """Real time plus ``offset`` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC)


class LagStats(TickerStats):
    """Keeps every lag."""

    def __init__(self) -> None:
        super().__init__()
        self.lags: array[float] = array("d")

    def record_emission(self, job: str, slot: datetime, lag_s: float) -> None:
        super().record_emission(job, slot, lag_s)
        self.lags.append(lag_s)


class TimedClaimer(SlotClaimer):
    """The shipped claimer, noting (wall, CPU) after each call."""

    def __init__(self, client: redis.Redis, holder: str) -> None:
        super().__init__(client, holder, QUEUE)
        self.marks: list[tuple[float, float]] = []

    def claim_and_publish_slots(
        self,
        slots: Iterable[tuple[str, datetime]],
        requested_by: str = "ticker",
        batch_size: int = MAX_SCRIPT_SLOTS,
        into: list[SentRun | None] | None = None,
    ) -> list[SentRun | None]:
        sent = super().claim_and_publish_slots(slots, requested_by, batch_size, into)
        self.marks.append((time.time(), time.process_time()))
        return sent


class PerSlotClaimer:
    """The previous claim path: one script call per slot, pipelined per batch."""

    def __init__(self, client: redis.Redis, holder: str) -> None:
        self.redis, self.holder = client, holder
        self.keys = queue_keys(QUEUE)
        self._script = client.register_script(_PER_SLOT_SCRIPT)
        self.marks: list[tuple[float, float]] = []

    def claim_and_publish(self, run: RunJob) -> str | None:
        return self.claim_and_publish_many([run])[0]

    def claim_and_publish_many(self, runs: Sequence[RunJob]) -> list[str | None]:
        messages = []
        with self.redis.pipeline(transaction=False) as pipe:
            for run in runs:
                assert run.scheduled_for is not None
                message = encode_run_job(run, QUEUE)
                messages.append(message)
                self._script(
                    keys=[
                        claim_key(run.job, run.scheduled_for),
                        self.keys.queue,
                        self.keys.messages,
                    ],
                    args=[self.holder, DEFAULT_CLAIM_TTL_S, message.redis_message_id, message.data],
                    client=pipe,
                )
            answers = pipe.execute()
        self.marks.append((time.time(), time.process_time()))
        return [m.message_id if a == 1 else None for m, a in zip(messages, answers, strict=True)]


class BenchRegistry(JobRegistry):
    """Times ``advance_slots``; ``per_job``: one ``UpdateOne`` per job (the previous way)."""

    per_job = False
    bookkeeping: tuple[float, float] = (0.0, 0.0)  # wall s, CPU s

    def advance_slots(self, slots: Mapping[str, datetime]) -> int:
        started, cpu = time.perf_counter(), time.process_time()
        if not slots:
            return 0
        if self.per_job:
            ops = [UpdateOne({"_id": n}, {"$max": {"last_slot": s}}) for n, s in slots.items()]
            moved = self.docs.bulk_write(ops, ordered=False).modified_count
        else:
            moved = super().advance_slots(slots)
        self.bookkeeping = (time.perf_counter() - started, time.process_time() - cpu)
        return moved


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def ticker_process(config: dict[str, Any]) -> dict[str, Any]:
    """One run, in its own process; returns its measurements."""
    logging.basicConfig(level=logging.INFO, filename=config["log"], format=LOG_FORMAT)
    per_slot = config["mode"] == "per-slot"
    client = redis.Redis.from_url(config["redis_url"])
    store = connect(config["mongo_url"], config["db"])
    registry = BenchRegistry(store)
    registry.per_job = per_slot
    clock, stats = OffsetClock(), LagStats()
    ticker = Ticker(
        registry, client, QUEUE, clock=clock, freeze_gc=True, stats=stats,
        claim_batch=500 if per_slot else 1000,
    )  # fmt: skip
    claimer = PerSlotClaimer(client, ticker.id) if per_slot else TimedClaimer(client, ticker.id)
    ticker.claimer = claimer

    started, cpu = time.perf_counter(), time.process_time()
    ticker.refresh(full=True)
    load = (time.perf_counter() - started, time.process_time() - cpu)
    assert len(ticker.agenda) == config["jobs"], len(ticker.agenda)

    burst_at = time.time() + config["lead_s"]
    clock.offset = BURST.timestamp() - burst_at
    client.set(BURST_KEY, repr(burst_at))
    stop = threading.Event()
    loop = threading.Thread(target=ticker.run_forever, args=(stop,), name="ticker")
    loop.start()
    try:
        time.sleep(max(0.0, burst_at - 0.2 - time.time()))
        cpu0, redis0 = time.process_time(), redis_cpu_s(client)
        deadline = time.time() + config["timeout_s"]
        while stats.last_tick_at is None or stats.last_tick_at < BURST:  # the burst's pass
            if time.time() > deadline or stats.errors_total:
                raise SystemExit(f"the burst pass failed or timed out: see {config['log']}")
            time.sleep(0.02)
        cpu_pass, redis_burst = time.process_time() - cpu0, redis_cpu_s(client) - redis0
    finally:
        stop.set()
        loop.join()
    last_wall, last_cpu = claimer.marks[-1]
    assert stats.last_tick_at is not None
    woke = (stats.last_tick_at - BURST).total_seconds()  # the clock when the pass began
    scripts = client.info("commandstats").get("cmdstat_eval" if not per_slot else "cmdstat_evalsha")
    recorded = store.db[JOBS_COLLECTION].count_documents({"last_slot": BURST})
    lags = sorted(stats.lags)
    result = {
        "mode": config["mode"],
        "emitted": stats.emissions_total,
        "queued": int(client.llen(queue_keys(QUEUE).queue)),
        "recorded": recorded,
        "calls": int((scripts or {}).get("calls", 0)),
        "redis_ms_per_call": float((scripts or {}).get("usec_per_call", 0)) / 1000,
        "woke": woke,
        "lag_min": lags[0] if lags else math.nan,
        "lag_p50": quantile(lags, 0.5),
        "lag_p99": quantile(lags, 0.99),
        "lag_max": lags[-1] if lags else math.nan,
        "burst_wall": last_wall - burst_at,
        "cpu_burst": last_cpu - cpu0,
        "cpu_pass": cpu_pass,
        "redis_cpu": redis_burst,
        "bookkeeping_s": registry.bookkeeping[0],
        "bookkeeping_cpu": registry.bookkeeping[1],
        "load_s": load[0],
        "load_cpu": load[1],
    }
    store.close()
    client.close()
    return result


# -- the orchestrator ---------------------------------------------------------------------


def seed(mongo_url: str, db: str, jobs: int, seed_value: int) -> float:
    """Register the schedules in ``db`` (registry layout); returns seconds taken."""
    started = time.perf_counter()
    template = JobDefinition.model_validate(
        {
            "name": "template",
            "datasources": [{"name": "src", "type": "inline", "records": [{"id": 1}]}],
            "collection": {"type": "normal", "name": "bench_ticker"},
        }
    ).model_dump(mode="json")
    since = BURST - timedelta(seconds=30)  # no slot in (since, BURST)
    dumped: dict[int, dict[str, Any]] = {}
    docs = []
    for revision, (name, schedule) in enumerate(make_schedules(jobs, seed_value), 1):
        data = dumped.get(id(schedule))
        if data is None:
            data = dumped[id(schedule)] = schedule.model_dump(mode="json")
        docs.append(
            {
                "_id": name,
                "definition": {**template, "name": name, "schedule": data},
                "revision": revision,
                "created_at": since,
                "updated_at": since,
                "active_since": since,
                "last_slot": None,
            }
        )
    store = connect(mongo_url, db)
    try:
        for start in range(0, len(docs), 5000):
            store.db[JOBS_COLLECTION].insert_many(docs[start : start + 5000], ordered=False)
        assert JobRegistry(store).require(str(docs[0]["_id"])).definition.schedule is not None
    finally:
        store.close()
    return time.perf_counter() - started


def due_at_burst(jobs: int, seed_value: int) -> int:
    cache: dict[int, bool] = {}
    count = 0
    for _, schedule in make_schedules(jobs, seed_value):
        due = cache.get(id(schedule))
        if due is None:
            due = cache[id(schedule)] = next_fire(schedule, BURST - timedelta(seconds=1)) == BURST
        count += due
    return count


def observe(client: redis.Redis, expected: int, child: subprocess.Popen[str]) -> list[float]:
    """Seconds after BURST at which the queue held 1, 2, ... messages (None: never)."""
    key = queue_keys(QUEUE).queue
    while child.poll() is None and not client.exists(BURST_KEY):
        time.sleep(0.02)
    raw = client.get(BURST_KEY)
    if raw is None:
        return []
    burst_at = float(raw)
    reached: list[float] = []
    while child.poll() is None and len(reached) < expected:
        count = int(client.llen(key))
        now = time.time()
        reached += [now - burst_at] * (count - len(reached))
        time.sleep(0.002)
    return reached


def run_once(args: argparse.Namespace, mode: str, run: int, urls: tuple[str, str], workdir: Path,
             expected: int) -> dict[str, Any]:  # fmt: skip
    redis_url, mongo_url = urls
    db = f"bench_ticker_{run}_{mode.replace('-', '_')}"
    seeded_s = seed(mongo_url, db, args.jobs, args.seed)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.config_resetstat()
    config = {
        "mode": mode, "redis_url": redis_url, "mongo_url": mongo_url, "db": db,
        "jobs": args.jobs, "lead_s": args.lead_s, "timeout_s": args.timeout_s,
        "log": str(workdir / f"ticker-{run}-{mode}.log"),
    }  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.ticker", "--child", json.dumps(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        reached = observe(client, expected, child)
        out, _ = child.communicate(timeout=args.timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise SystemExit(f"ticker process failed ({child.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["run"], result["seed_s"] = run, seeded_s
    for name, q in (("q_p50", 0.5), ("q_p99", 0.99), ("q_max", 1.0)):
        index = max(1, math.ceil(q * expected)) - 1
        result[name] = reached[index] if index < len(reached) else math.nan
    store = connect(mongo_url, db)
    store.client.drop_database(db)
    store.close()
    client.close()
    return result


def report(results: list[dict[str, Any]], modes: Sequence[str], expected: int) -> None:
    print(
        f"{'run':>3} {'mode':<9} {'sent':>6} {'calls':>6} | {'woke':>5} {'first':>5} "
        f"{'lag p50':>7} {'p99':>6} {'max':>6} | {'queue p50':>9} {'p99':>6} {'max':>6} | "
        f"{'CPU burst':>9} {'CPU pass':>8} {'redis':>6} | {'bookkeep':>8} {'load':>5}"
    )
    for r in results:
        print(
            f"{r['run']:>3} {r['mode']:<9} {r['emitted']:>6} {r['calls']:>6} | "
            f"{r['woke']:>5.3f} {r['lag_min']:>5.3f} "
            f"{r['lag_p50']:>7.3f} {r['lag_p99']:>6.3f} {r['lag_max']:>6.3f} | "
            f"{r['q_p50']:>9.3f} {r['q_p99']:>6.3f} {r['q_max']:>6.3f} | "
            f"{r['cpu_burst']:>9.2f} {r['cpu_pass']:>8.2f} {r['redis_cpu']:>6.2f} | "
            f"{r['bookkeeping_s']:>8.2f} {r['load_s']:>5.1f}"
        )
        problems = [
            f"{name} {r[name]} != {expected}"
            for name in ("emitted", "queued", "recorded")
            if r[name] != expected
        ]
        if problems:
            print(f"    WRONG: {', '.join(problems)}")
    print("(seconds; calls = claim script calls; woke = the burst's pass started, after")
    print(" the slot; first = lag of the first run; lag = wall clock from the slot to the")
    print(" message on the queue; CPU = ticker process CPU s; redis = redis-server CPU s")
    print(" during the pass; bookkeep = advance_slots wall s; load = loading the")
    print(" definitions, wall s)")
    runs = sorted({r["run"] for r in results})
    by = {(r["run"], r["mode"]): r for r in results}
    if len(modes) == 2:
        base, other = modes
        print(f"ratios {other} / {base}, per run (same invocation, same servers):")
        for name in ("lag_p99", "q_p99", "cpu_burst", "cpu_pass", "bookkeeping_s"):
            ratios = [by[(run, other)][name] / by[(run, base)][name] for run in runs]
            shown = ", ".join(f"{ratio:.1f}x" for ratio in ratios)
            print(f"  {name:<14} {shown}  (spread {min(ratios):.1f}x..{max(ratios):.1f}x)")
    for mode in modes:
        for name in ("lag_p99", "q_p99", "cpu_burst"):
            values = [by[(run, mode)][name] for run in runs]
            print(
                f"{mode:<9} {name:<9} " + ", ".join(f"{v:.3f}" for v in values)
                + f"  (median {statistics.median(values):.3f}, spread "
                f"{min(values):.3f}..{max(values):.3f})"
            )  # fmt: skip
    for run in runs:
        if "batched" in modes:
            r = by[(run, "batched")]
            worst = max(r["lag_p99"], r["q_p99"])
            verdict = "met" if worst < 1 else "MISSED"
            print(f"run {run}: target p99 < 1 s (batched, worse of ticker/queue): "
                  f"{worst:.3f} s, {verdict}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2, help="runs per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="batched,per-slot")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lead-s", type=float, default=3.0, help="real seconds before BURST")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--mongo-url", default=os.environ.get("SLURP_TEST_MONGO_URL"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(ticker_process(json.loads(args.child))), flush=True)
        return
    modes = [mode for mode in args.modes.split(",") if mode]
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    expected = due_at_burst(args.jobs, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-ticker-") as tmp:
        workdir = Path(tmp)
        with RedisServer(workdir=workdir / "redis") as redis_server:
            redis_server.start()
            mongo = None
            if not args.mongo_url:
                mongo = SecantusServer(workdir=workdir / "mongo")
                mongo.start()
            try:
                urls = (redis_server.url, args.mongo_url or (mongo.url if mongo else ""))
                print(
                    f"{args.jobs} schedules, {expected} due at {BURST.isoformat()}; "
                    f"redis-server + {'MongoDB' if args.mongo_url else 'SecantusDB'} "
                    f"on 127.0.0.1; {args.runs} run(s) of {', '.join(modes)}; ticker "
                    f"clock = real time + offset, BURST {args.lead_s} s after the load",
                    flush=True,
                )
                results = []
                for run in range(1, args.runs + 1):
                    for mode in modes:
                        results.append(run_once(args, mode, run, urls, workdir, expected))
                        r = results[-1]
                        print(
                            f"  run {run} {mode}: seeded in {r['seed_s']:.1f} s, "
                            f"p99 lag {r['lag_p99']:.3f} s",
                            flush=True,
                        )
            finally:
                if mongo is not None:
                    mongo.close()
    report(results, modes, expected)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
