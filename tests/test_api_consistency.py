"""While a run fills a staging collection, concurrent HTTP readers always get the
complete previous data: never a partial or an empty answer; after the commit, the
complete new data."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from api_harness import bearer, fill, login, running_api, spec

from contracts.jobs import CollectionType
from storage.bulk import batched
from storage.store import Store
from storage.strategies import strategy_for
from tests.worker_harness import wait_for

READERS = 4
PAGE = 100
BATCH = 150
OLD = [{"id": i, "gen": 1, "pad": "o" * 20} for i in range(600)]
NEW = [{"id": i, "gen": 2, "pad": "n" * 20} for i in range(900)]


class Readers:
    """Threads reading the collection over HTTP in a loop, classifying every answer."""

    def __init__(self, base_url: str, token: str, path: str) -> None:
        self.base_url = base_url
        self.token = token
        self.path = path
        self.stop = threading.Event()
        self.committing = threading.Event()  # set just before commit() is called
        self.committed = threading.Event()  # set once commit() returned
        self.lock = threading.Condition()
        self.reads = 0
        self.seen: dict[str, int] = {"old": 0, "new": 0}
        self.problems: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(READERS)
        ]

    def _classify(self, client: httpx.Client, paged: bool) -> str:
        if paged:
            response = client.get(self.path, params={"$limit": PAGE, "$with_meta": "true"})
            body: Any = response.json()
            full = {len(OLD): OLD, len(NEW): NEW}.get(body.get("count"))
            if full is None or body["items"] != full[:PAGE] or body["last"] != len(full) // PAGE:
                return f"inconsistent page: count={body.get('count')}"
            return "old" if full is OLD else "new"
        body = client.get(self.path).json()
        if body == OLD:
            return "old"
        if body == NEW:
            return "new"
        return f"partial answer: {len(body)} records"

    def _loop(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, headers=bearer(self.token), timeout=30) as c:
            paged = False
            while not self.stop.is_set():
                kind = self._classify(c, paged)
                before_commit = not self.committing.is_set()  # the whole request was before
                after_commit = self.committed.is_set()
                paged = not paged
                with self.lock:
                    self.reads += 1
                    if kind in self.seen:
                        self.seen[kind] += 1
                    if kind not in self.seen:
                        self.problems.append(kind)
                    elif before_commit and kind != "old":
                        self.problems.append("new data before the commit")
                    self.lock.notify_all()
                if after_commit and kind == "new":
                    return  # the new data is served; this reader is done

    def wait_reads(self, count: int, timeout_s: float = 20.0) -> None:
        """Block until ``count`` more answers arrived (readers overlap the writes)."""
        with self.lock:
            target = self.reads + count
            ok = self.lock.wait_for(lambda: self.reads >= target or bool(self.problems), timeout_s)
        assert ok, "the readers made no progress"

    def __enter__(self) -> Readers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.mark.parametrize("kind", [CollectionType.NORMAL, CollectionType.VERSIONED])
def test_readers_see_the_complete_old_data_until_the_commit(
    store: Store, kind: CollectionType
) -> None:
    extra = {"keep_versions": 2} if kind.versioned else {}
    target = spec(kind, "live", **extra)
    fill(store, target, OLD, "run-1")
    with running_api(store) as server:
        with httpx.Client(base_url=server.url) as client:
            token = login(client, "reader")["access"]
        with Readers(server.url, token, "/api/collections/live") as readers:
            readers.wait_reads(READERS)
            run = strategy_for(store, target).begin("run-2")
            for batch in batched(NEW, BATCH):
                run.write(batch)
                readers.wait_reads(READERS)  # several answers while each batch is staged
            readers.committing.set()
            run.commit()
            readers.committed.set()
            wait_for(lambda: all(not t.is_alive() for t in readers.threads), what="new data")
        assert readers.problems == []
        assert readers.seen["old"] >= READERS * (len(NEW) // BATCH)
        assert readers.seen["new"] >= READERS
        if kind.versioned:
            with httpx.Client(base_url=server.url, headers=bearer(token)) as client:
                assert client.get("/api/collections/live/versions/1").json() == OLD
                assert client.get("/api/collections/live/versions/2").json() == NEW


def test_an_aborted_run_leaves_the_served_data_alone(store: Store) -> None:
    target = spec(CollectionType.NORMAL, "live")
    fill(store, target, OLD, "run-1")
    with running_api(store) as server, httpx.Client(base_url=server.url) as client:
        client.headers.update(bearer(login(client, "reader")["access"]))
        run = strategy_for(store, target).begin("run-2")
        run.write(NEW[:500])
        assert client.get("/api/collections/live").json() == OLD
        run.abort()
        assert client.get("/api/collections/live").json() == OLD
        started = time.monotonic()
        assert client.get("/api/collections/live", params={"$limit": 5}).json() == OLD[:5]
        assert time.monotonic() - started < 5
