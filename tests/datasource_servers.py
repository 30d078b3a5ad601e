"""Real local servers for the datasource tests: an HTTP server in a thread, and
helpers to build jobs and run them.

``HttpServer`` is a ``ThreadingHTTPServer`` on 127.0.0.1, port 0. Tests register
routes (``server.route("/items", handler)``) whose handlers get a ``Request`` and
return a ``Reply``; every request is recorded with its arrival time
(``time.monotonic()``, the same clock as the test's) so tests can check behaviour such
as "the retry came at least Retry-After seconds later".
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from contracts.jobs import JobDefinition
from datasources import JobPolicy, Progress, RunContext, Runtime, run_slurper
from datasources.policy import LOOPBACK_NETWORKS

__all__ = ["HttpServer", "Reply", "Request", "fast_runtime", "make_job", "records_of"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long before answering (ends early on shutdown)
    file: Path | None = None  # stream this file as the body

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    @classmethod
    def text(cls, text: str, content_type: str, status: int = 200) -> Reply:
        return cls(status, text.encode(), {"Content-Type": content_type})


Handler = Callable[[Request], Reply]


class HttpServer:
    """A threaded HTTP server on 127.0.0.1 with routes and a request log."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, handler: Handler, method: str = "GET") -> None:
        self.routes[(method, path)] = handler

    def seen(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._dispatch()

            def do_POST(self) -> None:
                self._dispatch()

            def _dispatch(self) -> None:
                at = time.monotonic()
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                    at=at,
                )
                with server._lock:
                    server.requests.append(request)
                handler = server.routes.get((self.command, parts.path))
                reply = handler(request) if handler else Reply(404, b"no such route")
                if reply.delay_s and server._closing.wait(reply.delay_s):
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.file is not None:
                    self.send_header("Content-Length", str(reply.file.stat().st_size))
                    self.end_headers()
                    with reply.file.open("rb") as handle:
                        while chunk := handle.read(1 << 16):
                            self.wfile.write(chunk)
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        return _Handler


def make_job(
    datasources: list[dict[str, Any]], slurper: str | None = None, **extra: Any
) -> JobDefinition:
    """A valid job definition around ``datasources``."""
    return JobDefinition.model_validate(
        {
            "name": extra.pop("name", "job"),
            "datasources": datasources,
            "slurper": slurper,
            "collection": {"type": "normal", "name": "out"},
            **extra,
        }
    )


def records_of(
    job: JobDefinition,
    runtime: Runtime | None = None,
    ctx: RunContext | None = None,
    progress: Progress | None = None,
) -> list[Any]:
    """Every record of one run of ``job`` (runtime defaults: fast retries)."""
    runtime = runtime or fast_runtime()
    ctx = ctx or RunContext(job=job.name, run_id="run-1")
    return list(run_slurper(job, ctx, runtime, progress))


#: ``fast_runtime`` keyword arguments that configure its ``JobPolicy``.
POLICY_OPTIONS = ("file_roots", "env_allow", "http_allow_hosts", "http_allow_private",
                  "slurper_modules")  # fmt: skip


def fast_runtime(**overrides: Any) -> Runtime:
    """A runtime whose retries wait milliseconds (tests stay fast).

    Its policy grants, explicitly, what the datasource tests need: HTTP to loopback
    (the servers here), files in the temporary folder (``tmp_path``), and the variables
    of the test's own ``environ``. Pass ``policy=`` or any of ``POLICY_OPTIONS`` to
    change that."""
    options: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "environ": {}}
    policy: dict[str, Any] = {k: overrides.pop(k) for k in POLICY_OPTIONS if k in overrides}
    options.update(overrides)
    if "policy" not in options:
        policy.setdefault("file_roots", (tempfile.gettempdir(),))
        policy.setdefault("env_allow", tuple(options["environ"]))
        policy.setdefault("http_allow_hosts", ("*", *LOOPBACK_NETWORKS))
        options["policy"] = JobPolicy(**policy)
    return Runtime(**options)


# --- slurpers the tests run (allowed with slurper_modules=["tests.datasource_servers"]) --


def context_record(ctx: RunContext, data_map: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One record describing what the slurper was given."""
    scheduled = ctx.scheduled_for.isoformat() if ctx.scheduled_for else None
    return [
        {
            "job": ctx.job,
            "run_id": ctx.run_id,
            "trigger": ctx.trigger,
            "scheduled_for": scheduled,
            "params": dict(ctx.params),
            "timezone": ctx.timezone,
            "sources": {name: type(items).__name__ for name, items in data_map.items()},
            "counts": {name: len(items) for name, items in data_map.items()},
        }
    ]


def returns_a_dict(ctx: RunContext, data_map: dict[str, list[Any]]) -> dict[str, Any]:
    return {"not": "a list"}


def raises_at_once(ctx: RunContext, data_map: dict[str, list[Any]]) -> list[Any]:
    return [data_map["missing"]]


def fails_midway(ctx: RunContext, data_map: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    yield {"n": 1}
    raise ValueError("upstream data is odd")


def third_is_not_a_record(ctx: RunContext, data_map: dict[str, list[Any]]) -> Iterator[object]:
    yield {"n": 0}
    yield {"n": 1}
    yield ["n", 2]


NOT_CALLABLE = 42
