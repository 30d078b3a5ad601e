"""``slurp dev``: ticker, worker and event consumer in one process, on the embedded
default (dramatiq's in-memory broker, SecantusDB on the data folder) or on the
configured Redis/MongoDB."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slurp.commands.common import err, fail, out, settings_or_exit, store_or_exit

__all__ = ["register"]

DEFAULT_JOBS = Path("examples/jobs.yaml")


def register(app: typer.Typer) -> None:
    app.command("dev")(dev)


def dev(
    jobs_file: Annotated[Path, typer.Argument(help="Job file to apply first.")] = DEFAULT_JOBS,
    once: Annotated[
        bool, typer.Option("--once", help="Run every job once, print a summary, exit.")
    ] = False,
) -> None:
    """Run slurp in one process: apply JOBS_FILE, then tick, run and record until
    Ctrl-C (or, with --once, run each job once and exit non-zero if any failed)."""
    from contracts.errors import JobFileError
    from storage.jobs import JobRegistry

    settings = settings_or_exit()
    if jobs_file == DEFAULT_JOBS and settings.jobs_file is not None:
        jobs_file = settings.jobs_file
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    with store_or_exit(settings) as store:
        registry = JobRegistry(store)
        try:
            records = registry.load_file(jobs_file)
        except (JobFileError, OSError) as exc:
            fail(f"{jobs_file}: {exc}")
        out.print(f"applied {len(records)} job(s) from {jobs_file}; data in "
                  f"{settings.mongo_url or settings.data_dir}")  # fmt: skip
        if once:
            _once(settings, store, [r.definition for r in records])
        else:
            _serve(settings, store)


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
                      f"{event.message[:120]}{retry}")  # fmt: skip


class _LocalClaimer:
    """Single process: every slot is ours; send the RunJob through the broker."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def claim_and_publish(self, run: Any) -> str | None:
        message = self.actor.send(run.model_dump(mode="json"))
        return str(message.message_id)


def _serve(settings: Any, store: Any) -> None:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from prometheus_client import CollectorRegistry, start_http_server

    from storage.jobs import JobRegistry
    from ticker.service import Ticker
    from workers.app import RunnerMiddleware, declare
    from workers.coordination import LocalCoordination
    from workers.local import local_runner
    from workers.metrics import RunMetrics
    from workers.recorder import EventRecorder

    registry_ = CollectorRegistry()
    metrics = RunMetrics(registry_)
    coordination = LocalCoordination()
    recorder = EventRecorder(store, metrics)
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
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads)
    ticker = Ticker(
        JobRegistry(store),
        None,
        settings.queue_name,
        settings.ticker_poll_s,
        claimer=_LocalClaimer(broker.get_actor("run_job")),
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.metrics_host, registry_)
        out.print(f"metrics on http://127.0.0.1:{settings.metrics_port}/metrics")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _s, _f: stop.set())
    worker.start()
    out.print("slurp dev is running: Ctrl-C stops it", style="bold")
    try:
        ticker.run_forever(stop)
    finally:
        err.print("stopping ...")
        worker.stop()
        broker.close()
    out.print("stopped")
