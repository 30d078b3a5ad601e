"""The app factory: ``create_app(config, store, redis_client, queue_name)``.

Routes (see docs/api.md)::

    POST   /api/token/                     username + password -> access + refresh
    POST   /api/token/refresh/             refresh -> access + a new refresh (rotated)
    POST   /api/token/verify/              token -> {} or 401
    POST   /api/token/blacklist/, logout/  refresh -> {} (its login's tokens revoked)
    GET    /api/collections                collections the user may read
    GET    /api/collections/{name}         live records ($limit, $page, $with_meta, filters)
    GET    /api/collections/{name}/versions[/{number}]
    GET    /api/jobs                       jobs
    GET|PUT|DELETE /api/jobs/{name}
    POST   /api/jobs/{name}/pause|resume
    POST   /api/jobs/{name}/runs           queue a run -> run id
    GET    /api/jobs/{name}/runs           history of a job
    GET    /api/runs/{run_id}              one run
    GET    /api/health, /metrics           no token
    GET    /api/openapi.json, /api/docs    the OpenAPI schema and its UI

Every ``/api/`` path is served with and without a trailing slash, never redirected
(``api.slashes``). Middlewares, outermost first: the slash rule, metrics, the body-size
limit, the concurrency caps (``api.limits``). Queries on records carry ``maxTimeMS``
(``query_timeout_ms``).
"""

from __future__ import annotations

import redis
from fastapi import FastAPI

from api import console
from api.auth import Authenticator
from api.config import ApiConfig
from api.context import ApiContext
from api.errors import install_handlers
from api.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware, ConcurrencyLimits
from api.metrics import HttpMetrics, MetricsMiddleware
from api.routes import collections, jobs, runs, system, tokens
from api.routes.system import HealthProbe
from api.slashes import TrailingSlashMiddleware
from contracts.publish import DEFAULT_QUEUE, queue_keys
from datasources.policy import JobPolicy
from slurp import __version__
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store

__all__ = ["create_app"]

DESCRIPTION = """\
slurp's HTTP API: read collections, manage jobs, queue runs, read their history.

Get a token with `POST /api/token/` and send it as `Authorization: Bearer <access>`.
"""


def create_app(
    config: ApiConfig,
    store: Store,
    redis_client: redis.Redis | None,
    queue_name: str = DEFAULT_QUEUE,
    policy: JobPolicy | None = None,
) -> FastAPI:
    """A new app serving ``store``; runs are published to ``queue_name`` on
    ``redis_client`` (None: ``POST .../runs`` answers 503); ``PUT /api/jobs`` refuses
    what ``policy`` refuses. No I/O happens here."""
    queue_keys(queue_name)  # ValueError now for a name Dramatiq would refuse
    metrics = HttpMetrics()
    auth = Authenticator(config, store)
    limits = ConcurrencyLimits(config.max_concurrent_per_user, config.max_concurrent)
    app = FastAPI(
        title="slurp API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.slurp = ApiContext(
        config=config,
        store=store,
        redis=redis_client,
        queue_name=queue_name,
        reader=CollectionReader(store, max_time_ms=config.query_timeout_ms),
        jobs=JobRegistry(store, policy=policy),
        history=History(store),
        auth=auth,
        metrics=metrics,
    )
    app.state.limits = limits
    app.state.health = HealthProbe(store.client)
    install_handlers(app)
    app.add_middleware(ConcurrencyLimitMiddleware, limits=limits, user_of=auth.token_user)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(TrailingSlashMiddleware)  # added last: outermost
    for module in (tokens, collections, jobs, runs, system):
        app.include_router(module.router)
    app.include_router(console.router)  # the web console under / (api/console)
    return app
