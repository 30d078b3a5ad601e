"""Resource limits of the API against a real uvicorn server and database: query time
limit, concurrency caps, health under load, request body size, login limits.

Slow database answers come from ``db_gate.GatedProxy``: a proxy between the API and
the database holding answers back until the test lets them through, so "requests in
progress" is a state the test controls, not a race.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import PASSWORDS, client_for, fill, fresh_store, login, running_api, spec
from db_gate import GatedProxy
from worker_harness import free_port, wait_for

from api.config import ApiConfigError, load_api_config
from api.limits import ConcurrencyLimits
from api.server import ApiServer
from contracts.jobs import CollectionType
from storage.store import Store, connect

#: Records of the collection the slow filtered reads scan.
BIG = 3000
#: Readers in the saturation test: more than Starlette's 40 worker threads.
READERS = 60
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def store(mongo_url: str) -> Iterator[Store]:
    with fresh_store(mongo_url) as shared:
        fill(shared, spec(CollectionType.NORMAL, "small"), [{"i": i} for i in range(5)], "s1")
        fill(shared, spec(CollectionType.NORMAL, "big"),
             ({"i": i, "city": "Zurich", "pad": "x" * 50} for i in range(BIG)), "b1")  # fmt: skip
        yield shared


@pytest.fixture
def gate(mongo_url: str) -> Iterator[GatedProxy]:
    with GatedProxy(mongo_url) as proxy:
        yield proxy


@pytest.fixture
def gated_store(gate: GatedProxy, store: Store) -> Iterator[Store]:
    """The module's database, reached through ``gate``."""
    handle = connect(gate.url, store.db.name)
    yield handle
    gate.open()
    handle.close()


def limits_of(server: ApiServer) -> ConcurrencyLimits:
    limits = server.app.state.limits
    assert isinstance(limits, ConcurrencyLimits)
    return limits


# -- query time limit -----------------------------------------------------------------


def test_a_query_past_its_time_limit_is_503(store: Store) -> None:
    slow = {"city": "nowhere"}  # no index: every record is scanned
    with running_api(store, query_timeout_ms=1) as server, client_for(server, "reader") as c:
        for extra in ({"$limit": 10}, {"$with_meta": "true"}, {}):  # find, count, stream
            response = c.get("/api/collections/big", params={**slow, **extra})
            assert response.status_code == 503, (extra, response.text)
            detail = response.json()["detail"]
            assert "limit of 1 ms" in detail and "SLURP_API_QUERY_TIMEOUT_MS" in detail
    with running_api(store) as server, client_for(server, "reader") as c:  # default: 10 s
        assert c.get("/api/collections/big", params=slow).json() == []


# -- concurrency caps and health ------------------------------------------------------


def _get(client: httpx.Client, path: str) -> httpx.Response:
    return client.get(path)


def test_health_answers_while_slow_readers_saturate_the_api(
    gate: GatedProxy, gated_store: Store
) -> None:
    caps = {"max_concurrent": 100, "max_concurrent_per_user": 100}
    with running_api(gated_store, **caps) as server, client_for(server, "reader") as reader:
        assert reader.get("/api/collections/small").status_code == 200
        limits = limits_of(server)
        gate.close()  # from now on every database answer is held back
        with ThreadPoolExecutor(READERS) as pool:
            readers = [
                pool.submit(_get, reader, "/api/collections/big?city=nowhere")
                for _ in range(READERS)
            ]
            wait_for(lambda: limits.in_flight == READERS, what=f"{READERS} readers in progress")
            health = httpx.get(f"{server.url}/api/health", timeout=20)
            in_progress = limits.in_flight
            gate.open()
            results = [future.result(timeout=60) for future in readers]
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert in_progress == READERS  # health answered while every reader was still waiting
    assert [r.status_code for r in results] == [200] * READERS


