"""Production Redis shapes: ``rediss://`` (TLS) and Redis Sentinel, for every Redis
connection slurp makes (``slurp.redisconn.redis_client``).

Against real servers on loopback (``tests/redis_harness.py``): a TLS-only
``redis-server`` with a certificate from a private CA (``openssl``), and a master, a
replica and a sentinel that fail over, both by a crash (SIGKILL of the master) and
on command (``SENTINEL FAILOVER``). In each shape a real worker group (dramatiq's
broker, the leases and admission scripts) runs runs published by a client and slots
claimed by a real ``slurp ticker --once`` process (its Lua claim script); after a
failover the same worker group, a client made before it and a new ticker keep
working on the promoted master.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from contracts.jobs import JobDefinition
from contracts.messages import RunJob, scheduled_run_id
from contracts.publish import publish_run_job
from slurp.localservers import RedisServer, ServerStartError
from slurp.redisconn import (
    DEFAULT_SENTINEL_PORT,
    RETRIES,
    parse_sentinel_url,
    redacted,
    redis_client,
    sentinel_url,
)
from slurp.settings import Settings
from storage.history import History
from storage.jobs import JobRegistry
from storage.store import Store
from tests.redis_harness import Certificates, SentinelSetup, make_certificates, sentinel_setup
from tests.worker_harness import WorkerGroup, settings_for, wait_for
from ticker.clock import ScaledClock

REPO = Path(__file__).resolve().parents[1]
#: The scheduled job's slots: minutes 0-9 of 10:00 on 5 January 2026 (UTC).
CRON = "0-9 10 5 1 *"
CREATED = datetime(2026, 1, 5, 9, 59, tzinfo=UTC)


def unavailable(what: str, exc: Exception) -> None:
    message = f"cannot start {what}: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    try:
        return make_certificates(tmp_path_factory.mktemp("certs"))
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable("openssl", exc)
        raise


@pytest.fixture(scope="module")
def tls_redis(
    certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    server = RedisServer(
        workdir=tmp_path_factory.mktemp("tls"), password="p@ss w0rd", tls=certs.server
    )
    try:
        server.start()
    except ServerStartError as exc:
        unavailable("redis-server with TLS", exc)
    yield server
    server.close()


# -- URLs -------------------------------------------------------------------------------


def test_sentinel_urls_parse() -> None:
    parsed = parse_sentinel_url(
        "rediss+sentinel://app:p%40ss@h1:26380,h2,[::1]:26381/cache%2Fmain/3"
        "?ssl_ca_certs=/etc/ca.pem&socket_timeout=2.5&sentinel_password=sp"
    )
    assert parsed.sentinels == (("h1", 26380), ("h2", DEFAULT_SENTINEL_PORT), ("::1", 26381))
    assert (parsed.service, parsed.db, parsed.ssl) == ("cache/main", 3, True)
    assert (parsed.username, parsed.password, parsed.sentinel_password) == ("app", "p@ss", "sp")
    assert parsed.options == {"ssl_ca_certs": "/etc/ca.pem", "socket_timeout": 2.5}
    plain = parse_sentinel_url("redis+sentinel://s1:1/mymaster")
    assert (plain.db, plain.ssl, plain.password, plain.sentinels) == (0, False, None, (("s1", 1),))
    built = sentinel_url([("a", 1), ("b", 2)], "svc", 2, password="x/y", tls=True)
    assert built == "rediss+sentinel://:x%2Fy@a:1,b:2/svc/2"
    assert parse_sentinel_url(built).password == "x/y"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://h1:26379", "/<master name>"),
        ("redis+sentinel://:pw@/svc", "no sentinel host"),
        ("redis+sentinel://h1:port/svc", "bad sentinel port"),
        ("redis+sentinel://h1/svc/x", "must be a number"),
        ("memcached://:pw@h1/0", "unsupported Redis URL scheme"),
        ("h1:6379", "no scheme"),
        ("redis://:pw@h1/0?ssl_ca_certs=/ca.pem", "need TLS"),
        ("redis+sentinel://:pw@h1/svc?ssl_cert_reqs=none", "need TLS"),
    ],
)
def test_bad_urls_are_refused_without_echoing_the_password(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        redis_client(url)
    assert "pw" not in str(caught.value).replace("pw@", "")


def test_redacted_hides_passwords() -> None:
    assert redacted("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    assert redacted("rediss+sentinel://:s@a:1,b:2/m?sentinel_password=t&x=1") == (
        "rediss+sentinel://:***@a:1,b:2/m?sentinel_password=***&x=1"
    )
    assert redacted("redis://h:1/0") == "redis://h:1/0"


def test_url_options_win_over_the_defaults_and_commands_are_retried() -> None:
    client = redis_client("redis://127.0.0.1:1/0?socket_connect_timeout=0.5")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == 0.5
    assert kwargs["health_check_interval"] == 30  # a default the URL left alone
    assert kwargs["retry"].get_retries() == RETRIES


# -- TLS --------------------------------------------------------------------------------


def test_rediss_reaches_a_tls_only_server_and_plain_tcp_does_not(
    tls_redis: RedisServer, certs: Certificates
) -> None:
    assert tls_redis.url.startswith("rediss://:p%40ss%20w0rd@127.0.0.1:")
    client = redis_client(tls_redis.url)
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    assert client.config_get("port") == {"port": "0"}  # no plain TCP port at all
    plain = redis_client(
        tls_redis.url.replace("rediss://", "redis://").split("?")[0] + "?socket_timeout=0.2"
    )
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    wrong_ca = tls_redis.url.split("?")[0] + f"?ssl_ca_certs={quote(str(certs.other_ca))}"
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        redis_client(wrong_ca).ping()


def test_client_certificates(certs: Certificates, tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path, tls=certs.server, tls_client_certs=True) as server:
        with pytest.raises(redis.ConnectionError):
            redis_client(server.url).ping()
        mutual = (
            f"{server.url}&ssl_certfile={quote(str(certs.client.cert))}"
            f"&ssl_keyfile={quote(str(certs.client.key))}"
        )
        assert redis_client(mutual).ping()


# -- a whole stack on one URL -----------------------------------------------------------


def scheduled_job(name: str) -> JobDefinition:
    return JobDefinition.model_validate(
        {
            "name": name,
            "datasources": [{"name": "rows", "type": "inline", "records": [{"id": 1}]}],
            "collection": {"type": "normal", "name": f"c_{name}"},
            "schedule": {"cron": CRON, "timezone": "UTC"},
        }
    )


class Stack:
    """A worker group on ``url``, a registry with one scheduled job, and the means to
    publish runs and run ``slurp ticker --once`` on the same URL."""

    def __init__(self, url: str, settings: Settings, store: Store, folder: Path) -> None:
        self.url = url
        self.settings = settings
        self.store = store
        self.folder = folder
        self.job = f"tick-{uuid.uuid4().hex[:6]}"
        JobRegistry(store, clock=lambda: CREATED).put(scheduled_job(self.job))
        JobRegistry(store).put(scheduled_job("manual").model_copy(update={"schedule": None}))
        self.workers = WorkerGroup(settings, folder / "worker.log", processes=1)

    def publish(self, client: redis.Redis) -> str:
        run = RunJob(job="manual", run_id=str(uuid.uuid4()))
        publish_run_job(client, run, queue_name=self.settings.queue_name)
        return run.run_id

    def tick_once(self, at: datetime) -> list[str]:
        """``slurp ticker --once`` on ``url`` with its clock at ``at``; the run ids of
        the slots it emitted."""
        clock = ScaledClock(at, speed=1.0)
        env = {key: value for key, value in os.environ.items() if not key.startswith("SLURP_")}
        env.update(
            SLURP_REDIS_URL=self.url,
            SLURP_MONGO_URL=str(self.settings.mongo_url),
            SLURP_MONGO_DB=self.settings.mongo_db,
            SLURP_QUEUE_NAME=self.settings.queue_name,
            SLURP_TEST_CLOCK_START=clock.start.isoformat(),
            SLURP_TEST_CLOCK_SPEED="1.0",
            SLURP_TEST_CLOCK_ANCHOR=repr(clock.anchor),
        )
        done = subprocess.run(
            [sys.executable, "-m", "slurp", "ticker", "--once"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        emitted = [
            line.split()[-1] for line in done.stdout.splitlines() if line.startswith("emitted")
        ]
        assert emitted, done.stdout + done.stderr
        return emitted

    def succeeded(self, run_ids: list[str], timeout_s: float = 90) -> None:
        history = History(self.store)

        def all_done() -> bool:
            docs = [history.get(run_id) for run_id in run_ids]
            failed = [doc for doc in docs if doc and doc.get("status") in ("failed", "rejected")]
            assert not failed, failed
            return all(doc and doc.get("status") == "succeeded" for doc in docs)

        try:
            wait_for(all_done, timeout_s, f"runs {run_ids} to succeed")
        except AssertionError:
            print(self.workers.log()[-6000:])
            raise


@pytest.fixture
def stack_for(mongo_url: str, mongo_db_name: str, store: Store, tmp_path: Path) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(url: str) -> Stack:
        settings = settings_for(url, mongo_url, mongo_db_name)
        stack = Stack(url, settings, store, tmp_path)
        stacks.append(stack)
        stack.workers.start()
        return stack

    yield make
    for stack in stacks:
        stack.workers.stop()


def slot(minute: int, second: int = 30) -> datetime:
    return datetime(2026, 1, 5, 10, minute, second, tzinfo=UTC)


def test_workers_and_ticker_over_tls(tls_redis: RedisServer, stack_for: Any) -> None:
    stack: Stack = stack_for(tls_redis.url)
    client = redis_client(tls_redis.url)
    runs = [stack.publish(client), *stack.tick_once(slot(1))]
    assert runs[1:] == [scheduled_run_id(stack.job, slot(m, 0)) for m in (0, 1)]
    stack.succeeded(runs)


# -- Sentinel ---------------------------------------------------------------------------


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSetup]:
    try:
        with sentinel_setup(tmp_path / "redis", password="s3cret/pw") as setup:
            yield setup
    except ServerStartError as exc:
        unavailable("redis-server / redis-server --sentinel", exc)


def url_of(setup: SentinelSetup) -> str:
    return sentinel_url([("127.0.0.1", setup.sentinel.port)], setup.service, 0, setup.password)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["crash", "command"])
def test_workers_and_ticker_survive_a_sentinel_failover(
    sentinels: SentinelSetup, stack_for: Any, how: str
) -> None:
    url = url_of(sentinels)
    stack: Stack = stack_for(url)
    before = redis_client(url)  # made before the failover, used after it
    assert before.info("server")["tcp_port"] == sentinels.master.port
    stack.succeeded([stack.publish(before), *stack.tick_once(slot(1))])

    if how == "crash":
        sentinels.master.kill()  # SIGKILL: the sentinel notices after down-after-ms
    else:
        with sentinels.sentinel_client() as sentinel:
            assert sentinel.execute_command("SENTINEL FAILOVER", sentinels.service)
    sentinels.wait_until_master_is(sentinels.replica.port)
    if how == "command":  # the old master is up: the failover ends when it is a replica
        sentinels.wait_until_demoted(sentinels.master)

    # The same worker group, a client made before and a new ticker, on the new master.
    # The client's first write moves it (a demoted master answers READONLY, a dead one
    # not at all: both make it ask the sentinel again).
    after = [stack.publish(before), stack.publish(redis_client(url)), *stack.tick_once(slot(4))]
    assert before.info("server")["tcp_port"] == sentinels.replica.port
    assert after[2:] == [scheduled_run_id(stack.job, slot(m, 0)) for m in (2, 3, 4)]
    stack.succeeded(after)
    promoted = redis.Redis(
        host="127.0.0.1", port=sentinels.replica.port, password=sentinels.password
    )
    assert promoted.info("replication")["role"] == "master"


def test_sentinel_over_tls(certs: Certificates, tmp_path: Path) -> None:
    """``rediss+sentinel://``: the sentinels and the master are reached over TLS."""
    try:
        with sentinel_setup(tmp_path / "redis", tls=certs.server) as setup:
            url = sentinel_url(
                [("127.0.0.1", setup.sentinel.port)], setup.service, 0, setup.password,
                tls=True, ssl_ca_certs=str(certs.server.ca),
            )  # fmt: skip
            client = redis_client(url)
            client.set("k", "v")
            assert client.get("k") == b"v"
            assert client.config_get("tls-port") == {"tls-port": str(setup.master.port)}
            assert client.config_get("port") == {"port": "0"}  # TLS only
            with setup.sentinel_client() as sentinel:  # a TLS client of the sentinel
                assert sentinel.ping()
    except ServerStartError as exc:
        unavailable("redis-server / redis-server --sentinel with TLS", exc)
