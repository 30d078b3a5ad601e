"""Dispatch benchmark: end-to-end RunJob throughput of slurp's workers (tiny inline
jobs, events recorded, history written) vs a no-op dramatiq actor on the same Redis,
measured in the same run and printed as ratios; and slurp with 1 vs 2 processes.

    .venv/bin/python -m bench.dispatch [--runs 400] [--noop 4000] [--threads 4]

Starts its own redis-server and SecantusDB (or uses SLURP_TEST_MONGO_URL).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from slurp.localservers import RedisServer, SecantusServer
from slurp.settings import Settings
from storage.jobs import JobRegistry
from storage.store import connect
from workers.launch import worker_command, worker_env

JOBS = 40  # runs of one job are serialised by its lease: spread the load


def _wait(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(0.02)


def noop_rate(redis_url: str, count: int, processes: int, threads: int) -> float:
    client = redis.Redis.from_url(redis_url)
    client.delete("bench:noop:done")
    env = {**os.environ, "BENCH_REDIS_URL": redis_url}
    broker = RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    message = dramatiq.Message(
        queue_name="noop", actor_name="noop", args=({},), kwargs={}, options={}
    )
    for _ in range(count):
        broker.enqueue(message.copy(message_id=str(uuid.uuid4())))
    command = [sys.executable, "-m", "dramatiq", "bench.noop_actor:setup", "--processes",
               str(processes), "--threads", str(threads), "--queues", "noop"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: client.get("bench:noop:done") is not None, 60)
        start = time.perf_counter()
        _wait(lambda: int(client.get("bench:noop:done") or 0) >= count, 600)
        return (count - 1) / (time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait()


def slurp_rate(settings: Settings, count: int, processes: int) -> float:
    store = connect(settings.mongo_url or "", settings.mongo_db)
    registry = JobRegistry(store)
    for n in range(JOBS):
        registry.put(JobDefinition.model_validate({
            "name": f"tiny{n}",
            "datasources": [{"name": "rows", "type": "inline", "records": [{"id": n, "v": 1}]}],
            "collection": {"type": "upserted", "name": f"tiny{n}", "upsert_key": "id"},
        }))  # fmt: skip
    history = store.db["slurp_history"]
    history.delete_many({})
    client = redis.Redis.from_url(settings.redis_url or "")
    for i in range(count):
        publish_run_job(client, RunJob(job=f"tiny{i % JOBS}", run_id=str(uuid.uuid4())),
                        queue_name=settings.queue_name)  # fmt: skip
    log = Path(tempfile.mkdtemp()) / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            worker_command(settings, processes), env=worker_env(settings), stdout=out, stderr=out
        )
    try:
        done = lambda: history.count_documents({"status": "succeeded"})  # noqa: E731
        _wait(lambda: done() >= 1, 120)
        start, first = time.perf_counter(), done()
        _wait(lambda: done() >= count, 1200)
        return (count - first) / (time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--noop", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    redis_server = RedisServer().start()
    mongo_server = None
    mongo_url = os.environ.get("SLURP_TEST_MONGO_URL")
    if not mongo_url:
        mongo_server = SecantusServer().start()
        mongo_url = mongo_server.url
    try:
        rates = {}
        for processes in (1, 2):
            noop = noop_rate(redis_server.url, args.noop, processes, args.threads)
            settings = Settings.model_validate({
                "redis_url": redis_server.url, "mongo_url": mongo_url,
                "mongo_db": f"bench{processes}", "queue_name": f"bench{processes}",
                "metrics_port": 0, "worker_threads": args.threads,
            })  # fmt: skip
            ours = slurp_rate(settings, args.runs, processes)
            rates[processes] = ours
            print(f"{processes} process(es) x {args.threads} threads: no-op actor {noop:7.0f} msg/s"
                  f" | slurp tiny runs {ours:6.1f} runs/s ({ours * 60:,.0f}/min)"
                  f" = {ours / noop:.3f}x no-op, {1000 / ours:.1f} ms per run")  # fmt: skip
        print(f"slurp 2 processes vs 1: {rates[2] / rates[1]:.2f}x")
    finally:
        redis_server.close()
        if mongo_server is not None:
            mongo_server.close()


if __name__ == "__main__":
    main()
