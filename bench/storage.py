"""Storage benchmark: records/s of each collection type vs a raw insert_many of the
same records into the same server, in the same run, printed as ratios; and the peak
memory of streaming 100k vs 1M records through a normal collection.

    .venv/bin/python -m bench.storage [--records 100000] [--memory-records 1000000]

Starts its own SecantusDB server unless SLURP_TEST_MONGO_URL is set.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from contracts.jobs import CollectionSpec, CollectionType
from slurp.localservers import SecantusServer
from storage.bulk import BATCH_SIZE, batched
from storage.runs import store_run
from storage.store import connect
from storage.strategies import strategy_for

SPECS = {
    CollectionType.NORMAL: {},
    CollectionType.ACCUMULATIVE: {},
    CollectionType.UPSERTED: {"upsert_key": "id"},
    CollectionType.VERSIONED: {"keep_versions": 2},
    CollectionType.UPSERTED_VERSIONED: {"upsert_key": "id", "keep_versions": 2},
    CollectionType.ACCUMULATIVE_VERSIONED: {"keep_versions": 2},
}


def records(count: int, offset: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` user-like records of 10 fields."""
    for i in range(offset, offset + count):
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


def raw_insert(url: str, count: int) -> float:
    """Seconds for insert_many of ``count`` records in batches, into a fresh collection."""
    store = connect(url, f"bench_raw_{uuid.uuid4().hex[:8]}")
    target = store.db["raw"]
    start = time.perf_counter()
    for batch in batched(records(count), BATCH_SIZE):
        target.insert_many(batch, ordered=False)
    elapsed = time.perf_counter() - start
    store.client.drop_database(store.db.name)
    return elapsed


def strategy_run(url: str, kind: CollectionType, count: int, runs: int) -> list[float]:
    """Seconds of ``runs`` successive runs of ``count`` records each (run 2+ overlaps
    half of the previous keys, so upserts update half and insert half)."""
    store = connect(url, f"bench_{kind.value}_{uuid.uuid4().hex[:8]}")
    spec = CollectionSpec(type=kind, name="bench", **SPECS[kind])
    strategy = strategy_for(store, spec, retire_grace_s=0)
    times = []
    for run in range(runs):
        start = time.perf_counter()
        store_run(strategy, f"run-{run}", records(count, offset=run * count // 2))
        times.append(time.perf_counter() - start)
    store.client.drop_database(store.db.name)
    return times


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--memory-records", type=int, default=1_000_000)
    args = parser.parse_args()
    server = None
    url = os.environ.get("SLURP_TEST_MONGO_URL")
    if not url:
        server = SecantusServer().start()
        url = server.url
    try:
        n = args.records
        print(f"storage benchmark: {n} records x 10 fields, {args.runs} runs per type")
        print("each type's ratio is against the mean of raw insert_many runs just before and")
        print("after it (the server's speed drifts, so only paired ratios are comparable)")
        raw_insert(url, n // 4)  # warm-up: the first insert into a fresh server is faster
        for kind in SPECS:
            before = raw_insert(url, n)
            times = strategy_run(url, kind, n, args.runs)
            raw_s = (before + raw_insert(url, n)) / 2  # baseline measured around the type
            cells = "   ".join(
                f"run {i + 1}: {n / t:6.0f} rec/s {raw_s / t:5.2f}x" for i, t in enumerate(times)
            )
            print(f"{kind.value:24} raw {n / raw_s:6.0f} rec/s   {cells}")
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
