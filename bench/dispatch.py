"""Dispatch benchmark: tiny runs through slurp's real workers against a baseline actor
doing only the useful work (read the job, insert the record, write a history document:
``bench/baseline_actor.py``), on the same redis-server and SecantusDB, measured in the
same run and printed as ratios.

- latency: runs published one at a time, publish-to-acknowledged, median and spread;
- throughput: ``--runs`` published at once, with 1 and 2 worker processes; with the
  CPU seconds per run of the worker processes and of the database server (when the
  benchmark started it), read from /proc: on a 2-core machine the single-process,
  GIL-bound SecantusDB is the ceiling (runs/s <= 1 / its CPU per run), so the
  workers' own CPU per run is what shows whether more processes would scale.

These machines are noisy (the same run varies by a third from one minute to the
next): each measurement is repeated ``--repeat`` times, slurp and the baseline
alternating, each on a fresh database server (SecantusDB slows down as one server
takes run after run), and the ratios are the medians of the per-repeat ratios, with
their range. Completion is read in Redis (the queue's message hash empties as messages are
acknowledged; slurp acknowledges a run after its history is written), never by
polling the database under test. slurp's metrics are on, as deployed.

    .venv/bin/python -m bench.dispatch [--runs 300] [--latency 40] [--threads 4] [--repeat 3]

Starts its own redis-server and SecantusDB (or uses SLURP_TEST_MONGO_URL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.baseline_actor import ACTOR, QUEUE
from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job, queue_keys
from slurp.localservers import RedisServer, SecantusServer
from slurp.settings import Settings
from storage.jobs import JobRegistry
from storage.store import connect
from workers.launch import worker_command, worker_env

JOBS = 40  # runs of one job are serialised by its lease: spread the load


def _wait(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(0.0005)


class Target:
    """One thing to measure: how to start its workers and publish one message."""

    def __init__(self, name: str, queue: str, start: Callable[[int], subprocess.Popen[bytes]],
                 publish: Callable[[int], None], client: redis.Redis) -> None:  # fmt: skip
        self.name, self.start, self.publish, self.client = name, start, publish, client
        self.hash = queue_keys(queue).messages

    def pending(self) -> int:
        return int(self.client.hlen(self.hash))

    def latency_s(self, count: int) -> list[float]:
        proc = self.start(1)
        try:
            self.publish(-1)  # warm up: connections, scripts, first catalog entry
            _wait(lambda: self.pending() == 0, 120)
            times = []
            for n in range(count):
                start = time.perf_counter()
                self.publish(n)
                _wait(lambda: self.pending() == 0, 60)
                times.append(time.perf_counter() - start)
            return times
        finally:
            _stop(proc)

    def rate(self, count: int, processes: int, db_pid: int | None) -> Rate:
        for n in range(count):
            self.publish(n)
        proc = self.start(processes)
        try:
            _wait(lambda: self.pending() < count, 120)
            workers = _process_tree(proc.pid)
            cpu0, db0 = _cpu_s(workers), _cpu_s([db_pid] if db_pid else [])
            start, first = time.perf_counter(), self.pending()
            _wait(lambda: self.pending() == 0, 1200)
            elapsed = time.perf_counter() - start
            cpu, db = _cpu_s(workers) - cpu0, _cpu_s([db_pid] if db_pid else []) - db0
            return Rate(first / elapsed, cpu / first * 1000, db / first * 1000)
        finally:
            _stop(proc)


@dataclass(frozen=True)
class Rate:
    runs_per_s: float
    worker_cpu_ms: float  # per run, every worker process
    db_cpu_ms: float  # per run, the database server (0 if not ours)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (dramatiq's worker processes)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [pid, *(p for c in children.stdout.split() for p in _process_tree(int(c)))]


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait()


def baseline(redis_url: str, mongo_url: str, db: str, threads: int) -> Target:
    client = redis.Redis.from_url(redis_url)
    broker = RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_MONGO_URL": mongo_url,
           "BENCH_MONGO_DB": db}  # fmt: skip

    def start(processes: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "dramatiq", "bench.baseline_actor:setup", "--processes",
                   str(processes), "--threads", str(threads), "--queues", QUEUE]  # fmt: skip
        quiet = subprocess.DEVNULL
        return subprocess.Popen(command, env=env, stdout=quiet, stderr=quiet)

    def publish(n: int) -> None:
        body = {"job": f"tiny{n % JOBS}", "run_id": str(uuid.uuid4())}
        message = dramatiq.Message(queue_name=QUEUE, actor_name=ACTOR, args=(body,), kwargs={},
                                   options={})  # fmt: skip
        broker.enqueue(message)

    return Target("3-operation actor", QUEUE, start, publish, client)


def slurp(settings: Settings) -> Target:
    client = redis.Redis.from_url(settings.redis_url or "")
    log = Path(tempfile.mkdtemp()) / "worker.log"
    metrics_dir = log.parent / "prom"

    def start(processes: int) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                worker_command(settings, processes),
                env=worker_env(settings, metrics_dir=metrics_dir), stdout=out, stderr=out,
            )  # fmt: skip

    def publish(n: int) -> None:
        run = RunJob(job=f"tiny{n % JOBS}", run_id=str(uuid.uuid4()))
        publish_run_job(client, run, queue_name=settings.queue_name)

    return Target("slurp tiny run", settings.queue_name, start, publish, client)


def _spread(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    q = statistics.quantiles(ms, n=10)
    return f"median {statistics.median(ms):6.1f} ms (p10 {q[0]:.1f}, p90 {q[-1]:.1f})"


def _summary(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})"


@contextmanager
def _database(external: str | None) -> Iterator[tuple[str, int | None]]:
    """A fresh database with the ``JOBS`` tiny jobs registered: (url, server pid, None
    when external). SecantusDB slows down as one server takes run after run (its CPU
    per run grew 3-7x over a few thousand runs here), so every measurement gets a
    server of its own and none inherits the cost of the ones before it."""
    server = None
    if external:
        url = external
        connect(url, "bench").client.drop_database("bench")
    else:
        server = SecantusServer().start()
        url = server.url
    try:
        store = connect(url, "bench")
        registry = JobRegistry(store)
        for n in range(JOBS):
            registry.put(JobDefinition.model_validate({
                "name": f"tiny{n}",
                "datasources": [{"name": "rows", "type": "inline", "records": [{"id": n}]}],
                "collection": {"type": "upserted", "name": f"tiny{n}", "upsert_key": "id"},
            }))  # fmt: skip
        store.close()
        yield url, server.pid if server is not None else None
    finally:
        if server is not None:
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--latency", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    redis_server = RedisServer().start()
    external = os.environ.get("SLURP_TEST_MONGO_URL")
    names = ("3-operation actor", "slurp tiny run")

    def target(name: str, mongo_url: str) -> Target:
        if name == names[0]:
            return baseline(redis_server.url, mongo_url, "bench", args.threads)
        return slurp(Settings.model_validate({
            "redis_url": redis_server.url, "mongo_url": mongo_url, "mongo_db": "bench",
            "queue_name": "bench", "metrics_port": 0, "worker_threads": args.threads,
        }))  # fmt: skip

    try:
        latency: list[float] = []
        rate_ratio: dict[int, list[float]] = {1: [], 2: []}
        scale: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(1, args.repeat + 1):
            print(f"repeat {rep}/{args.repeat}:")
            print(f"  latency, {args.latency} runs one at a time, 1 process:")
            medians = {}
            for name in names:
                with _database(external) as (mongo_url, _):
                    times = target(name, mongo_url).latency_s(args.latency)
                medians[name] = statistics.median(times)
                print(f"    {name:18s} {_spread(times)}")
            latency.append(medians[names[1]] / medians[names[0]])
            rates: dict[tuple[str, int], Rate] = {}
            for processes in (1, 2):
                for name in names:
                    with _database(external) as (mongo_url, db_pid):
                        rate = target(name, mongo_url).rate(args.runs, processes, db_pid)
                    rates[(name, processes)] = rate
                    print(f"  throughput, {args.runs} runs, {processes} process(es) x "
                          f"{args.threads} threads: {name:18s} {rate.runs_per_s:6.1f}/s; "
                          f"CPU per run: workers {rate.worker_cpu_ms:5.2f} ms, "
                          f"database {rate.db_cpu_ms:5.2f} ms")  # fmt: skip
                rate_ratio[processes].append(
                    rates[(names[1], processes)].runs_per_s
                    / rates[(names[0], processes)].runs_per_s
                )
            for name in names:
                two, one = rates[(name, 2)], rates[(name, 1)]
                scale[name].append(two.runs_per_s / one.runs_per_s)
                if one.db_cpu_ms:
                    print(f"  {name}: database ceiling 1/{one.db_cpu_ms:.2f} ms = "
                          f"{1000 / one.db_cpu_ms:.0f} runs/s; worker CPU per run, 2 processes "
                          f"/ 1: {two.worker_cpu_ms / one.worker_cpu_ms:.2f}x")  # fmt: skip
        print(f"medians over {args.repeat} repeats (each measurement on a fresh database):")
        print(f"  slurp / baseline median latency: {_summary(latency)} (target <= 1.3x)")
        for processes in (1, 2):
            print(f"  slurp / baseline runs/s, {processes} process(es): "
                  f"{_summary(rate_ratio[processes])} (target >= 0.5x)")  # fmt: skip
        for name, values in scale.items():
            print(f"  {name}: 2 processes / 1 = {_summary(values)}")
    finally:
        redis_server.close()


if __name__ == "__main__":
    main()
