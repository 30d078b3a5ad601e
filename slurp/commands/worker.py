"""``slurp worker`` (dramatiq worker processes) and ``slurp db`` (the embedded database)."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Annotated

import typer

from slurp.commands.common import fail, out, settings_or_exit

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("db")(db)


def worker(
    processes: Annotated[int | None, typer.Option(help="Default: SLURP_WORKER_PROCESSES.")] = None,
    threads: Annotated[int | None, typer.Option(help="Default: SLURP_WORKER_THREADS.")] = None,
) -> None:
    """Run dramatiq worker processes: they execute RunJob messages and record events.

    Needs SLURP_REDIS_URL and a MongoDB: SLURP_MONGO_URL, or a running `slurp db`.
    Metrics of all processes are served together on SLURP_METRICS_PORT.
    """
    from slurp.embedded import EmbeddedDb
    from workers.launch import worker_command, worker_env

    settings = settings_or_exit()
    if settings.redis_url is None:
        fail("slurp worker needs SLURP_REDIS_URL (for a single-process setup use `slurp dev`)")
    mongo = settings.mongo_url or EmbeddedDb(settings.data_dir).running_url()
    if mongo is None:
        fail("set SLURP_MONGO_URL, or start the embedded database with `slurp db` first")
    update: dict[str, object] = {"mongo_url": mongo}
    if threads:
        update["worker_threads"] = threads
    settings = settings.model_copy(update=update)
    command = worker_command(settings, processes)
    env = worker_env(settings)
    out.print(
        f"slurp worker: {processes or settings.worker_processes} process(es) x "
        f"{settings.worker_threads} threads on queue {settings.queue_name!r}"
        + (f", metrics on :{settings.metrics_port}/metrics" if settings.metrics_port else "")
    )
    proc = subprocess.Popen(command, env=env)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, _f: proc.send_signal(s))
    raise typer.Exit(proc.wait())


def db() -> None:
    """Run the embedded MongoDB-wire database (SecantusDB) on SLURP_DATA_DIR until
    Ctrl-C, so separate `slurp worker` / `slurp ticker` processes can share it."""
    from slurp.embedded import EmbeddedDb
    from slurp.errors import SlurpError

    settings = settings_or_exit()
    embedded = EmbeddedDb(settings.data_dir)
    running = embedded.running_url()
    if running:
        fail(f"the embedded database of {settings.data_dir} already runs at {running}")
    try:
        url = embedded.start()
    except SlurpError as exc:
        fail(str(exc))
    out.print(f"embedded database on {settings.data_dir}: {url}")
    out.print(f"  export SLURP_MONGO_URL='{url}'   # for processes on this machine")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _s, _f: stop.set())
    try:
        while not stop.wait(1.0):
            if embedded.server is None or not embedded.server.running:
                fail("the embedded database exited; see " + str(settings.data_dir / "run"))
    finally:
        embedded.stop()
    out.print("embedded database stopped")