def test_health_is_503_when_the_database_is_unreachable() -> None:
    nowhere = connect(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", "x")
    try:
        with running_api(nowhere) as server:
            answer = httpx.get(f"{server.url}/api/health", timeout=30)
    finally:
        nowhere.close()
    assert answer.status_code == 503
    assert answer.json() == {"detail": "The database is unavailable; try again later."}


def test_per_user_and_total_concurrency_caps(gate: GatedProxy, gated_store: Store) -> None:
    caps = {"max_concurrent": 3, "max_concurrent_per_user": 2}
    with (
        running_api(gated_store, **caps) as server,
        client_for(server, "reader") as reader,
        client_for(server, "admin") as admin,
        ThreadPoolExecutor(4) as pool,
    ):
        assert reader.get("/api/collections/small").status_code == 200
        limits = limits_of(server)
        gate.close()
        held: list[Future[httpx.Response]] = [
            pool.submit(_get, reader, "/api/collections/small") for _ in range(2)
        ]
        wait_for(lambda: limits.by_user["reader"] == 2, what="two reader requests in progress")
        third = reader.get("/api/collections/small")
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert "at most 2" in third.json()["detail"]
        assert "SLURP_API_MAX_CONCURRENT_PER_USER" in third.json()["detail"]
        held.append(pool.submit(_get, admin, "/api/collections/small"))  # another user: in
        wait_for(lambda: limits.in_flight == 3, what="three requests in progress")
        busy = admin.get("/api/collections/small")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "at most 3" in busy.json()["detail"]
        assert admin.get("/api/health").status_code == 200  # exempt, and no database wait
        gate.open()
        assert [f.result(timeout=30).status_code for f in held] == [200, 200, 200]
        wait_for(lambda: limits.in_flight == 0, what="every request finished")
        assert reader.get("/api/collections/small").status_code == 200  # slots are freed
        metrics = admin.get("/metrics").text
    assert 'status="429"' in metrics and 'status="503"' in metrics  # refusals are counted


# -- request bodies -------------------------------------------------------------------


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover - Linux only


def _send_body(
    port: int, head: bytes, total: int, chunked: bool
) -> tuple[int, dict[str, Any], int]:
    """Send ``head``, then up to ``total`` body bytes, until the server answers.
    Returns (status, JSON answer, body bytes the server took)."""
    block = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    sock.setblocking(False)
    sent = 0
    pending = memoryview(frame)
    deadline = time.monotonic() + 60
    while sent < total and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock], [], 1.0)
        if readable:
            break  # the server answered
        if writable:
            try:
                count = sock.send(pending)
            except (BlockingIOError, ConnectionError):
                break
            sent += count
            pending = pending[count:] or memoryview(frame)
    sock.setblocking(True)
    answer = b""
    with sock:
        while chunk := sock.recv(65536):
            answer += chunk
            head_part, _, body = answer.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head_part.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    head_part, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ")[1])
    return status, json.loads(body), sent


