"""``slurp run``, ``cancel``, ``history``, ``data``, ``gc``, ``rebuild-history``
(``versions``: ``slurp.commands.versions``)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from slurp.commands.common import fail, out, print_json, settings_or_exit, store_or_exit

__all__ = ["history_table", "register"]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FINAL = ("succeeded", "failed", "rejected", "cancelled")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("cancel")(cancel)
    app.command("history")(history)
    app.command("rebuild-history")(rebuild_history)
    app.command("data")(data)
    app.command("gc")(gc)


def run(
    name: str,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the run; exit 1 if it fails.")
    ] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for ctx.params.")
    ] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="--wait gives up after.")] = 3600,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Commit even if the job's guards fail (this run only; recorded)."
        ),
    ] = False,
) -> None:
    """Run job NAME now: a RunJob message to the workers, or, with no broker
    configured (SLURP_REDIS_URL unset), to the running `slurp dev` of this data
    folder, or, if none runs, right here in this process. --force overrides the
    job's guards once."""
    from contracts.messages import RunJob
    from storage.jobs import JobRegistry

    params = dict(p.split("=", 1) for p in (param or []) if "=" in p)
    if len(params) != len(param or []):
        fail("--param takes KEY=VALUE")
    settings = settings_or_exit()
    message = RunJob(
        job=name,
        run_id=str(uuid.uuid4()),
        trigger="manual",
        requested_by="slurp-cli",
        params=params,
        force=force,
    )
    with store_or_exit(settings) as store:
        if JobRegistry(store).get(name) is None:
            fail(f"no job named {name!r}; apply a job file first (slurp jobs apply FILE)")
        if settings.redis_url is None:
            if not _hand_to_dev(settings, store, message, wait, timeout_s):
                _run_here(settings, store, message)
            return
        import redis

        from contracts.publish import publish_run_job
        from slurp.redisconn import redis_client

        client = redis_client(settings.redis_url)
        try:
            publish_run_job(client, message, queue_name=settings.queue_name)
        except redis.RedisError as exc:
            fail(f"cannot queue the run: Redis at {_where(settings.redis_url)}: {exc}")
        out.print(f"queued run {message.run_id} of {name}")
        if wait:
            _follow(store, client, message.run_id, timeout_s)


