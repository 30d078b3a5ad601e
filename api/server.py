"""Running the API with uvicorn: ``serve`` (blocking, for ``slurp api``) and
``ApiServer`` (a background thread on a free loopback port, for tests and benches).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import redis
import uvicorn

from api.app import create_app
from api.config import ApiConfig
from api.runqueue import RunQueue, attach_queue
from contracts.publish import DEFAULT_QUEUE
from datasources.policy import JobPolicy
from storage.store import Store

__all__ = ["ApiServer", "serve", "uvicorn_config"]

#: How long ``ApiServer.start`` waits for the server to accept connections.
START_TIMEOUT_S = 30.0
#: How long ``ApiServer.stop`` waits for open requests to finish.
STOP_TIMEOUT_S = 10.0


def uvicorn_config(
    config: ApiConfig,
    store: Store,
    redis_client: redis.Redis | None,
    queue_name: str = DEFAULT_QUEUE,
    log_level: str = "info",
    queue: RunQueue | None = None,
    policy: JobPolicy | None = None,
) -> uvicorn.Config:
    """uvicorn's configuration for the app; X-Forwarded-For is only trusted from
    ``config.trusted_proxies`` (default: from nobody). ``queue``: where the app sends
    runs instead of ``redis_client`` (``api.runqueue``)."""
    app = create_app(config, store, redis_client, queue_name, policy)
    if queue is not None:
        attach_queue(app, queue)
    proxies = list(config.trusted_proxies)
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level.lower(),
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        server_header=False,
        lifespan="off",
    )


def serve(
    config: ApiConfig,
    store: Store,
    redis_client: redis.Redis | None,
    queue_name: str = DEFAULT_QUEUE,
    log_level: str = "info",
    policy: JobPolicy | None = None,
) -> None:
    """Serve the API on ``config.host:config.port`` until SIGINT/SIGTERM; ``PUT
    /api/jobs`` refuses what the job ``policy`` refuses."""
    config_ = uvicorn_config(config, store, redis_client, queue_name, log_level, policy=policy)
    uvicorn.Server(config_).run()


class ApiServer:
    """The API served by uvicorn in a background thread, on 127.0.0.1:<free port> by
    default (tests, benches) or on ``host``:``port`` (``slurp dev``; port 0: any free
    one). ``queue``: where runs go instead of ``redis_client`` (``api.runqueue``).
    ``start`` raises ``OSError`` when the address is taken."""

    def __init__(
        self,
        config: ApiConfig,
        store: Store,
        redis_client: redis.Redis | None = None,
        queue_name: str = DEFAULT_QUEUE,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        queue: RunQueue | None = None,
        log_level: str = "warning",
        policy: JobPolicy | None = None,
    ) -> None:
        self._config = uvicorn_config(
            config, store, redis_client, queue_name, log_level, queue, policy
        )
        self.app = self._config.app
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The base URL a client on this host uses."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server thread exited during start-up")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the API server did not start within {START_TIMEOUT_S} s")
            time.sleep(0.01)  # polling interval of a deadline-bounded poll
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
