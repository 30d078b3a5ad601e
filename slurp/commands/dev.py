"""``slurp dev``: everything in one process: ticker, worker, event consumer, the HTTP
API and the web console, on the embedded default (dramatiq's in-memory broker,
SecantusDB on the data folder) or on the configured Redis/MongoDB.

- **Broker.** With ``SLURP_REDIS_URL`` set, that Redis, exactly as ``slurp worker``
  uses it: runs published by anyone (``slurp run``, the API, other services) run
  here, and the ticker claims its slots there. Unset: an in-process broker; the API
  and the console hand it their runs, and ``slurp run`` finds this process through
  ``<data_dir>/dev.json`` (``slurp.devstate``) and hands its runs over too.
- **API and console** on ``SLURP_API_HOST`` and ``--port`` (default
  ``SLURP_API_PORT``, 8000; 0 = any free port), printed at start with a login: the
  user ``admin`` (``slurp-dev`` if ``SLURP_API_USERS`` has an ``admin``) with a new
  random password at every start. ``SLURP_API_JWT_SECRET`` defaults to a random one.
- **The job file** is applied with ``JobRegistry.apply``: a job paused from the CLI,
  the API or the console stays paused across restarts unless the file says
  ``paused:`` itself.
- **Slurper modules** next to the job file or in the working directory import
  without ``PYTHONPATH`` (both folders go on ``sys.path``); ``SLURP_SLURPER_MODULES``
  still decides which modules may be imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slurp.commands.common import err, fail, out, settings_or_exit, store_or_exit

__all__ = ["DEV_USER", "register"]

DEFAULT_JOBS = Path("examples/jobs.yaml")
#: The admin ``slurp dev`` creates (or ``FALLBACK_USER`` if the name is taken).
DEV_USER = "admin"
FALLBACK_USER = "slurp-dev"


def register(app: typer.Typer) -> None:
    app.command("dev")(dev)


def dev(
    jobs_file: Annotated[Path, typer.Argument(help="Job file to apply first.")] = DEFAULT_JOBS,
    once: Annotated[
        bool, typer.Option("--once", help="Run every job once, print a summary, exit.")
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(help="Port of the API and console (default SLURP_API_PORT, 8000; 0: any)."),
    ] = None,
) -> None:
    """Run slurp in one process: apply JOBS_FILE, then tick, run, record and serve the
    API and the web console until Ctrl-C (or, with --once, run each job once and exit
    non-zero if any failed)."""
    from contracts.errors import JobFileError
    from datasources.policy import JobPolicy
    from storage.jobs import JobRegistry
    from workers.local import add_import_paths

    settings = settings_or_exit()
    if jobs_file == DEFAULT_JOBS and settings.jobs_file is not None:
        jobs_file = settings.jobs_file
    settings = settings.for_dev(jobs_file)  # + job file's folder, data dir, loopback HTTP
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    add_import_paths([jobs_file.parent, Path.cwd()])
    with store_or_exit(settings) as store:
        registry = JobRegistry(store, policy=JobPolicy.from_settings(settings))
        try:
            records = registry.load_file(jobs_file)
        except (JobFileError, OSError) as exc:
            fail(f"{jobs_file}: {exc}")
        out.print(f"applied {len(records)} job(s) from {jobs_file}; data in "
                  f"{settings.mongo_url or settings.data_dir}")  # fmt: skip
        paused = [r.name for r in records if r.definition.paused]
        if paused and not once:
            out.print(f"paused (kept from before, or set by the file): {', '.join(paused)}",
                      markup=False, highlight=False)  # fmt: skip
        if once:
            _once(settings, store, [r.definition for r in records])
        else:
            _serve(settings, store, port)


def _once(settings: Any, store: Any, definitions: list[Any]) -> None:
    import uuid

    from contracts.messages import RunJob
    from storage.history import History
    from workers.errors import RunFailed
    from workers.local import local_runner

    runner = local_runner(settings, store, can_retry=False)
    history = History(store)
    table = Table("job", "collection", "status", "records", "seconds", "error")
    failed = 0
    for definition in definitions:
        run = RunJob(job=definition.name, run_id=str(uuid.uuid4()), requested_by="slurp-dev")
        with out.status(f"running {definition.name} ..."), contextlib.suppress(RunFailed):
            runner.handle(run.model_dump(mode="json"), attempt=1)
        doc = history.get(run.run_id) or {}
        ok = doc.get("status") == "succeeded"
        failed += not ok
        error = (doc.get("error") or {}).get("message", "")
        table.add_row(
            definition.name, f"{definition.collection.name} ({definition.collection.type})",
            f"[green]{doc.get('status')}[/]" if ok else f"[red]{doc.get('status')}[/]",
            str(doc.get("records_written", 0)), f"{doc.get('duration_s') or 0:.2f}", error[:80],
        )  # fmt: skip
    out.print(table)
    if failed:
        fail(f"{failed} of {len(definitions)} job(s) failed")
    out.print("see the data with: slurp data NAME", style="bold green")


class _PrintingSink:
    """Forwards events and prints one line per event: live progress in the terminal."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def publish(self, event: Any, collection_type: str = "") -> None:
        self.inner.publish(event, collection_type)
        when = time.strftime("%H:%M:%S")
        if event.kind == "started":
            out.print(f"{when} [cyan]start[/] {event.job} ({event.trigger}) run {event.run_id[:8]}")
        elif event.kind == "succeeded":
            rate = event.records_written / event.duration_s if event.duration_s else 0
            out.print(f"{when} [green]ok[/]    {event.job}: {event.records_written} records "
                      f"in {event.duration_s:.2f} s ({rate:,.0f}/s)")  # fmt: skip
        elif event.kind == "failed":
            retry = " (will retry)" if event.will_retry else ""
            out.print(f"{when} [red]fail[/]  {event.job}: {event.error_type}: "
                      f"{event.message[:120]}{retry}", highlight=False)  # fmt: skip


