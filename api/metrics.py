"""HTTP metrics per app: request count and latency by route template and status.

- ``slurp_http_requests_total{route,method,status}``: requests answered;
- ``slurp_http_request_duration_seconds{route,method}``: time until the last byte
  of the response was handed to the server (streamed bodies included).

``route`` is the matched route's template (``/api/collections/{name}``), never the
raw path, so label cardinality stays bounded; requests no route matched are
``unmatched``. Each app has its own ``CollectorRegistry`` (several apps in one
process, as in the tests, never share or clash), served at ``GET /metrics``, with
prometheus-client's default collectors beside: ``process_*`` (CPU, memory, open files)
and ``python_*`` (interpreter, garbage collector).
"""

from __future__ import annotations

import contextlib
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UNMATCHED", "HttpMetrics", "MetricsMiddleware"]

#: ``route`` label of requests that matched no route.
UNMATCHED = "unmatched"
#: Methods kept as label values; any other becomes ``OTHER`` (bounded cardinality).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Latency buckets in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    """The metrics of one app, in their own registry, plus the process's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "slurp_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "slurp_http_request_duration_seconds",
            "HTTP request duration until the response was sent, by route template.",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware recording every HTTP request into ``metrics``.

    An observer: a failure while recording is swallowed, never breaking a request.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before answering, the server answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            with contextlib.suppress(Exception):  # an observer never breaks a request
                self.metrics.observe(
                    route if isinstance(route, str) else UNMATCHED,
                    str(scope.get("method", "")),
                    status,
                    time.perf_counter() - start,
                )
