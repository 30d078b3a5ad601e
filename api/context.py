"""Everything one app instance works with, kept on ``app.state`` (never in globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import redis
from fastapi import Request

from api.config import ApiConfig
from api.metrics import HttpMetrics
from api.runqueue import RedisRunQueue, RunQueue
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store

if TYPE_CHECKING:
    from api.auth import Authenticator

__all__ = ["ApiContext", "get_context"]


@dataclass(frozen=True)
class ApiContext:
    """The app's configuration, storage handles, queue and helpers."""

    config: ApiConfig
    store: Store
    redis: redis.Redis | None
    queue_name: str
    reader: CollectionReader
    jobs: JobRegistry
    history: History
    auth: Authenticator
    metrics: HttpMetrics
    #: Where runs go; None: ``redis`` (if set) through ``api.runqueue.RedisRunQueue``.
    queue: RunQueue | None = None

    def run_queue(self) -> RunQueue | None:
        """The queue runs are sent to (None: this app cannot queue runs)."""
        if self.queue is not None:
            return self.queue
        if self.redis is not None:
            return RedisRunQueue(self.redis, self.queue_name)
        return None


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the context of the app serving ``request``."""
    return cast(ApiContext, request.app.state.slurp)
