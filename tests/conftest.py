"""Session-wide real servers: a private redis-server and a SecantusDB server.

Nothing here is a mock: tests talk to real processes over TCP on 127.0.0.1. When a
server cannot be started the tests needing it are skipped locally but *fail* when
``CI`` is set. ``SLURP_TEST_MONGO_URL`` points the suite at a real MongoDB instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from slurp.localservers import RedisServer, SecantusServer, ServerStartError
from storage.store import Store, connect


def _unavailable(what: str, exc: Exception) -> None:
    message = f"cannot start {what}: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
    except ServerStartError as exc:
        _unavailable("redis-server", exc)
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    external = os.environ.get("SLURP_TEST_MONGO_URL")
    if external:
        yield external
        return
    server = SecantusServer()
    try:
        server.start()
    except ServerStartError as exc:
        _unavailable("SecantusDB", exc)
    yield server.url
    server.close()


@pytest.fixture
def mongo_db_name() -> str:
    """A fresh database name per test, so tests never see each other's data."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(mongo_url: str, mongo_db_name: str) -> Iterator[Store]:
    """A ``storage.Store`` on a fresh database of the session's MongoDB server."""
    handle = connect(mongo_url, mongo_db_name)
    yield handle
    handle.client.drop_database(mongo_db_name)
    handle.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client of the session's Redis server (modules may override the name)."""
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()
