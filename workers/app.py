"""The dramatiq application: broker, middleware and the ``run_job`` actor.

Nothing happens at import. ``setup()`` builds everything from settings; the
``dramatiq`` CLI calls it in every worker process::

    dramatiq workers.app:setup --processes 2 --threads 4 --queues slurp

(`slurp worker` runs exactly that, with the settings' metrics port and a fresh
Prometheus multiprocess folder.)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage, Middleware
from pydantic import ValidationError

from contracts.events import EVENT_ADAPTER
from contracts.publish import ACTOR_NAME
from datasources.runtime import Runtime
from slurp.redisconn import redis_client
from slurp.settings import Settings, load_settings
from storage.history import History
from storage.jobs import JobRegistry
from storage.reader import CollectionReader
from storage.store import Store, connect
from workers.consumer import TotalRedisBroker
from workers.coordination import RedisCoordination
from workers.decoding import MALFORMED_KEY, MessageDecoder
from workers.errors import RunFailed
from workers.events import EVENT_ACTOR, EventSink, InlineSink, QueueSink, events_queue
from workers.metrics import KnownJobs, RunMetrics
from workers.reaper import REAP_INTERVAL_S, Reaper
from workers.recorder import EventRecorder
from workers.runner import LEASE_BUSY_DELAY_MS, Runner

__all__ = ["MAINTENANCE_CHANCE", "RunnerMiddleware", "declare", "setup"]

logger = logging.getLogger(__name__)

#: 1 in this many broker commands runs the maintenance that requeues dead workers'
#: messages (dramatiq's default 1/1000 makes a redelivery wait for traffic).
MAINTENANCE_CHANCE = 1_000_000 // 10
#: Hard time limit of one message; a job's own ``timeout_s`` is enforced before this.
TIME_LIMIT_MS = 24 * 3600 * 1000
#: Retries of failures outside a run (e.g. MongoDB unreachable before it started).
INFRA_RETRIES = 10
#: Retries of recording an event (MongoDB down): with backoff up to a minute, an
#: event survives about an hour of database outage.
EVENT_RETRIES = 60


class RunnerMiddleware(Middleware):
    """Builds the process's ``Runner`` and ``EventRecorder`` after boot (connections
    and metrics are per process), lazily on first use; runs the process's ``Reaper``
    (stranded ``running`` runs become ``abandoned``) while the worker is up."""

    def __init__(
        self,
        settings: Settings,
        make_runner: Callable[[EventSink], Runner] | None = None,
        make_recorder: Callable[[], EventRecorder] | None = None,
    ) -> None:
        self.settings = settings
        self.make_runner = make_runner or (lambda sink: build_runner(settings, sink))
        self.make_recorder = make_recorder or (lambda: build_recorder(settings))
        self._runner: Runner | None = None
        self._recorder: EventRecorder | None = None
        self._lock = threading.Lock()
        self._stop_reaper = threading.Event()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop_reaper.clear()
        interval_s = min(REAP_INTERVAL_S, self.settings.lease_ttl_s)
        threading.Thread(
            target=self._reap, args=(interval_s,), name="slurp-reaper", daemon=True
        ).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop_reaper.set()

    def _reap(self, interval_s: float) -> None:
        try:  # built at boot, not at the first event: run counters start at 0 (metrics)
            self.recorder()
        except Exception:
            logger.exception("the event recorder could not be built yet")
        try:
            runner = self.runner()
        except Exception:  # no database yet: the runs will build it and report
            logger.exception("the reaper could not start; stranded runs stay 'running'")
            return
        reaper = Reaper(History(runner.store), runner.coord, runner.events, runner_grace(runner))
        reaper.run_every(interval_s, self._stop_reaper)

    def runner(self) -> Runner:
        if self._runner is not None:
            return self._runner
        # Events are recorded right in this process; through the event queue only
        # when that fails (MongoDB briefly down).
        recorder = self.recorder()
        with self._lock:
            if self._runner is None:
                queue = QueueSink(self.broker_(), self.settings.queue_name)
                self._runner = self.make_runner(InlineSink(recorder, queue))
            return self._runner

    def recorder(self) -> EventRecorder:
        with self._lock:
            if self._recorder is None:
                self._recorder = self.make_recorder()
            return self._recorder

    def broker_(self) -> dramatiq.Broker:
        return getattr(self, "broker", None) or dramatiq.get_broker()


def runner_grace(runner: Runner) -> float:
    """How long a run may show ``running`` without its lease: one lease TTL (a live
    holder renews every ttl/3), plus a second for clocks."""
    return runner.settings.lease_ttl_s + 1.0


def _store(settings: Settings) -> Store:
    if settings.mongo_url is None:
        raise RuntimeError("workers need SLURP_MONGO_URL (or run `slurp dev`)")
    return connect(settings.mongo_url, settings.mongo_db)


def build_recorder(settings: Settings) -> EventRecorder:
    store = _store(settings)
    metrics = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # every known job's counters start at 0
        metrics = RunMetrics(known_jobs=KnownJobs(JobRegistry(store).revisions))
    recorder = EventRecorder(store, metrics)
    recorder.ensure_indexes()
    return recorder


def build_runner(settings: Settings, events: EventSink) -> Runner:
    if settings.redis_url is None:
        raise RuntimeError("workers need SLURP_REDIS_URL")
    store = _store(settings)
    runtime = Runtime.from_settings(settings, collections=CollectionReader(store))
    coordination = RedisCoordination(redis_client(settings.redis_url))
    name = f"{socket.gethostname()}:{os.getpid()}"
    return Runner(settings, store, coordination, events, runtime, name)


def _retry_when(retries: int, exc: BaseException) -> bool:
    if isinstance(exc, RunFailed):
        return exc.will_retry
    return retries < INFRA_RETRIES


def setup(settings: Settings | None = None) -> TotalRedisBroker:
    """Build the Redis broker with our middleware and actors; return it."""
    settings = settings or load_settings()
    if settings.redis_url is None:
        raise RuntimeError("SLURP_REDIS_URL is required to run workers")
    broker = TotalRedisBroker(  # type: ignore[no-untyped-call]
        client=redis_client(settings.redis_url),  # TLS, Sentinel: slurp.redisconn
        # dramatiq's default of 60 s plus rare maintenance took ~475 s to redeliver a
        # killed worker's message here (DESIGN.md §5).
        heartbeat_timeout=int(settings.worker_heartbeat_timeout_s * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    # dramatiq reads this lower-case name; `slurp worker` sets it when metrics are on.
    if os.environ.get("dramatiq_prom_db"):  # noqa: SIM112
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    broker.decoder = MessageDecoder(ACTOR_NAME, (ACTOR_NAME, EVENT_ACTOR))
    dramatiq.set_broker(broker)
    declare(broker, settings, RunnerMiddleware(settings))
    return broker


def declare(
    broker: dramatiq.Broker, settings: Settings, runner_middleware: RunnerMiddleware
) -> None:
    """Add our middleware to ``broker`` and declare ``run_job`` and ``record_event``."""
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(runner_middleware)

    def run_job(*args: Any, **kwargs: Any) -> None:
        # Takes anything: a message's arguments are data, checked here, never a
        # TypeError at call time (which dramatiq would retry as transient).
        message = CurrentMessage.get_current_message()
        attempt = (message.options.get("retries", 0) if message else 0) + 1
        runner = runner_middleware.runner()
        payload = args[0] if args else None
        if isinstance(payload, dict) and MALFORMED_KEY in payload:
            runner.reject(payload, str(payload[MALFORMED_KEY]), attempt)
            return
        if len(args) != 1 or kwargs:
            reason = (
                f"run_job takes exactly one positional argument, the RunJob object, and no "
                f"keyword arguments; got {len(args)} positional and keywords "
                f"{sorted(kwargs) or 'none'} (see docs/wire-format.md)"
            )
            runner.reject(payload, reason, attempt)
            return
        outcome = runner.handle(payload, attempt)
        if outcome.status == "lease_busy" and message is not None:
            logger.info("%s; retrying message in %d ms", outcome.detail, LEASE_BUSY_DELAY_MS)
            broker.enqueue(message.copy(), delay=LEASE_BUSY_DELAY_MS)

    dramatiq.Actor(
        run_job,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=settings.queue_name,
        priority=0,
        options={
            "retry_when": _retry_when,
            "time_limit": TIME_LIMIT_MS,
            "min_backoff": 1000,
            "max_backoff": 300_000,
        },
    )

    def record_event(*args: Any, **kwargs: Any) -> None:
        # Events come from our own runners; anything else on this queue is dropped.
        collection_type = args[1] if len(args) == 2 else ""
        try:
            if not 1 <= len(args) <= 2 or kwargs or not isinstance(collection_type, str):
                raise ValueError(f"expected (event, collection_type), got {len(args)} args")
            event = EVENT_ADAPTER.validate_python(args[0])
        except (ValidationError, ValueError) as exc:  # not ours to retry: log and drop
            logger.error("dropping malformed event %.500r: %s", args, exc)
            return
        runner_middleware.recorder().record(event, collection_type)

    dramatiq.Actor(
        record_event,
        broker=broker,
        actor_name=EVENT_ACTOR,
        queue_name=events_queue(settings.queue_name),
        priority=0,
        options={"max_retries": EVENT_RETRIES, "min_backoff": 500, "max_backoff": 60_000},
    )