class _LocalClaimer:
    """Single process: every slot is ours; send the RunJob through the broker."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def claim_and_publish(self, run: Any) -> str | None:
        message = self.actor.send(run.model_dump(mode="json"))
        return str(message.message_id)


@dataclass
class _Stack:
    """The broker side of ``slurp dev``: what runs, what ticks, where runs go."""

    broker: Any
    ticker: Any
    queue: Any  # api.runqueue.RunQueue, or None: the API publishes to ``redis``
    redis: Any
    mode: str


def _local_stack(settings: Any, store: Any, recorder: Any) -> _Stack:
    """dramatiq's in-memory broker, in-process coordination."""
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    from contracts.publish import ACTOR_NAME
    from storage.jobs import JobRegistry
    from ticker.service import Ticker
    from workers.app import RunnerMiddleware, declare
    from workers.coordination import LocalCoordination
    from workers.local import LocalRunQueue, local_runner

    coordination = LocalCoordination()
    broker = StubBroker()
    dramatiq.set_broker(broker)
    middleware = RunnerMiddleware(
        settings,
        make_runner=lambda sink: local_runner(
            settings, store, events=_PrintingSink(sink), coordination=coordination
        ),
        make_recorder=lambda: recorder,
    )
    declare(broker, settings, middleware)
    actor = broker.get_actor(ACTOR_NAME)
    ticker = Ticker(
        JobRegistry(store),
        None,
        settings.queue_name,
        settings.ticker_poll_s,
        claimer=_LocalClaimer(actor),
    )
    queue = LocalRunQueue(actor, coordination)
    return _Stack(broker, ticker, queue, None, "in-process broker")


