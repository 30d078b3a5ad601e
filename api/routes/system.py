"""Unauthenticated endpoints: ``GET /api/health`` and ``GET /metrics``.

Health is answered on the event loop, never behind data requests in the worker
threads: the database counts as reachable while pymongo's server monitor (a thread
of the driver, heartbeat every 10 s, reset on any network error) knows a writable
server. Only when it knows none is the database pinged, in the probe's own thread,
for at most ``PING_TIMEOUT_S``; concurrent health requests share that one ping.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymongo
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from pymongo.errors import PyMongoError

from api.context import ApiContext
from api.errors import ServiceUnavailable, error_responses

__all__ = ["PING_TIMEOUT_S", "HealthProbe", "router"]

#: Longest a health check waits for the database when the monitor knows no server.
PING_TIMEOUT_S = 2.0

router = APIRouter(tags=["system"])


class HealthOut(BaseModel):
    status: str


class HealthProbe:
    """Is the database reachable? Without waiting behind other requests (see above)."""

    def __init__(self, client: pymongo.MongoClient[Any], timeout_s: float = PING_TIMEOUT_S):
        self._client = client
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="slurp-api-health")
        self._ping: asyncio.Future[bool] | None = None

    def known(self) -> bool:
        """Whether the driver's monitor knows a writable server (no I/O)."""
        servers = self._client.topology_description.server_descriptions().values()
        return any(server.is_writable for server in servers)

    async def reachable(self) -> bool:
        if self.known():
            return True
        if self._ping is None or self._ping.done():
            self._ping = asyncio.wrap_future(self._executor.submit(self._ping_once))
        return await asyncio.shield(self._ping)

    def _ping_once(self) -> bool:
        try:
            with pymongo.timeout(self._timeout_s):
                self._client.admin.command("ping")
        except PyMongoError:
            return False
        return True


@router.get("/api/health", responses=error_responses())
async def health(request: Request) -> HealthOut:
    """200 when the API can reach its database; 503 otherwise. No token needed.

    Answered on the event loop: it never waits for a worker thread behind slow reads."""
    probe: HealthProbe = request.app.state.health
    if not await probe.reachable():
        raise ServiceUnavailable("The database is unavailable; try again later.")
    return HealthOut(status="ok")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this API process. No token needed. On the event loop too
    (no sync dependency either: those run in the worker threads)."""
    context: ApiContext = request.app.state.slurp
    return Response(context.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
