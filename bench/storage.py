"""Storage benchmark: records/s of each collection type against raw pymongo writes of
the same records to the same server, measured in the same run, printed as ratios.

For every type, ``--repeat`` times (the median ratio is printed with its spread):

- run 1: the records into an empty collection, against a raw ``insert_many`` of the
  same records into a fresh collection;
- steady state: the same records again (every key exists), against a raw bulk of
  upserting ``ReplaceOne`` of the same records into a collection holding them (the
  least work that gives the upserted result in one round trip per batch) for the
  upserted types, and against a raw ``insert_many`` for the others.

Each raw baseline is the mean of measurements right before and right after the run
it is paired with (the server's speed drifts on this machine, so only paired ratios
are comparable). Also: the peak
memory of streaming ``--memory-records`` / 10 vs ``--memory-records`` records; and the
cost of change statistics (``change_stats``): a steady-state run (previous data
present, half of the records changed) with the statistics on, against the same run
with them off, alternated, as the ratio of seconds on / off (1.00x = free). Only the
normal and versioned types read the previous data for them; the others take them from
the writes they do anyway.

    .venv/bin/python -m bench.storage [--records 20000] [--repeat 3] [--memory-records 200000]

Starts its own SecantusDB server unless SLURP_TEST_MONGO_URL is set.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from pymongo import ReplaceOne

from contracts.jobs import CollectionSpec, CollectionType
from slurp.localservers import SecantusServer
from storage.bulk import BATCH_SIZE, batched
from storage.runs import store_run
from storage.store import Store, connect
from storage.strategies import strategy_for

SPECS = {
    CollectionType.NORMAL: {},
    CollectionType.ACCUMULATIVE: {},
    CollectionType.UPSERTED: {"upsert_key": "id"},
    CollectionType.VERSIONED: {"keep_versions": 2},
    CollectionType.UPSERTED_VERSIONED: {"upsert_key": "id", "keep_versions": 2},
    CollectionType.ACCUMULATIVE_VERSIONED: {"keep_versions": 2},
}
UPSERTING = {CollectionType.UPSERTED, CollectionType.UPSERTED_VERSIONED}


def records(count: int) -> Iterator[dict[str, Any]]:
    """``count`` user-like records of 10 fields."""
    for i in range(count):
        yield {
            "id": i,
            "name": f"User {i}",
            "username": f"user{i}",
            "email": f"user{i}@example.org",
            "age": 20 + i % 60,
            "score": i * 0.5,
            "active": i % 3 == 0,
            "city": ("Zurich", "Geneva", "Basel")[i % 3],
            "tags": ["a", "b"],
            "address": {"street": f"{i} Main St", "zip": f"{8000 + i % 999}"},
        }


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _fresh(url: str, label: str) -> Store:
    return connect(url, f"bench_{label}_{uuid.uuid4().hex[:8]}")


def raw_insert(url: str, count: int) -> float:
    """Seconds for insert_many of ``count`` records in batches, into a fresh collection."""
    store = _fresh(url, "raw")
    target = store.db["raw"]

    def write() -> None:
        for batch in batched(records(count), BATCH_SIZE):
            target.insert_many(batch, ordered=False)

    elapsed = _timed(write)
    store.client.drop_database(store.db.name)
    return elapsed


def raw_upsert(url: str, count: int) -> float:
    """Seconds for a bulk of upserting replaces by ``_id`` of ``count`` records into a
    collection that holds every one of them already."""
    store = _fresh(url, "rawup")
    target = store.db["raw"]
    for batch in batched(records(count), BATCH_SIZE):
        target.insert_many([{"_id": r["id"], **r} for r in batch], ordered=False)

    def write() -> None:
        for batch in batched(records(count), BATCH_SIZE):
            target.bulk_write(
                [ReplaceOne({"_id": r["id"]}, {"_id": r["id"], **r}, upsert=True) for r in batch],
                ordered=False,
            )

    elapsed = _timed(write)
    store.client.drop_database(store.db.name)
    return elapsed


def pair(url: str, kind: CollectionType, count: int) -> tuple[float, float]:
    """(run 1 ratio, steady-state ratio) of ``kind``: raw seconds / slurp seconds."""
    spec = CollectionSpec(type=kind, name="bench", **SPECS[kind])
    store = _fresh(url, kind.value)
    strategy = strategy_for(store, spec, retire_grace_s=0)
    raw2 = raw_upsert if kind in UPSERTING else raw_insert
    before1 = raw_insert(url, count)
    run1 = _timed(lambda: store_run(strategy, "run-1", records(count)))
    after1, before2 = raw_insert(url, count), raw2(url, count)
    run2 = _timed(lambda: store_run(strategy, "run-2", records(count)))
    after2 = raw2(url, count)
    store.client.drop_database(store.db.name)
    return (before1 + after1) / 2 / run1, (before2 + after2) / 2 / run2


def changed(count: int) -> Iterator[dict[str, Any]]:
    """``records(count)`` with every second record changed."""
    for record in records(count):
        yield {**record, "age": record["age"] + 1} if record["id"] % 2 else record


def steady_seconds(url: str, kind: CollectionType, count: int, stats: bool) -> float:
    """Seconds of a steady-state run (``changed(count)`` over ``records(count)``)."""
    spec = CollectionSpec(type=kind, name="bench", change_stats=stats, **SPECS[kind])
    store = _fresh(url, f"stats{int(stats)}")
    strategy = strategy_for(store, spec, retire_grace_s=0)
    store_run(strategy, "run-1", records(count))
    elapsed = _timed(lambda: store_run(strategy, "run-2", changed(count)))
    store.client.drop_database(store.db.name)
    return elapsed


def stats_cost(url: str, kind: CollectionType, count: int) -> float:
    """Seconds with change statistics on / the mean of the same run with them off right
    before and right after (paired, like the raw baselines)."""
    before = steady_seconds(url, kind, count, stats=False)
    on = steady_seconds(url, kind, count, stats=True)
    after = steady_seconds(url, kind, count, stats=False)
    return on / ((before + after) / 2)


def peak_rss_mb(url: str, count: int) -> float:
    """Peak RSS (MiB) of a child process streaming ``count`` records through normal."""
    code = (
        "import resource, sys; from bench.storage import stream_normal; "
        f"stream_normal({url!r}, {count}); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def stream_normal(url: str, count: int) -> None:
    store = connect(url, f"bench_mem_{uuid.uuid4().hex[:8]}")
    spec = CollectionSpec(type=CollectionType.NORMAL, name="bench")
    store_run(strategy_for(store, spec, retire_grace_s=0), "mem", records(count))
    store.client.drop_database(store.db.name)


def _summary(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-records", type=int, default=200_000)
    parser.add_argument(
        "--types", nargs="+", choices=[k.value for k in SPECS], help="only these types"
    )
    args = parser.parse_args()
    kinds = [k for k in SPECS if not args.types or k.value in args.types]
    server = None
    url = os.environ.get("SLURP_TEST_MONGO_URL")
    if not url:
        server = SecantusServer().start()
        url = server.url
    try:
        n = args.records
        print(f"storage benchmark: {n} records x 10 fields; median of {args.repeat} paired")
        print("ratios (raw seconds / slurp seconds; 1.00x = as fast as raw), spread in brackets")
        print(f"{'type':24} {'run 1 vs insert_many':22} steady state vs raw")
        raw_insert(url, n // 4)  # warm-up: the first insert into a fresh server is faster
        for kind in kinds:
            results = [pair(url, kind, n) for _ in range(args.repeat)]
            baseline = "bulk upsert" if kind in UPSERTING else "insert_many"
            print(
                f"{kind.value:24} {_summary([r[0] for r in results]):22} "
                f"{_summary([r[1] for r in results])} vs {baseline}"
            )
        print("change statistics: steady-state seconds with them on / off (1.00x = free)")
        for kind in kinds:
            costs = [stats_cost(url, kind, n) for _ in range(args.repeat)]
            print(f"{kind.value:24} {_summary(costs)}")
        if args.memory_records:
            small = peak_rss_mb(url, args.memory_records // 10)
            large = peak_rss_mb(url, args.memory_records)
            print(
                f"peak RSS streaming normal: {args.memory_records // 10} rec {small:.0f} MiB, "
                f"{args.memory_records} rec {large:.0f} MiB, ratio {large / small:.2f}x"
            )
        own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(bench process peak RSS {own_mb:.0f} MiB)")
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
