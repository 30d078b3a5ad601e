"""End-to-end soak: ticker + 2 worker processes (runs and events) on real Redis and
SecantusDB for N minutes with many every-minute jobs; one worker group is SIGKILLed and
restarted every 2 minutes and Redis is restarted once. At the end:

- every scheduled slot between the first and the last one appears exactly once in the
  history, and every one of them succeeded;
- no run is stuck in ``running``;
- no collection holds partial data (each holds exactly its job's records).

    .venv/bin/python -m bench.soak [--minutes 10] [--jobs 200]

Prints the figures; exits 1 if a check fails. Not part of the test suite (it takes
minutes); run it before a release.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from contracts.jobs import JobDefinition
from slurp.localservers import RedisServer, SecantusServer
from slurp.settings import Settings
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import connect
from workers.launch import worker_command, worker_env

RECORDS_PER_JOB = 5


def job(n: int) -> JobDefinition:
    return JobDefinition.model_validate({
        "name": f"soak{n:03d}",
        "datasources": [{"name": "rows", "type": "inline",
                         "records": [{"id": i, "job": n} for i in range(RECORDS_PER_JOB)]}],
        "schedule": {"cron": "* * * * *"},
        "collection": {"type": ("normal", "upserted", "accumulative_versioned")[n % 3],
                       "name": f"soak{n:03d}",
                       **({"upsert_key": "id"} if n % 3 == 1 else {}),
                       **({"keep_versions": 2} if n % 3 == 2 else {})},
        "retry": {"max_retries": 5, "min_backoff_s": 1, "max_backoff_s": 10},
    })  # fmt: skip


def start_workers(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        worker_command(settings, 2), env=worker_env(settings), stdout=out, stderr=out,
        start_new_session=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slurp-soak-"))
    redis_server = RedisServer(persistent=True, workdir=work / "redis").start()
    mongo = SecantusServer(workdir=work / "mongo-run", data_dir=work / "mongo").start()
    settings = Settings.model_validate({
        "redis_url": redis_server.url, "mongo_url": mongo.url, "mongo_db": "soak",
        "metrics_port": 0, "worker_threads": 4, "worker_heartbeat_timeout_s": 5,
        "lease_ttl_s": 10,
    })  # fmt: skip
    store = connect(mongo.url, "soak")
    registry = JobRegistry(store)
    for n in range(args.jobs):
        registry.put(job(n))
    env = {**os.environ, "SLURP_REDIS_URL": redis_server.url, "SLURP_MONGO_URL": mongo.url,
           "SLURP_MONGO_DB": "soak", "SLURP_LOG_LEVEL": "WARNING"}  # fmt: skip
    tickers = [
        subprocess.Popen([sys.executable, "-m", "slurp", "ticker", "--port", "0"], env=env,
                         stdout=(work / f"ticker{i}.log").open("ab"), stderr=subprocess.STDOUT)
        for i in range(2)
    ]  # fmt: skip
    workers = start_workers(settings, work / "workers.log")
    started = time.monotonic()
    end = started + args.minutes * 60
    kills = redis_restarts = 0
    next_kill = started + 120
    redis_at = started + args.minutes * 60 / 2
    print(f"soak: {args.jobs} every-minute jobs for {args.minutes:g} min; logs in {work}")
    try:
        while time.monotonic() < end:
            time.sleep(1)
            now = time.monotonic()
            if now >= next_kill:
                os.killpg(workers.pid, signal.SIGKILL)
                workers.wait()
                workers = start_workers(settings, work / "workers.log")
                kills += 1
                next_kill += 120
                print(f"  {now - started:5.0f} s: killed and restarted the workers")
            if redis_restarts == 0 and now >= redis_at:
                redis_server.stop()
                redis_server.start()
                redis_restarts += 1
                print(f"  {now - started:5.0f} s: restarted Redis")
        for ticker in tickers:
            ticker.send_signal(signal.SIGTERM)
            ticker.wait()
        # Let the queue drain: runs of the last slot finish.
        history = store.db["slurp_history"]
        deadline = time.monotonic() + 300
        while history.count_documents({"status": {"$in": ["running", "retrying"]}}) and (
            time.monotonic() < deadline
        ):
            time.sleep(1)
        time.sleep(5)  # events of finished runs reach the log
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait()
    failures = check(store, args.jobs)
    store.close()
    redis_server.close()
    mongo.close()
    print(f"worker kills: {kills}, Redis restarts: {redis_restarts}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures[:20]))
        raise SystemExit(1)
    print("OK: every slot exactly once, none stuck, no partial data")


def check(store: object, jobs: int) -> list[str]:
    history = History(store)  # type: ignore[arg-type]
    docs = list(history.docs.find({"trigger": "schedule"}))
    slots: Counter[tuple[str, datetime]] = Counter((d["job"], d["scheduled_for"]) for d in docs)
    by_status = Counter(d["status"] for d in docs)
    failures = [f"slot {key} appears {n} times" for key, n in slots.items() if n > 1]
    all_slots = sorted({s for _, s in slots})
    # Every job must have every slot from the first to the last full minute.
    full = all_slots[1:-1]  # the first and last minute may be partly outside the soak
    for n in range(jobs):
        name = f"soak{n:03d}"
        missing = [s for s in full if (name, s) not in slots]
        if missing:
            failures.append(f"{name}: {len(missing)} slot(s) missing, e.g. {missing[0]}")
    stuck = [d["_id"] for d in docs if d["status"] in ("running", "retrying")]
    failures += [f"run {r} stuck" for r in stuck]
    failures += [f"run {d['_id']} {d['status']}: {d.get('error')}" for d in docs
                 if d["status"] not in ("succeeded", "running", "retrying")]  # fmt: skip
    reader = CollectionReader(store)  # type: ignore[arg-type]
    for n in range(jobs):
        name = f"soak{n:03d}"
        count = reader.count(name)
        if n % 3 != 2 and count != RECORDS_PER_JOB:
            failures.append(f"{name}: {count} records, expected {RECORDS_PER_JOB}")
        if n % 3 == 2 and count % RECORDS_PER_JOB:
            failures.append(f"{name}: {count} records, not whole runs of {RECORDS_PER_JOB}")
    span = (all_slots[-1] - all_slots[0]) if all_slots else timedelta(0)
    print(f"history: {len(docs)} scheduled runs over {len(all_slots)} slots ({span}), "
          f"status {dict(by_status)}; checked {len(full)} full slots x {jobs} jobs")  # fmt: skip
    return failures


if __name__ == "__main__":
    main()
