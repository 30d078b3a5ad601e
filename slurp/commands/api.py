"""``slurp api``: the HTTP API (collections, jobs, runs, history) and the web console
(``/``, ``api.console``) on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from slurp.commands.common import fail, out, settings_or_exit, store_or_exit

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("api")(api)


def api(
    host: Annotated[str | None, typer.Option(help="Default: SLURP_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SLURP_API_PORT.")] = None,
) -> None:
    """Serve the HTTP API until Ctrl-C. Configured by SLURP_API_* (see docs/api.md);
    manual runs need SLURP_REDIS_URL. PUT /api/jobs applies the job policy of the
    SLURP_* settings (file roots, allowed variables, hosts, slurper modules)."""
    from api.config import ApiConfigError, load_api_config
    from api.server import serve
    from datasources.policy import JobPolicy

    settings = settings_or_exit()
    try:
        config = load_api_config()
    except ApiConfigError as exc:
        fail(str(exc))
    update = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    config = config.model_copy(update=update)
    client = None
    if settings.redis_url:
        from slurp.redisconn import redis_client

        client = redis_client(settings.redis_url)
    with store_or_exit(settings) as store:
        out.print(
            f"slurp api on http://{config.host}:{config.port}: console at /, OpenAPI at /api/docs"
        )
        serve(
            config, store, client, settings.queue_name, log_level=settings.log_level.lower(),
            policy=JobPolicy.from_settings(settings),
        )  # fmt: skip
