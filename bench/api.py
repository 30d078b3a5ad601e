"""API benchmark: requests/s of a 1,000-record page over HTTP vs reading the same
page straight from storage (``CollectionReader.find``) in this process, as a ratio.

    .venv/bin/python -m bench.api [--records 10000] [--page-size 1000] [--seconds 5]

Three variants: a 10-record page of a 100-record collection (reads fast: the HTTP,
JSON and auth overhead is most of the cost), always page 1 (skip 0) and pages cycling over the
whole collection (skip grows: what a client paging through sees). For each, the API
process's CPU time per request (from /proc) is printed too.

The API runs in its own process (uvicorn, one worker) so it does not share this
process's GIL; the client is httpx with one keep-alive connection per client thread.
Storage and HTTP are measured alternately (storage, HTTP, storage) and the HTTP rate
is compared with the mean of the two storage rates around it, because the database
server's speed drifts. Starts its own SecantusDB server unless SLURP_TEST_MONGO_URL
is set; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.storage import records
from contracts.jobs import CollectionSpec, CollectionType
from slurp.localservers import SecantusServer, free_port
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import connect
from storage.strategies import strategy_for

COLLECTION = "bench"
#: A collection small enough to read fast: the HTTP/JSON/auth overhead shows.
SMALL = "bench_small"
PASSWORD = "bench-password"
SECRET = "bench-secret-" + "x" * 32


def serve(mongo_url: str, database: str, port: int, password_hash: str) -> None:
    """The API process (``python -m bench.api --serve ...``)."""
    from api.config import ApiConfig
    from api.server import serve as run

    user = {"username": "bench", "password_hash": password_hash, "role": "reader"}
    config = ApiConfig.model_validate(
        {"jwt_secret": SECRET, "users": [user], "port": port, "host": "127.0.0.1"}
    )
    run(config, connect(mongo_url, database), None, log_level="warning")


def rate(call: Callable[[int], None], seconds: float, threads: int, pages: int) -> float:
    """Calls per second of ``call(page)`` from ``threads`` threads for ``seconds``."""
    done = [0] * threads
    deadline = time.perf_counter() + seconds
    start = threading.Barrier(threads + 1)

    def loop(index: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < deadline:
            call((n * threads + index) % pages + 1)
            n += 1
        done[index] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--serve", nargs=4, metavar=("URL", "DB", "PORT", "HASH"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]), args.serve[3])
        return

    from api.passwords import scrypt_hash

    mongo = None
    url = os.environ.get("SLURP_TEST_MONGO_URL")
    if not url:
        mongo = SecantusServer().start()
        url = mongo.url
    database = f"bench_api_{uuid.uuid4().hex[:8]}"
    store = connect(url, database)
    api: subprocess.Popen[bytes] | None = None
    try:
        spec = CollectionSpec(type=CollectionType.NORMAL, name=COLLECTION)
        store_run(strategy_for(store, spec), "bench-1", records(args.records))
        small = CollectionSpec(type=CollectionType.NORMAL, name=SMALL)
        store_run(strategy_for(store, small), "bench-2", records(100))
        pages = max(1, args.records // args.page_size)
        port = free_port()
        command = [sys.executable, "-m", "bench.api", "--serve", url, database, str(port),
                   scrypt_hash(PASSWORD, n=2**10)]  # fmt: skip
        api = subprocess.Popen(command)
        base = f"http://127.0.0.1:{port}"
        token = _wait_and_login(base, api)
        reader = CollectionReader(store)
        local = threading.local()

        page_size = [args.page_size]
        target = [COLLECTION]

        def from_storage(page: int) -> None:
            skip = (page - 1) * page_size[0]
            got = list(reader.find(target[0], skip=skip, limit=page_size[0]))
            assert len(got) == page_size[0]

        def over_http(page: int) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(
                    base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
                )
            params = {"$limit": page_size[0], "$page": page}
            response = client.get(f"/api/collections/{target[0]}", params=params)
            assert response.status_code == 200 and len(response.json()) == page_size[0]

        print(
            f"API benchmark: {args.records} records x 10 fields, pages of {args.page_size}, "
            f"{args.seconds:g} s per measurement"
        )
        from_storage(1)  # warm-up
        over_http(1)
        variants = (
            ("10 of 100 rec", SMALL, 1, 10),
            ("page 1 only", COLLECTION, 1, args.page_size),
            (f"pages 1-{pages}", COLLECTION, pages, args.page_size),
        )
        for label, collection, cycle, size in variants:
            for threads in args.clients:
                page_size[0], target[0] = size, collection
                before = rate(from_storage, args.seconds, threads, cycle)
                cpu_before, wall = _cpu_s(api.pid), time.perf_counter()
                http = rate(over_http, args.seconds, threads, cycle)
                requests = http * (time.perf_counter() - wall)
                cpu_ms = (_cpu_s(api.pid) - cpu_before) / max(requests, 1) * 1000
                after = rate(from_storage, args.seconds, threads, cycle)
                storage = (before + after) / 2
                print(
                    f"{label:14} {threads} client(s): storage {storage:7.1f} pages/s "
                    f"({before:.1f} / {after:.1f})   HTTP {http:7.1f} req/s, API CPU "
                    f"{cpu_ms:5.2f} ms/req   ratio HTTP/storage {http / storage:5.2f}"
                )
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        store.client.drop_database(database)
        store.close()
        if mongo is not None:
            mongo.close()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_and_login(base: str, api: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            response = httpx.post(
                f"{base}/api/token/", json={"username": "bench", "password": PASSWORD}
            )
            return str(response.json()["access"])
        except httpx.TransportError:
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API process did not start") from None
            time.sleep(0.05)


if __name__ == "__main__":
    main()
