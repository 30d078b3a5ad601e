"""``slurp ticker``: emit one ``RunJob`` per (job, slot) of every scheduled job.

Run one per host or as many replicas as you like: Redis claims make each slot fire
exactly once in total (see docs/scheduling.md). Needs ``SLURP_REDIS_URL``; MongoDB is
the configured one or the embedded default. Stops cleanly (exit 0) on SIGTERM/SIGINT.

Test-only: ``SLURP_TEST_CLOCK_START`` / ``_SPEED`` / ``_ANCHOR`` replace the clock with
a simulated one running fast (``ticker.clock``), so tests can watch hundreds of
every-minute slots go by in seconds. Production never sets them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from slurp.commands.common import err, fail, out, settings_or_exit
from ticker.clock import ScaledClock

if TYPE_CHECKING:
    from slurp.settings import Settings

__all__ = ["DEFAULT_TICKER_PORT", "events_queue_of", "register"]

#: The ticker's /metrics port (the worker's is ``SLURP_METRICS_PORT``, 9191).
DEFAULT_TICKER_PORT = 9192


def register(app: typer.Typer) -> None:
    app.command("ticker")(ticker)


def events_queue_of(queue_name: str) -> str:
    """The events queue of ``queue_name`` (the same rule as ``workers.events``)."""
    return f"{queue_name}-events"


def ticker(
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Serve Prometheus /metrics on this port (on SLURP_METRICS_HOST); "
            "0 = no metrics. Ignored with --once.",
        ),
    ] = DEFAULT_TICKER_PORT,
    once: Annotated[
        bool,
        typer.Option("--once", help="Run one pass, print the runs it emitted, and exit."),
    ] = False,
) -> None:
    """Emit scheduled runs onto the queue, until SIGTERM or Ctrl-C."""
    import logging
    import os

    settings = settings_or_exit()
    if not settings.redis_url:
        fail("SLURP_REDIS_URL is not set: the ticker publishes runs to Redis, set its URL")
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        clock = ScaledClock.from_env(os.environ)
    except ValueError as exc:
        fail(str(exc))
    _run(settings, settings.redis_url, port, once, clock)


def _run(
    settings: Settings, redis_url: str, port: int, once: bool, clock: ScaledClock | None
) -> None:
    import logging
    import signal
    import threading

    import redis
    from pymongo.errors import PyMongoError

    from contracts.base import utcnow
    from contracts.errors import JobFileError
    from slurp.embedded import mongo_url
    from slurp.errors import SlurpError
    from slurp.redisconn import redis_client
    from storage.errors import StorageError
    from storage.jobs import JobRegistry
    from storage.store import connect
    from ticker.metrics import TickerCollector, TickerMetrics, serve_metrics
    from ticker.service import Ticker

    log = logging.getLogger("slurp.ticker")
    now = clock or utcnow
    try:
        client = redis_client(redis_url)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        fail(f"cannot reach Redis at SLURP_REDIS_URL: {exc}")
    try:
        with mongo_url(settings) as url:
            store = connect(url, settings.mongo_db)
            try:
                store.db.command("ping")
                registry = JobRegistry(store, clock=now)
                if settings.jobs_file is not None:
                    try:
                        loaded = registry.load_file(settings.jobs_file)
                    except JobFileError as exc:
                        for problem in exc.problems:
                            err.print(problem, markup=False, highlight=False)
                        fail(f"SLURP_JOBS_FILE {settings.jobs_file}: invalid, nothing loaded")
                    log.info("loaded %d job(s) from %s", len(loaded), settings.jobs_file)
                stats = TickerMetrics()
                service = Ticker(
                    registry,
                    client,
                    settings.queue_name,
                    poll_s=settings.ticker_poll_s,
                    clock=now,
                    clock_rate=clock.speed if clock else 1.0,
                    freeze_gc=True,  # this process is the ticker alone
                    stats=stats,
                )
                if clock is not None:
                    log.warning(
                        "TEST CLOCK: simulated time from %s at %sx speed",
                        clock.start.isoformat(),
                        clock.speed,
                    )
                if once:
                    runs = service.tick()
                    for run in runs:
                        slot = run.scheduled_for.isoformat() if run.scheduled_for else "-"
                        out.print(
                            f"emitted {run.job} slot {slot} run_id {run.run_id}",
                            markup=False,
                            highlight=False,
                        )
                    out.print(f"{len(runs)} run(s) emitted", markup=False, highlight=False)
                    return
                server = None
                if port:
                    queues = (settings.queue_name, events_queue_of(settings.queue_name))
                    collector = TickerCollector(service, client, queues)
                    try:
                        server = serve_metrics(collector, port, settings.metrics_host)
                    except OSError as exc:
                        fail(f"cannot serve metrics on {settings.metrics_host}:{port}: {exc}")
                    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
                stop = threading.Event()

                def on_signal(signum: int, _frame: object) -> None:
                    log.info("%s received: stopping", signal.Signals(signum).name)
                    stop.set()

                signal.signal(signal.SIGTERM, on_signal)
                signal.signal(signal.SIGINT, on_signal)
                # The loop runs in a thread so the handlers (main thread) never run
                # while the main thread holds the stop event's lock.
                loop = threading.Thread(target=service.run_forever, args=(stop,), name="ticker")
                loop.start()
                while loop.is_alive():
                    loop.join(0.5)
                if server is not None:
                    server.shutdown()
                    server.server_close()
                if not stop.is_set():
                    fail("the ticker loop stopped unexpectedly; see the log above")
            finally:
                store.close()
    except (SlurpError, StorageError) as exc:
        fail(str(exc))
    except PyMongoError as exc:
        fail(f"database error: {exc}")
    finally:
        client.close()
