"""``slurp api``: the HTTP API (collections, jobs, runs, history) on uvicorn."""

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
    manual runs need SLURP_REDIS_URL."""
    from api.config import ApiConfigError, load_api_config
    from api.server import serve

    settings = settings_or_exit()
    try:
        config = load_api_config()
    except ApiConfigError as exc:
        fail(str(exc))
    update = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    config = config.model_copy(update=update)
    client = None
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url)
    with store_or_exit(settings) as store:
        out.print(f"slurp api on http://{config.host}:{config.port} (OpenAPI at /docs)")
        serve(config, store, client, settings.queue_name, log_level=settings.log_level.lower())
