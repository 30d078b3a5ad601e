"""Executing one ``RunJob`` message: validate, lease, fetch, slurp, store, record.

Independent of dramatiq (the actor in ``workers.app`` is a thin shell), so every
path is testable in-process. The steps, each recorded in the event log:

1. validate the message and look the job up; a malformed message or an unknown job
   is *rejected* (``JobRejected``, logged, never retried);
2. admission, one atomic step (``Coordination.admit``): a run whose ``run_id``
   already succeeded is skipped (duplicate or redelivered messages); else the job
   lease is taken (one run per job at a time) and the start of the attempt counted;
   if another run holds the lease the message is put back with a delay, without
   counting an attempt; an attempt started too often (its worker died each time)
   is failed for good;
   a run an operator cancelled before it started is not run (``JobCancelled``,
   stage ``queued``);
3. ``JobStarted`` (recorded once the attempt has run ``start_report_delay_s``, else
   together with its end: ``AttemptReport``); stream the records into the collection
   strategy, each batch shown to the job's guards (``storage.guards``; none when the
   message says ``force``); after the slurp the guards check the whole output, then
   the commit gate is passed (``Lease.begin_commit``, one step: the lease is still
   the run's and the run not cancelled; from here on a cancel is refused and the
   commit completes); the run is marked done in the step that releases the lease;
4. ``JobSucceeded`` (with the commit's change statistics) or ``JobFailed`` (with
   ``will_retry`` decided by the failure's kind, the job's retry policy, and whether
   this runner can retry at all: runs inside a CLI process cannot, so they end
   ``failed``; a failed guard is not retried unless ``guards.retry``, and its event
   carries the guard's figures), or ``JobCancelled``.

Cancelling (``CancelWatch``): while the run goes on, a timer (``workers.timers``) looks for a
cancel request; once there is one, the run's ``CancelToken`` interrupts blocked
fetches (HTTP, SQL) and the run stops at its next check (every record, every batch,
every page): the strategy aborts (nothing written stays), sources with a commit give
their messages back, the lease is released, and ``JobCancelled`` is recorded. A
cancelled run is never retried.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import ValidationError

from contracts.errors import ContractError
from contracts.events import (
    GuardReport,
    GuardViolation,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)
from contracts.jobs import JobDefinition, RetryPolicy
from contracts.messages import RunJob
from datasources.cancel import CancelToken, RunCancelled
from datasources.context import RunContext
from datasources.errors import DatasourceError, SlurperFailedError
from datasources.progress import Progress
from datasources.runtime import Runtime
from datasources.session import SourceSession
from datasources.slurper import run_slurper
from slurp.settings import Settings
from storage.catalog import CatalogEntry
from storage.errors import CommitConflictError, GuardFailed, RunAlreadyCommitted, StorageError
from storage.guards import RunGuards
from storage.jobs import JobRegistry
from storage.runs import store_run
from storage.store import Store
from storage.strategies import CommitResult, strategy_for
from workers.cancel import CancelWatch
from workers.coordination import Coordination, Lease
from workers.errors import LeaseLost, RejectedMessage, RunFailed, RunTimeout
from workers.events import EventSink
from workers.report import AttemptReport

__all__ = ["Outcome", "Runner", "is_transient"]

logger = logging.getLogger(__name__)

#: How long a message waits before retrying when its job's lease is busy.
LEASE_BUSY_DELAY_MS = 2_000
#: An attempt started this often without finishing (its worker died every time) is
#: a poison message: it is recorded as failed and dead-lettered.
MAX_STARTS_PER_ATTEMPT = 3


@dataclass(frozen=True)
class Outcome:
    """What ``Runner.handle`` did: succeeded, skipped, rejected, cancelled or
    lease_busy."""

    status: str
    detail: str = ""


def is_transient(exc: BaseException) -> bool:
    """May a retry succeed? Bad definitions and bad data are permanent; an exception
    raised by the slurper itself is retried (it may depend on the data fetched), as
    are fetch failures the datasource marks retryable, timeouts and conflicts."""
    if isinstance(exc, SlurperFailedError):
        return True
    if isinstance(exc, DatasourceError):
        return exc.retryable
    if isinstance(exc, CommitConflictError | LeaseLost | RunTimeout):
        return True
    return not isinstance(exc, StorageError | ContractError | ValidationError)


def backoff_ms(policy: RetryPolicy, attempt: int) -> int:
    """Exponential backoff with full jitter for the retry after ``attempt``."""
    ceiling_s = min(policy.max_backoff_s, policy.min_backoff_s * 2 ** (attempt - 1))
    return int(1000 * random.uniform(policy.min_backoff_s, max(ceiling_s, policy.min_backoff_s)))


class Runner:
    """Runs messages in one worker process (thread-safe: no per-run state on self)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        coordination: Coordination,
        events: EventSink,
        runtime: Runtime,
        worker_name: str,
        can_retry: bool = True,
    ) -> None:
        """``can_retry``: a failed attempt may be retried by whoever delivered the
        message (a dramatiq broker); False for one-off runs in a CLI process."""
        self.can_retry = can_retry
        self.settings = settings
        self.store = store
        self.coord = coordination
        self.events = events
        self.runtime = runtime
        self.worker_name = worker_name
        self.jobs = JobRegistry(store)

    def handle(self, payload: object, attempt: int) -> Outcome:
        """Process one message body. Raises ``RunFailed`` after a recorded failure."""
        try:
            run, job, known = self._admit(payload)
        except RejectedMessage as exc:
            return self.reject(payload, str(exc), attempt)
        admission = self.coord.admit(
            job.name, run.run_id, attempt, self.worker_name, self.settings.lease_ttl_s
        )
        if admission.status == "done":
            logger.info(
                "run %s of job %r already succeeded; duplicate skipped", run.run_id, job.name
            )
            return Outcome("skipped", "already succeeded")
        if admission.status == "cancelled":
            return self._cancelled_queued(run, job, attempt)
        if admission.status == "busy" or admission.lease is None:
            return Outcome("lease_busy", f"job {job.name!r} is running elsewhere")
        # starts > 1: the worker running this attempt died and the message came back.
        with admission.lease:
            if admission.starts > MAX_STARTS_PER_ATTEMPT:
                return self._poisoned(run, job, attempt, admission.starts)
            return self._run(run, job, attempt, admission.lease, admission.starts, known)

    def _poisoned(self, run: RunJob, job: JobDefinition, attempt: int, starts: int) -> Outcome:
        message = (
            f"attempt {attempt} was started {starts - 1} time(s) and its worker died each "
            f"time (killed or crashed); giving up after {MAX_STARTS_PER_ATTEMPT} starts"
        )
        self.events.publish(
            JobFailed(
                run_id=run.run_id,
                job=job.name,
                attempt=attempt,
                delivery=starts,
                error_type="PoisonMessage",
                message=message,
                will_retry=False,
            ),
            job.collection.type.value,
        )
        raise RunFailed(f"run {run.run_id} of job {job.name!r}: {message}", will_retry=False)

    def _cancelled_queued(self, run: RunJob, job: JobDefinition, attempt: int) -> Outcome:
        by = self.coord.cancel_requested(run.run_id) or ""
        logger.info("run %s of job %r was cancelled before it started", run.run_id, job.name)
        self.events.publish(
            JobCancelled(
                run_id=run.run_id, job=job.name, attempt=attempt, stage="queued", requested_by=by
            ),
            job.collection.type.value,
        )
        return Outcome("cancelled", "cancelled before it started")

    def _admit(self, payload: object) -> tuple[RunJob, JobDefinition, CatalogEntry | None]:
        try:
            run = RunJob.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}"
                for e in exc.errors()
            )
            raise RejectedMessage(f"malformed RunJob message: {problems}") from None
        # The job and its collection's catalog entry, in one round trip.
        record, catalog = self.jobs.get_with_catalog(run.job)
        if record is None:
            raise RejectedMessage(f"unknown job {run.job!r}; register it first (slurp jobs apply)")
        return run, record.definition, CatalogEntry.from_doc(catalog) if catalog else None

    def reject(self, payload: object, reason: str, attempt: int) -> Outcome:
        """Record ``payload`` as rejected for ``reason``."""
        body: dict[str, Any] = payload if isinstance(payload, dict) else {}
        run_id = body.get("run_id") if isinstance(body.get("run_id"), str) else None
        job = body.get("job") if isinstance(body.get("job"), str) else ""
        event = JobRejected(
            run_id=(run_id or f"rejected-{uuid.uuid4()}")[:128],
            job=str(job)[:100],
            attempt=attempt,
            reason=reason,
        )
        logger.warning("message rejected: %s", reason)
        self.events.publish(event)
        return Outcome("rejected", reason)

    def _run(
        self,
        run: RunJob,
        job: JobDefinition,
        attempt: int,
        lease: Lease,
        delivery: int,
        known: CatalogEntry | None,
    ) -> Outcome:
        kind = job.collection.type.value
        progress_so_far = _LatestProgress(self.coord, run.run_id)
        report = AttemptReport(
            self.events, kind, self.settings.start_report_delay_s, progress_so_far.publish
        )
        report.start(
            JobStarted(
                run_id=run.run_id,
                job=job.name,
                attempt=attempt,
                delivery=delivery,
                trigger=run.trigger,
                scheduled_for=run.scheduled_for,
                worker=self.worker_name,
                requested_at=run.requested_at,
                requested_by=run.requested_by,
                params=run.params,
                force=run.force,
            )
        )
        started = time.monotonic()
        deadline = started + job.timeout_s
        progress = Progress(on_update=progress_so_far.updater(report))
        session = SourceSession()  # sources with a commit: ack after the storage commit
        token = CancelToken()
        guards = RunGuards(job.guards) if job.guards.active and not run.force else None
        committing = False

        def before_commit() -> None:
            nonlocal committing
            token.check()
            gate = lease.begin_commit()
            if gate == "lost":
                raise LeaseLost(f"the lease on job {job.name!r} expired during the run")
            if gate == "cancelled":  # cancelled at the last moment
                raise RunCancelled(f"run {run.run_id} was cancelled")
            committing = True  # from here on a cancel is refused: the commit completes

        watch = CancelWatch(self.coord, run.run_id, token)
        try:
            with watch:
                ctx = RunContext.for_run(job, run, attempt=attempt, cancel=token)
                fetched = run_slurper(job, ctx, self.runtime, progress, session)
                result = store_run(
                    strategy_for(self.store, job.collection),
                    run.run_id,
                    _guarded(fetched, deadline, job, token),
                    on_batch=lambda _written: token.check(),
                    before_commit=before_commit,
                    known=known,
                    guards=guards,
                )
        except RunAlreadyCommitted:
            session.abort()
            # A worker died between committing and recording the success; the data
            # is in. Record the success (its counts were lost with that worker).
            logger.warning("run %s was committed before; recording it as succeeded", run.run_id)
            result = CommitResult(records_written=0, inserted=0, updated=0, records_total=0)
        except Exception as exc:
            session.abort()
            if not committing and (token.cancelled or isinstance(exc, RunCancelled)):
                return self._cancelled_running(run, job, attempt, delivery, report, started, watch)
            self._failed(run, job, attempt, delivery, report, started, exc)
        session.commit()
        lease.mark_done()
        report.end(
            JobSucceeded(
                run_id=run.run_id,
                job=job.name,
                attempt=attempt,
                delivery=delivery,
                records_read=progress.items,
                records_written=result.records_written,
                inserted=result.inserted,
                updated=result.updated,
                unchanged=result.unchanged,
                removed=result.removed,
                total=result.records_total,
                version=result.version,
                duration_s=time.monotonic() - started,
            )
        )
        return Outcome("succeeded")

    def _cancelled_running(
        self,
        run: RunJob,
        job: JobDefinition,
        attempt: int,
        delivery: int,
        report: AttemptReport,
        started: float,
        watch: CancelWatch,
    ) -> Outcome:
        by = watch.requested_by
        if by is None:  # stopped by the commit gate before the watcher saw the mark
            by = self.coord.cancel_requested(run.run_id) or ""
        report.end(
            JobCancelled(
                run_id=run.run_id,
                job=job.name,
                attempt=attempt,
                delivery=delivery,
                stage="running",
                requested_by=by,
                duration_s=time.monotonic() - started,
            )
        )
        logger.warning("run %s of job %r was cancelled%s", run.run_id, job.name,
                       f" by {by}" if by else "")  # fmt: skip
        return Outcome("cancelled", "cancelled while running")

    def _failed(
        self,
        run: RunJob,
        job: JobDefinition,
        attempt: int,
        delivery: int,
        report: AttemptReport,
        started: float,
        exc: Exception,
    ) -> NoReturn:
        """Record the failed attempt and raise ``RunFailed``."""
        transient = job.guards.retry if isinstance(exc, GuardFailed) else is_transient(exc)
        will_retry = self.can_retry and transient and attempt <= job.retry.max_retries
        message = str(exc) or type(exc).__name__
        report.end(
            JobFailed(
                run_id=run.run_id,
                job=job.name,
                attempt=attempt,
                delivery=delivery,
                error_type=type(exc).__name__,
                message=message[:2000],
                will_retry=will_retry,
                duration_s=time.monotonic() - started,
                guard=_guard_report(exc, job) if isinstance(exc, GuardFailed) else None,
            )
        )
        logger.log(
            logging.WARNING if will_retry else logging.ERROR,
            "run %s of job %r failed (attempt %d%s): %s: %s",
            run.run_id, job.name, attempt, ", will retry" if will_retry else "",
            type(exc).__name__, message,
        )  # fmt: skip
        raise RunFailed(
            f"run {run.run_id} of job {job.name!r} failed: {type(exc).__name__}: {message}",
            will_retry=will_retry,
            delay_ms=backoff_ms(job.retry, attempt) if will_retry else 0,
        ) from exc