def _login_head(port: int, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /api/token/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def test_request_bodies_are_refused_before_they_are_read(store: Store) -> None:
    huge = 200 * MiB
    with running_api(store) as server:
        rss_before = _rss_mib()
        # A declared Content-Length over the limit: answered before any body byte.
        status, answer, _ = _send_body(server.port, _login_head(server.port, huge), 0, False)
        assert status == 413
        assert "the limit is 1048576 bytes" in answer["detail"]
        # A chunked body: counted as it streams in, refused once past the limit.
        status, answer, sent = _send_body(server.port, _login_head(server.port, None), huge, True)
        assert status == 413 and "1048576 bytes" in answer["detail"]
        assert sent < 64 * MiB  # the server stopped reading long before 200 MB
        assert _rss_mib() - rss_before < 100  # the API never held the body
        with client_for(server) as client:
            assert login(client, "admin")  # ordinary bodies are fine
            too_big = client.put("/api/jobs/x", content=b"{" + b" " * (2 * MiB) + b"}")
            assert too_big.status_code == 413


def _job(name: str, blob_bytes: int) -> dict[str, Any]:
    return {
        "name": name,
        "datasources": [{"name": "rows", "type": "inline", "records": [{"i": 1}]}],
        "params": {"blob": "x" * blob_bytes},
        "collection": {"type": "normal", "name": name},
    }


def test_a_document_too_large_for_mongodb_is_413_not_500(store: Store) -> None:
    with (
        running_api(store, max_body_bytes=32 * MiB) as server,
        client_for(server, "admin") as admin,
    ):
        response = admin.put("/api/jobs/huge", json=_job("huge", 17 * MiB))
        assert response.status_code == 413, response.text
        assert "too large to store" in response.json()["detail"]
        assert admin.get("/api/jobs/huge").status_code == 404
        assert admin.put("/api/jobs/fine", json=_job("fine", 10)).status_code == 201


# -- login limits ---------------------------------------------------------------------


def _attempt(client: httpx.Client, username: str, right: bool = False) -> int:
    password = PASSWORDS.get(username, "x") if right else "wrong"
    response = client.post("/api/token/", json={"username": username, "password": password})
    return response.status_code


def _client_from(server: ApiServer, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=30)


def test_failed_logins_are_limited_per_ip_whatever_the_usernames(store: Store) -> None:
    with running_api(store, login_max_failures_per_ip=8) as server:
        with client_for(server) as client:
            statuses = [_attempt(client, name) for name in ("admin", "reader") for _ in range(4)]
            assert statuses == [401] * 8
            for name in ("narrow", "nobody", "admin"):
                response = client.post("/api/token/", json={"username": name, "password": "x"})
                assert response.status_code == 429 and "retry-after" in response.headers
        with _client_from(server, "127.0.0.2") as elsewhere:
            assert _attempt(elsewhere, "narrow", right=True) == 200  # another address


def test_failed_logins_are_limited_per_username_from_any_address(store: Store) -> None:
    with running_api(store, login_max_failures_per_user=6) as server:
        for address in ("127.0.0.2", "127.0.0.3"):
            with _client_from(server, address) as client:
                assert [_attempt(client, "admin") for _ in range(3)] == [401] * 3
        with _client_from(server, "127.0.0.4") as client:
            assert _attempt(client, "admin", right=True) == 429  # even the right password
            assert _attempt(client, "reader", right=True) == 200  # other users are fine


def test_failed_logins_have_a_global_ceiling_and_successes_do_not_count(store: Store) -> None:
    with running_api(store, login_max_failures_total=3) as server:
        with client_for(server) as client:
            assert _attempt(client, "admin") == 401
            for _ in range(5):  # successful logins take their attempt back
                assert _attempt(client, "reader", right=True) == 200
        with _client_from(server, "127.0.0.2") as client:
            assert [_attempt(client, "narrow"), _attempt(client, "nobody")] == [401, 401]
        with _client_from(server, "127.0.0.3") as client:
            assert _attempt(client, "reader", right=True) == 429  # anyone, anywhere


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"login_max_failures": 2, "login_max_failures_per_ip": 2}

    def attempt(client: httpx.Client, forwarded_for: str) -> int:
        body = {"username": "admin", "password": "wrong"}
        headers = {"X-Forwarded-For": forwarded_for}
        return client.post("/api/token/", json=body, headers=headers).status_code

    # the proxy at 127.0.0.1 forwards two clients
    with (
        running_api(store, trusted_proxies=["127.0.0.1"], **limits) as server,
        client_for(server) as client,
    ):
        assert [attempt(client, "203.0.113.7") for _ in range(3)] == [401, 401, 429]
        assert attempt(client, "203.0.113.8") == 401  # another client: its own limit
        # a client cannot escape by sending its own header: the proxy appends
        assert attempt(client, "198.51.100.1, 203.0.113.7") == 429
    with (
        caplog.at_level(logging.WARNING, logger="api.auth"),
        running_api(store, **limits) as server,
        client_for(server) as client,
    ):
        # no trusted proxy: the header is ignored, the TCP peer is the client
        statuses = [attempt(client, f"203.0.113.{n}") for n in range(3)]
        assert statuses == [401, 401, 429]
    assert "X-Forwarded-For from 127.0.0.1 ignored" in caplog.text


def test_limit_settings_from_the_environment() -> None:
    env = {"SLURP_API_JWT_SECRET": "k" * 32}
    config = load_api_config(env)
    assert (config.query_timeout_ms, config.max_concurrent_per_user, config.max_concurrent) == (
        10_000, 8, 32,
    )  # fmt: skip
    assert config.max_body_bytes == MiB
    assert (
        config.login_max_failures_per_ip,
        config.login_max_failures_per_user,
        config.login_max_failures_total,
    ) == (20, 50, 500)
    custom = load_api_config(
        {**env, "SLURP_API_QUERY_TIMEOUT_MS": "250", "SLURP_API_TRUSTED_PROXIES": '["10.0.0.0/8"]'}
    )
    assert custom.query_timeout_ms == 250 and custom.trusted_proxies == ("10.0.0.0/8",)
    for variable, value in [
        ("SLURP_API_QUERY_TIMEOUT_MS", "0"),
        ("SLURP_API_MAX_CONCURRENT", "-1"),
        ("SLURP_API_MAX_BODY_BYTES", "10"),
        ("SLURP_API_TRUSTED_PROXIES", '["*"]'),
        ("SLURP_API_TRUSTED_PROXIES", '["10.0.0.1/8"]'),
    ]:
        with pytest.raises(ApiConfigError, match=variable):
            load_api_config({**env, variable: value})
