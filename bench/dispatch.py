"""Dispatch benchmark: tiny runs through slurp's real workers against a baseline actor
doing only the useful work (read the job, insert the record, write a history document:
``bench/baseline_actor.py``), on the same redis-server and SecantusDB, measured in the
same run and printed as ratios.

- latency: runs published one at a time, publish-to-acknowledged, median and spread;
- throughput: ``--runs`` published at once, with 1 and 2 worker processes.

Completion is read in Redis (the queue's message hash empties as messages are
acknowledged; slurp acknowledges a run after its history is written), never by
polling the database under test. slurp's metrics are on, as deployed.

    .venv/bin/python -m bench.dispatch [--runs 400] [--latency 40] [--threads 4]

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
from collections.abc import Callable
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

    def rate(self, count: int, processes: int) -> float:
        for n in range(count):
            self.publish(n)
        proc = self.start(processes)
        try:
            _wait(lambda: self.pending() < count, 120)
            start, first = time.perf_counter(), self.pending()
            _wait(lambda: self.pending() == 0, 1200)
            return first / (time.perf_counter() - start)
        finally:
            _stop(proc)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--latency", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    redis_server = RedisServer().start()
    mongo_server = None
    mongo_url = os.environ.get("SLURP_TEST_MONGO_URL")
    if not mongo_url:
        mongo_server = SecantusServer().start()
        mongo_url = mongo_server.url
    try:
        settings = Settings.model_validate({
            "redis_url": redis_server.url, "mongo_url": mongo_url, "mongo_db": "bench",
            "queue_name": "bench", "metrics_port": 0, "worker_threads": args.threads,
        })  # fmt: skip
        store = connect(mongo_url, "bench")
        registry = JobRegistry(store)
        for n in range(JOBS):
            registry.put(JobDefinition.model_validate({
                "name": f"tiny{n}",
                "datasources": [{"name": "rows", "type": "inline", "records": [{"id": n}]}],
                "collection": {"type": "upserted", "name": f"tiny{n}", "upsert_key": "id"},
            }))  # fmt: skip
        ours = slurp(settings)
        base = baseline(redis_server.url, mongo_url, "bench", args.threads)
        print(f"latency, {args.latency} runs one at a time, 1 process:")
        lat_base = base.latency_s(args.latency)
        lat_ours = ours.latency_s(args.latency)
        print(f"  {base.name:18s} {_spread(lat_base)}")
        print(f"  {ours.name:18s} {_spread(lat_ours)}")
        ratio = statistics.median(lat_ours) / statistics.median(lat_base)
        print(f"  slurp / baseline median latency: {ratio:.2f}x (target <= 1.3x)")
        rates: dict[tuple[str, int], float] = {}
        for processes in (1, 2):
            for target in (base, ours):
                rate = rates[(target.name, processes)] = target.rate(args.runs, processes)
                print(f"throughput, {args.runs} runs, {processes} process(es) x {args.threads} "
                      f"threads: {target.name:18s} {rate:7.1f}/s")  # fmt: skip
        for processes in (1, 2):
            r = rates[(ours.name, processes)] / rates[(base.name, processes)]
            print(f"  slurp / baseline runs/s, {processes} process(es): {r:.2f}x (target >= 0.5x)")
        for target in (base, ours):
            scale = rates[(target.name, 2)] / rates[(target.name, 1)]
            print(f"  {target.name}: 2 processes / 1 = {scale:.2f}x")
        store.close()
    finally:
        redis_server.close()
        if mongo_server is not None:
            mongo_server.close()


if __name__ == "__main__":
    main()
