"""What one tiny run costs: database round trips and Redis commands, counted.

A worker (``workers.app.setup``, the production broker and actors, metrics on) runs
in this process on its own redis-server and SecantusDB; runs of 1-record upserted
jobs are published one at a time with ``contracts.publish`` and each is awaited in
Redis (never by polling the database under test). Counted per run, averaged over
``--runs``:

- database round trips: every command a pymongo ``CommandListener`` sees, by name;
- Redis commands: every command ``MONITOR`` sees from the worker and the publisher,
  by name; waiting for work (the fetch that found the queue empty and the ``BLMOVE``
  the consumer then blocks in until the next message is published, the part that
  replaces polling) is excluded and shown separately.

Then the same again with ``--history`` documents in the execution history: the
cost of a run must not grow with it (every history write is by ``_id``).

    .venv/bin/python -m bench.tinyrun [--runs 50] [--history 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from typing import Any

import redis
from pymongo import monitoring

from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from slurp.localservers import RedisServer, SecantusServer
from slurp.settings import Settings


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()
        self.names: dict[int, str] = {}
        self.on = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on:
            name = f"{event.command_name}:{event.command.get(event.command_name, '')}"
            self.counts[name] += 1
            self.names[event.request_id] = name

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        name = self.names.pop(event.request_id, None)
        if name:
            self.micros[name] += event.duration_micros

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class _Monitor(threading.Thread):
    """Collects (command, first argument) of every Redis command while ``on``."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.seen: list[tuple[str, str, str]] = []
        self.on = False

    def run(self) -> None:
        try:
            with self.client.monitor() as monitor:
                for item in monitor.listen():
                    if self.on and item.get("client_type") != "lua":  # not inside a script
                        parts = item["command"].split(" ")
                        self.seen.append((parts[0].upper(), *[*parts[1:3], "", ""][:2]))
        except redis.ConnectionError:  # the server stopped at the end of the benchmark
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--history", type=int, default=100_000, help="0: skip that phase")
    args = parser.parse_args()
    listener = _Commands()
    monitoring.register(listener)
    redis_server = RedisServer().start()
    mongo_server = SecantusServer().start()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()  # metrics on, as deployed
    try:
        _measure(redis_server.url, mongo_server.url, args.runs, args.history, listener)
    finally:
        redis_server.close()
        mongo_server.close()