def _where(url: str) -> str:
    """``url`` without credentials, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _hand_to_dev(settings: Any, store: Any, message: Any, wait: bool, timeout_s: float) -> bool:
    """Queue the run on a running ``slurp dev`` of this data folder (its in-process
    broker cannot be reached otherwise); False if none runs."""
    from slurp.devstate import database_id, hand_over_run, read_dev_state
    from slurp.errors import SlurpError

    state = read_dev_state(settings.data_dir, database_id(settings.mongo_url, settings.mongo_db))
    if state is None:
        return False
    try:
        run_id = hand_over_run(state, message)
    except SlurpError as exc:
        fail(str(exc))
    out.print(f"queued run {run_id} of {message.job} on slurp dev (pid {state.pid})")
    if wait:
        _follow(store, None, run_id, timeout_s)
    return True


def _run_here(settings: Any, store: Any, message: Any) -> None:
    import threading

    from storage.history import History
    from workers.coordination import LocalCoordination
    from workers.errors import RunFailed
    from workers.local import local_runner

    out.print(
        f"running {message.job} here (no SLURP_REDIS_URL) as run {message.run_id}; "
        "a run in this process is not retried if it fails"
    )
    coordination = LocalCoordination()
    runner = local_runner(settings, store, coordination=coordination, can_retry=False)
    failure: list[RunFailed] = []

    def execute() -> None:
        try:
            runner.handle(message.model_dump(mode="json"), attempt=1)
        except RunFailed as exc:
            failure.append(exc)

    worker = threading.Thread(target=execute, name="slurp-run")
    worker.start()
    with out.status(f"run {message.run_id}: running") as status:
        while worker.is_alive():
            worker.join(0.2)  # a user-facing progress display's refresh interval
            _, counts = coordination.progress.get(message.run_id, (0.0, {}))
            fetched = sum(v for k, v in counts.items() if k.endswith(".items"))
            status.update(f"run {message.run_id}: running, {fetched} items fetched")
    if failure:
        fail(str(failure[0]))
    doc = History(store).get(message.run_id) or {}
    _report(doc)


def _follow(store: Any, client: Any, run_id: str, timeout_s: float) -> None:
    from storage.history import History

    history = History(store)
    deadline = time.monotonic() + timeout_s
    with out.status(f"run {run_id}: queued") as status:
        while time.monotonic() < deadline:
            doc = history.get(run_id) or {}
            if doc.get("status") in FINAL:
                break
            counts = client.hgetall(f"slurp:progress:{run_id}") if client is not None else {}
            fetched = sum(int(v) for k, v in counts.items() if k.endswith(b".items"))
            status.update(f"run {run_id}: {doc.get('status', 'queued')}, {fetched} items fetched")
            time.sleep(0.5)  # polling interval of a user-facing progress display
        else:
            fail(f"run {run_id} did not finish within {timeout_s:g} s")
    _report(doc)


def changes(doc: dict[str, Any]) -> str:
    """'2 inserted, 1 updated, 7 unchanged, 0 removed' (the statistics a run has)."""
    parts = [
        f"{doc[name]} {name}"
        for name in ("inserted", "updated", "unchanged", "removed")
        if isinstance(doc.get(name), int)
    ]
    return ", ".join(parts)


def _report(doc: dict[str, Any]) -> None:
    status = doc.get("status")
    if status == "succeeded":
        total = f"; {doc['total']} live" if isinstance(doc.get("total"), int) else ""
        out.print(
            f"succeeded: {doc.get('records_written', 0)} records written "
            f"({changes(doc)}{total}) in {doc.get('duration_s') or 0:.2f} s"
            + (" (forced: guards not checked)" if doc.get("force") else ""), style="green",
        )  # fmt: skip
        return
    error = doc.get("error") or {}
    fail(f"run {status}: {error.get('type', '?')}: {error.get('message', '')}")


def cancel(
    run_id: str,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the run is recorded cancelled.")
    ] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="--wait gives up after.")] = 60,
) -> None:
    """Cancel run RUN_ID: a running run stops at its next check (a slow HTTP request or
    SQL query is interrupted) and nothing it wrote stays; a queued one is skipped.
    Never retried. A run whose commit has begun completes (exit 1)."""
    from storage.history import History

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        doc = History(store).get(run_id) or {}
        if doc.get("status") in FINAL:
            fail(f"run {run_id} has ended already ({doc['status']}); nothing to cancel")
        answer = _request_cancel(settings, run_id)
        if answer == "committing":
            fail(f"run {run_id} is committing; a commit is never interrupted, so it completes")
        if answer == "done":
            fail(f"run {run_id} has succeeded already; nothing to cancel")
        running = doc.get("status") in ("running", "abandoned")
        out.print(
            f"cancel requested: run {run_id} "
            + ("stops at its next check" if running else "is skipped when a worker takes it")
        )
        if wait:
            _wait_cancelled(store, run_id, timeout_s)


def _request_cancel(settings: Any, run_id: str) -> str:
    """Mark ``run_id`` cancelled where its workers look: Redis, or the running ``slurp
    dev`` of this data folder."""
    if settings.redis_url is not None:
        import redis

        from slurp.redisconn import redis_client
        from workers.coordination import RedisCoordination

        try:
            coordination = RedisCoordination(redis_client(settings.redis_url))
            return coordination.request_cancel(run_id, "slurp-cli")
        except redis.RedisError as exc:
            fail(f"cannot cancel: Redis at {_where(settings.redis_url)}: {exc}")
    from slurp.devstate import cancel_on_dev, database_id, read_dev_state
    from slurp.errors import SlurpError

    state = read_dev_state(settings.data_dir, database_id(settings.mongo_url, settings.mongo_db))
    if state is None:
        fail("no worker to tell: set SLURP_REDIS_URL, or start `slurp dev` for this data folder")
    try:
        return cancel_on_dev(state, run_id)
    except SlurpError as exc:
        fail(str(exc))


def _wait_cancelled(store: Any, run_id: str, timeout_s: float) -> None:
    from storage.history import History

    history = History(store)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = history.get(run_id) or {}
        if doc.get("status") in FINAL:
            if doc["status"] != "cancelled":
                fail(f"run {run_id} ended {doc['status']} before the cancel took effect")
            out.print(f"run {run_id} cancelled")
            return
        time.sleep(0.2)  # polling interval of a user-facing wait
    fail(f"run {run_id} was not recorded cancelled within {timeout_s:g} s (queued runs are "
         "recorded when a worker takes them)")  # fmt: skip


HISTORY_COLUMNS = ("run", "job", "trigger", "status", "attempts", "started (UTC)", "s",
                   "written", "inserted", "updated", "unchanged", "removed", "total",
                   "error")  # fmt: skip
#: The change statistics columns of the history.
STAT_FIELDS = ("inserted", "updated", "unchanged", "removed", "total")


def _stats(doc: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(doc[f]) if isinstance(doc.get(f), int) else "-" for f in STAT_FIELDS)


def history_rows(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for doc in runs:
        started = doc.get("started_at") or doc.get("first_at")
        error = doc.get("error") or {}
        rows.append((
            str(doc["_id"]), doc.get("job", ""), doc.get("trigger") or "-",
            doc.get("status", "?"), str(doc.get("attempts", "")),
            started.strftime("%Y-%m-%d %H:%M:%S") if started else "-",
            f"{doc['duration_s']:.1f}" if doc.get("duration_s") is not None else "-",
            str(doc.get("records_written", "-")), *_stats(doc),
            (error.get("message") or "").replace("\n", " "),
        ))  # fmt: skip
    return rows


def history_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("run", "job", "trigger", "status", "attempts", "started (UTC)", "s", "written",
                  "ins", "upd", "same", "rem", "total", "error")  # fmt: skip
    for doc in runs:
        started = doc.get("started_at") or doc.get("first_at")
        error = doc.get("error") or {}
        table.add_row(
            str(doc["_id"])[:13], doc.get("job", ""), doc.get("trigger") or "-",
            doc.get("status", "?"), str(doc.get("attempts", "")),
            started.strftime("%Y-%m-%d %H:%M:%S") if started else "-",
            f"{doc['duration_s']:.1f}" if doc.get("duration_s") is not None else "-",
            str(doc.get("records_written", "-")), *_stats(doc),
            (error.get("message") or "")[:60],
        )  # fmt: skip
    return table


def history(
    name: Annotated[str | None, typer.Argument(help="Only this job.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """The last runs (of job NAME), newest first."""
    from storage.history import History

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        runs = History(store).last_runs(name, limit=limit)
    if as_json:
        # run_id instead of the document's _id; no internal bookkeeping (order)
        print_json([
            {"run_id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "order")}}
            for doc in runs
        ])  # fmt: skip
    elif not out.is_terminal:
        # piped or redirected: whole values, one run per tab-separated line
        print("\t".join(HISTORY_COLUMNS))
        for row in history_rows(runs):
            print("\t".join(row))
    else:
        out.print(history_table(runs))


def rebuild_history() -> None:
    """Recompute the execution history from the event log."""
    from storage.events import EventLog
    from storage.history import History

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        count = History(store).rebuild(EventLog(store))
    out.print(f"history rebuilt from {count} events")


def data(
    name: str,
    version: Annotated[int | None, typer.Option("--version", "-v")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="0 = all.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Records of collection NAME (live, or --version N)."""
    from storage.errors import StorageError
    from storage.reader import CollectionReader

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        reader = CollectionReader(store)
        try:
            records = list(reader.find(name, version=version, limit=limit))
            total = reader.count(name, version=version)
        except StorageError as exc:
            fail(str(exc) + _job_hint(store, name))
    if as_json:
        print_json(records)
        return
    columns = list(dict.fromkeys(key for record in records for key in record))
    table = Table(*columns, title=f"{name}: {len(records)} of {total} records")
    for record in records:
        table.add_row(*(_cell(record.get(c)) for c in columns))
    out.print(table)