def _guard_report(exc: GuardFailed, job: JobDefinition) -> GuardReport:
    return GuardReport(
        name=exc.guard,
        figures=exc.figures,
        violations=[
            GuardViolation(position=position, problem=problem[:500])
            for position, problem in exc.violations[: job.guards.max_violations]
        ],
    )


class _LatestProgress:
    """Publishes a run's fetch progress once the run is visible: until then it only
    keeps the latest counts, and publishes them when the run becomes visible."""

    def __init__(self, coord: Coordination, run_id: str) -> None:
        self.coord = coord
        self.run_id = run_id
        self.fields: dict[str, int] = {}

    def updater(self, report: AttemptReport) -> Callable[[Any], None]:
        def update(snapshot: Any) -> None:
            self.fields = {
                f"{name}.{what}": int(getattr(counts, what))
                for name, counts in snapshot.items()
                for what in ("items", "pages")
            }
            if report.visible.is_set():
                self.publish()

        return update

    def publish(self) -> None:
        if not self.fields:
            return
        try:
            self.coord.publish_progress(self.run_id, self.fields)
        except Exception:  # an observer never breaks a run
            logger.exception("publishing the progress of run %s failed", self.run_id)


def _guarded(
    records: Iterator[object], deadline: float, job: JobDefinition, token: CancelToken
) -> Iterator[object]:
    """``records``, failing with ``RunTimeout`` once the job's time limit has passed
    (checked every 256 records, between items: a cooperative limit), and with
    ``RunCancelled`` at the first record after the run was cancelled."""
    for count, record in enumerate(records):
        if count % 256 == 0 and time.monotonic() > deadline:
            raise RunTimeout(f"job {job.name!r} exceeded its timeout_s of {job.timeout_s:g} s")
        if token.cancelled:
            token.check()
        yield record
