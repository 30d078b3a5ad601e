"""Cancel latency against real workers: how long from ``request_cancel`` until the
history records the run ``cancelled`` (the run stopped, aborted its writes, released
its lease and recorded the event).

Starts its own redis-server, SecantusDB server (unless SLURP_TEST_MONGO_URL is set), a
local HTTP server and one ``dramatiq`` worker group, then runs ``--cancels`` runs one
after the other, half of them cancelled during a long REST pagination (between pages,
0.05 s each) and half during one HTTP request the server answers only after 120 s
(interrupted). Prints the median and the maximum, overall and per case.

    .venv/bin/python -m bench.cancel [--cancels 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis

from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import publish_run_job
from slurp.localservers import RedisServer, SecantusServer
from slurp.settings import Settings
from storage.history import History
from storage.jobs import JobRegistry
from storage.store import connect
from workers.coordination import RedisCoordination
from workers.launch import worker_command, worker_env

#: Seconds each page of the paginated API takes; the slow request takes SLOW_S.
PAGE_S = 0.05
SLOW_S = 120.0


class _Api(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: dict[str, int] = {}
        self.closing = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Api

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.requests[parts.path] = self.server.requests.get(parts.path, 0) + 1
        if self.server.closing.wait(SLOW_S if parts.path == "/slow" else PAGE_S):
            return
        page = int(dict(parse_qsl(parts.query)).get("page", "1"))
        body = json.dumps({"items": [{"id": page * 10 + i} for i in range(10)]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the worker hung up (cancelled)
            pass


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)  # the latency's resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancels", type=int, default=20)
    args = parser.parse_args()
    redis_server = RedisServer().start()
    mongo = None
    mongo_url = os.environ.get("SLURP_TEST_MONGO_URL")
    if not mongo_url:
        mongo = SecantusServer().start()
        mongo_url = mongo.url
    api = _Api()
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    base = f"http://127.0.0.1:{api.server_address[1]}"
    db = f"bench_cancel_{uuid.uuid4().hex[:8]}"
    settings = Settings.model_validate({
        "redis_url": redis_server.url, "mongo_url": mongo_url, "mongo_db": db,
        "queue_name": "bench-cancel", "metrics_port": 0, "worker_threads": 2,
        "http_allow_private": True,
    })  # fmt: skip
    store = connect(mongo_url, db)
    registry = JobRegistry(store)
    for name, source in (
        ("paged", {"url": f"{base}/pages", "records_path": "items",
                   "pagination": {"style": "page"}}),
        ("slow", {"url": f"{base}/slow"}),
    ):  # fmt: skip
        registry.put(JobDefinition.model_validate({
            "name": name, "datasources": [{"name": "api", "type": "rest", **source}],
            "collection": {"type": "normal", "name": name},
        }))  # fmt: skip
    log = Path(tempfile.mkdtemp()) / "worker.log"
    worker = subprocess.Popen(
        worker_command(settings, processes=1), env=worker_env(settings),
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    client = redis.Redis.from_url(redis_server.url)
    coordination = RedisCoordination(client)
    history = History(store)
    latencies: dict[str, list[float]] = {"pagination": [], "slow request": []}
    try:
        _wait(lambda: "ready for action" in log.read_text(errors="replace"), 60, "the worker")
        for i in range(args.cancels):
            case, job, path = (
                ("pagination", "paged", "/pages")
                if i % 2 == 0
                else ("slow request", "slow", "/slow")
            )
            seen = api.requests.get(path, 0)
            run = RunJob(job=job, run_id=str(uuid.uuid4()))
            publish_run_job(client, run, queue_name=settings.queue_name)
            # well under way: several pages fetched, or the slow request sent
            _wait(lambda p=path, s=seen: api.requests.get(p, 0) >= s + (5 if p == "/pages" else 1),
                  60, "the run to fetch")  # fmt: skip
            asked = time.monotonic()
            coordination.request_cancel(run.run_id, "bench")
            doc = _wait(lambda r=run.run_id: (history.get(r) or {}).get("status") == "cancelled"
                        and history.get(r), 60, "cancelled")  # fmt: skip
            latencies[case].append(time.monotonic() - asked)
            assert doc["status"] == "cancelled"
    finally:
        worker.terminate()
        worker.wait(30)
        api.closing.set()
        api.shutdown()
        store.client.drop_database(db)
        store.close()
        client.close()
        redis_server.close()
        if mongo is not None:
            mongo.close()
    every = [x for values in latencies.values() for x in values]
    print(f"cancel latency (request -> recorded cancelled), {len(every)} cancels, 1 worker")
    for case, values in [("all", every), *latencies.items()]:
        print(f"{case:14} median {statistics.median(values) * 1000:6.0f} ms   "
              f"max {max(values) * 1000:6.0f} ms   (n={len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