def _job_hint(store: Any, name: str) -> str:
    """For a collection name that is a job's name: where that job's records go."""
    from storage.jobs import JobRegistry

    try:
        record = JobRegistry(store).get(name)
    except Exception:  # a hint only
        return ""
    if record is None or record.definition.collection.name == name:
        return ""
    collection = record.definition.collection.name
    return (
        f"; {name!r} is a job: its records are in collection {collection!r} "
        f"(slurp data {collection})"
    )


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    grace_s: Annotated[float, typer.Option("--grace", help="Keep retired data this long.")] = 300,
) -> None:
    """Drop retired data past its grace and data collections nothing references; apply
    the history retention (SLURP_HISTORY_MAX_AGE_DAYS, SLURP_HISTORY_MAX_RUNS) to the
    history and the event log. Run it daily (cron, a compose job)."""
    from datetime import timedelta

    from contracts.base import utcnow
    from storage.events import EventLog
    from storage.gc import collect_garbage
    from storage.history import History

    settings = settings_or_exit()
    max_age = timedelta(days=settings.history_max_age_days)
    with store_or_exit(settings) as store:
        report = collect_garbage(store, grace_s, dry_run=dry_run)
        if not dry_run:
            pruned = History(store).prune(max_age, settings.history_max_runs)
            events = EventLog(store).delete_before(utcnow() - max_age)
            out.print(f"history: removed {pruned.by_age} runs by age, {pruned.by_count} by "
                      f"count; event log: removed {events} events")  # fmt: skip
    verb = "would drop" if dry_run else "dropped"
    out.print(
        f"{verb} {len(report.retired)} retired and {len(report.orphans)} orphaned collections"
    )
