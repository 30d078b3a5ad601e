"""``slurp run``, ``history``, ``data``, ``versions``, ``gc``, ``rebuild-history``."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from slurp.commands.common import fail, out, print_json, settings_or_exit, store_or_exit

__all__ = ["history_table", "register"]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FINAL = ("succeeded", "failed", "rejected")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("history")(history)
    app.command("rebuild-history")(rebuild_history)
    app.command("data")(data)
    app.command("versions")(versions)
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
) -> None:
    """Run job NAME now: a RunJob message to the workers, or, with no broker
    configured (SLURP_REDIS_URL unset), right here in this process."""
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
    )
    with store_or_exit(settings) as store:
        if JobRegistry(store).get(name) is None:
            fail(f"no job named {name!r}; apply a job file first (slurp jobs apply FILE)")
        if settings.redis_url is None:
            _run_here(settings, store, message)
            return
        import redis

        from contracts.publish import publish_run_job

        client = redis.Redis.from_url(settings.redis_url)
        publish_run_job(client, message, queue_name=settings.queue_name)
        out.print(f"queued run {message.run_id} of {name}")
        if wait:
            _follow(store, client, message.run_id, timeout_s)


def _run_here(settings: Any, store: Any, message: Any) -> None:
    from storage.history import History
    from workers.errors import RunFailed
    from workers.local import local_runner

    out.print(
        f"running {message.job} here (no SLURP_REDIS_URL) as run {message.run_id}; "
        "a run in this process is not retried if it fails"
    )
    try:
        local_runner(settings, store, can_retry=False).handle(
            message.model_dump(mode="json"), attempt=1
        )
    except RunFailed as exc:
        fail(str(exc))
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
            counts = client.hgetall(f"slurp:progress:{run_id}")
            fetched = sum(int(v) for k, v in counts.items() if k.endswith(b".items"))
            status.update(f"run {run_id}: {doc.get('status', 'queued')}, {fetched} items fetched")
            time.sleep(0.5)  # polling interval of a user-facing progress display
        else:
            fail(f"run {run_id} did not finish within {timeout_s:g} s")
    _report(doc)


def _report(doc: dict[str, Any]) -> None:
    status = doc.get("status")
    if status == "succeeded":
        out.print(
            f"succeeded: {doc.get('records_written', 0)} records written "
            f"({doc.get('inserted', 0)} inserted, {doc.get('updated', 0)} updated) "
            f"in {doc.get('duration_s') or 0:.2f} s", style="green",
        )  # fmt: skip
        return
    error = doc.get("error") or {}
    fail(f"run {status}: {error.get('type', '?')}: {error.get('message', '')}")


def history_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("run", "job", "trigger", "status", "attempts", "started (UTC)", "s", "written",
                  "error")  # fmt: skip
    for doc in runs:
        started = doc.get("started_at") or doc.get("first_at")
        error = doc.get("error") or {}
        table.add_row(
            str(doc["_id"])[:13], doc.get("job", ""), doc.get("trigger") or "-",
            doc.get("status", "?"), str(doc.get("attempts", "")),
            started.strftime("%Y-%m-%d %H:%M:%S") if started else "-",
            f"{doc['duration_s']:.1f}" if doc.get("duration_s") is not None else "-",
            str(doc.get("records_written", "-")),
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
        print_json([{**doc, "run_id": doc.pop("_id")} for doc in runs])
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
            fail(str(exc))
    if as_json:
        print_json(records)
        return
    columns = list(dict.fromkeys(key for record in records for key in record))
    table = Table(*columns, title=f"{name}: {len(records)} of {total} records")
    for record in records:
        table.add_row(*(_cell(record.get(c)) for c in columns))
    out.print(table)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def versions(name: str, as_json: JsonOption = False) -> None:
    """The kept versions of versioned collection NAME."""
    from storage.errors import StorageError
    from storage.reader import CollectionReader

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        try:
            kept = CollectionReader(store).versions(name)
        except StorageError as exc:
            fail(str(exc))
    rows = [{"version": v.number, "run_id": v.run_id, "created_at": v.created_at,
             "records": v.records} for v in kept]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    table = Table("version", "created (UTC)", "records", "run")
    for row in rows:
        table.add_row(str(row["version"]), f"{row['created_at']:%Y-%m-%d %H:%M:%S}",
                      str(row["records"]), str(row["run_id"]))  # fmt: skip
    out.print(table)


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