def _redis_stack(settings: Any, store: Any, recorder: Any) -> _Stack:
    """``SLURP_REDIS_URL``: the workers' own broker setup (``workers.app.setup``), with
    this process's database and the terminal's progress lines."""
    import redis

    from datasources.runtime import Runtime
    from slurp.redisconn import redacted, redis_client
    from storage.jobs import JobRegistry
    from storage.reader import CollectionReader
    from ticker.service import Ticker
    from workers.app import RunnerMiddleware, setup
    from workers.coordination import RedisCoordination
    from workers.runner import Runner

    client = redis_client(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(f"SLURP_REDIS_URL: cannot reach Redis: {exc}")
    broker = setup(settings)
    middleware = next(m for m in broker.middleware if isinstance(m, RunnerMiddleware))
    coordination = RedisCoordination(client)
    runtime = Runtime.from_settings(settings, collections=CollectionReader(store))
    name = f"dev:{socket.gethostname()}:{os.getpid()}"
    # The runner and recorder are built lazily from these (on the first message).
    middleware.make_runner = lambda sink: Runner(
        settings, store, coordination, _PrintingSink(sink), runtime, name
    )
    middleware.make_recorder = lambda: recorder
    ticker = Ticker(JobRegistry(store), client, settings.queue_name, settings.ticker_poll_s)
    return _Stack(broker, ticker, None, client, f"Redis {redacted(settings.redis_url)}")


def _api_config(port: int | None) -> tuple[Any, str, str]:
    """The API configuration from ``SLURP_API_*`` plus a dev admin with a random
    password; (config, username, password)."""
    from api.config import ApiConfigError, UserSpec, load_api_config
    from api.passwords import hash_password

    env = dict(os.environ)
    env.setdefault("SLURP_API_JWT_SECRET", secrets.token_urlsafe(48))
    try:
        config = load_api_config(env)
    except ApiConfigError as exc:
        fail(str(exc))
    username = DEV_USER if config.user(DEV_USER) is None else FALLBACK_USER
    if config.user(username) is not None:
        fail(f"SLURP_API_USERS already has users {DEV_USER!r} and {FALLBACK_USER!r}")
    password = secrets.token_urlsafe(12)
    admin = UserSpec.model_validate(
        {"username": username, "password_hash": hash_password(password), "role": "admin"}
    )
    update: dict[str, Any] = {"users": (*config.users, admin)}
    if port is not None:
        update["port"] = port
    return config.model_copy(update=update), username, password


def _serve(settings: Any, store: Any, port: int | None) -> None:
    import dramatiq
    from prometheus_client import CollectorRegistry, start_http_server

    from api.server import ApiServer
    from datasources.policy import JobPolicy
    from slurp.devstate import DevState, database_id, remove_dev_state, write_dev_state
    from workers.metrics import RunMetrics
    from workers.recorder import EventRecorder

    registry_ = CollectorRegistry()
    recorder = EventRecorder(store, RunMetrics(registry_))
    recorder.ensure_indexes()
    stack = _redis_stack(settings, store, recorder) if settings.redis_url else _local_stack(
        settings, store, recorder
    )  # fmt: skip
    config, username, password = _api_config(port)
    api = ApiServer(
        config, store, stack.redis, settings.queue_name,
        host=config.host, port=config.port, queue=stack.queue,
        policy=JobPolicy.from_settings(settings),
    )  # fmt: skip
    try:
        api.start()
    except OSError as exc:
        fail(
            f"cannot serve the console on {config.host}:{config.port}: {exc.strerror or exc}; "
            "choose another port with --port N (0 = any free port)"
        )
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, settings.metrics_host, registry_)
            out.print(f"metrics on http://127.0.0.1:{settings.metrics_port}/metrics")
        except OSError as exc:
            err.print(f"no /metrics: port {settings.metrics_port}: {exc.strerror or exc}")
    state = DevState(
        pid=os.getpid(), api_url=api.url, port=api.port,
        database=database_id(settings.mongo_url, settings.mongo_db),
        username=username, password=password,
    )  # fmt: skip
    write_dev_state(settings.data_dir, state)
    worker = dramatiq.Worker(stack.broker, worker_threads=settings.worker_threads)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _s, _f: stop.set())
    worker.start()
    out.print(f"slurp dev is running ({stack.mode}): Ctrl-C stops it", style="bold")
    out.print(f"console: {api.url}/   API: {api.url}/api/docs", style="bold green")
    out.print(f"log in as {username} / {password}   (a new password at every start)",
              markup=False, highlight=False)  # fmt: skip
    try:
        stack.ticker.run_forever(stop)
    finally:
        err.print("stopping ...")
        remove_dev_state(settings.data_dir, os.getpid())
        api.stop()
        worker.stop()
        stack.broker.close()
    out.print("stopped")