def _measure(redis_url: str, mongo_url: str, runs: int, history: int, listener: _Commands) -> None:
    import dramatiq

    from storage.jobs import JobRegistry
    from storage.store import connect
    from workers.app import setup
    from workers.consumer import FETCH_SCRIPT

    settings = Settings.model_validate(
        {"redis_url": redis_url, "mongo_url": mongo_url, "mongo_db": "tiny",
         "queue_name": "tiny", "metrics_port": 0, "worker_threads": 1}
    )  # fmt: skip
    store = connect(mongo_url, "tiny")
    JobRegistry(store).put(
        JobDefinition.model_validate({
            "name": "tiny",
            "datasources": [{"name": "rows", "type": "inline", "records": [{"id": 1, "v": 1}]}],
            "collection": {"type": "upserted", "name": "tiny", "upsert_key": "id"},
        })
    )  # fmt: skip
    broker = setup(settings)
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    publisher = redis.Redis.from_url(redis_url)
    monitor = _Monitor(redis_url)
    monitor.start()
    fetch_sha = redis.Redis.from_url(redis_url).script_load(FETCH_SCRIPT)
    marker = publisher  # completion is read with EXISTS/HLEN from this client: not counted

    def wait_done(run_id: str) -> None:
        deadline = time.monotonic() + 60
        while not (
            marker.exists(f"slurp:done:{run_id}")
            and not marker.hlen("dramatiq:tiny.msgs")
            and not marker.hlen("dramatiq:tiny-events.msgs")
        ):
            if time.monotonic() > deadline:
                raise SystemExit("run did not finish")
            time.sleep(0.001)

    warm = RunJob(job="tiny", run_id=str(uuid.uuid4()))
    publish_run_job(publisher, warm, queue_name="tiny")
    wait_done(warm.run_id)

    def phase(label: str) -> tuple[float, float]:
        """Run ``runs`` runs one at a time; print the counts; return (median latency,
        database time per run), both in ms."""
        listener.counts.clear()
        listener.micros.clear()
        monitor.seen.clear()
        latencies = []
        listener.on = monitor.on = True
        for _ in range(runs):
            run = RunJob(job="tiny", run_id=str(uuid.uuid4()))
            start = time.perf_counter()
            publish_run_job(publisher, run, queue_name="tiny")
            wait_done(run.run_id)
            latencies.append(time.perf_counter() - start)
        listener.on = monitor.on = False
        mine = {"EXISTS", "HLEN", "MONITOR"}
        work = [c for c in monitor.seen if c[0] not in mine]
        fetches = sum(1 for c in work if c[0] == "EVALSHA" and c[1].strip('"') == fetch_sha)
        idle_polls = max(0, fetches - runs)  # one productive fetch per run
        shas = {fetch_sha: "fetch"}
        by_name = Counter(
            f"EVALSHA({shas.get(c[1].strip(chr(34)), c[1].strip(chr(34))[:6])})"
            if c[0] == "EVALSHA" else c[0]
            for c in work
        )  # fmt: skip
        total_db = sum(listener.counts.values())
        db_ms = sum(listener.micros.values()) / runs / 1000
        latencies.sort()
        median_ms = statistics.median(latencies) * 1000
        print(f"{label}: {runs} tiny runs (1 record, upserted), one at a time")
        print(
            f"  database round trips per run: {total_db / runs:.1f} (target <= 5)  "
            + ", ".join(f"{k} {v / runs:.1f}" for k, v in listener.counts.most_common())
        )
        print(
            f"  database time per run: {db_ms:.1f} ms  "
            + ", ".join(f"{k} {v / runs / 1000:.1f}" for k, v in listener.micros.most_common())
        )
        waits = sum(1 for c in work if c[0] == "BLMOVE")  # blocked until a message came
        redis_per_run = (len(work) - idle_polls - waits) / runs
        print(
            f"  Redis commands per run, waiting for work excluded: {redis_per_run:.1f}"
            " (target <= 10)  "
            + ", ".join(f"{k} {v / runs:.1f}" for k, v in by_name.items() if k != "BLMOVE")
            + f"; waiting: empty fetches {idle_polls / runs:.1f}, BLMOVE {waits / runs:.1f}"
        )
        print(f"  publish-to-done latency: median {median_ms:.1f} ms, "
              f"p10 {latencies[len(latencies) // 10] * 1000:.1f}, "
              f"p90 {latencies[int(len(latencies) * 0.9)] * 1000:.1f}")  # fmt: skip
        return median_ms, db_ms

    empty = phase("history empty")
    if history > 0:
        _seed_history(store, history)
        full = phase(f"history with {history:,} documents")
        print(f"with {history:,} history documents / with none: latency "
              f"{full[0] / empty[0]:.2f}x, database time {full[1] / empty[1]:.2f}x "
              "(target <= 1.2x)")  # fmt: skip
    worker.stop()


def _seed_history(store: Any, count: int) -> None:
    """``count`` finished runs of 100 other jobs, shaped as the recorder writes them."""
    from datetime import timedelta

    from contracts.base import utcnow

    now = utcnow()
    docs = store.db["slurp_history"]
    for first in range(0, count, 5000):
        docs.insert_many([
            {"_id": str(uuid.uuid4()), "job": f"other{n % 100}", "status": "succeeded",
             "attempts": 1, "first_at": now - timedelta(seconds=n), "order": 1014,
             "started_at": now - timedelta(seconds=n), "finished_at": now,
             "records_written": 1, "error": None}
            for n in range(first, min(count, first + 5000))
        ])  # fmt: skip


if __name__ == "__main__":
    main()
