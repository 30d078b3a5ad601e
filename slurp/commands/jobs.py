"""``slurp jobs ...``: apply, list, show, pause, resume, delete job definitions.

``apply`` refuses, before writing anything, jobs the job policy of the settings refuses
(``datasources.policy``); ``show`` prints definitions masked
(``contracts.masking.masked_definition``), never a secret-bearing value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slurp.commands.common import err, fail, out, print_json, settings_or_exit, store_or_exit

__all__ = ["register"]

jobs_app = typer.Typer(help="Manage job definitions in the registry.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("apply")
def apply(file: Annotated[Path, typer.Argument(help="Job file (YAML or JSON).")]) -> None:
    """Create or update every job of FILE (jobs not in FILE are left alone). A job's
    pause state changes only where FILE says `paused:` (pause/resume is operational)."""
    from contracts.errors import JobFileError
    from contracts.jobfile import load_jobs
    from datasources.policy import JobPolicy
    from storage.errors import InvalidJobRecordError
    from storage.jobs import JobRegistry

    try:
        definitions = load_jobs(file)
    except JobFileError as exc:
        for problem in exc.problems:
            err.print(problem, markup=False, highlight=False)
        fail(f"{file}: invalid ({len(exc.problems)} problem(s)); nothing was applied")
    settings = settings_or_exit()
    policy = JobPolicy.from_settings(settings)
    refused = policy.problem_lines(definitions, str(file))
    if refused:
        for problem in refused:
            err.print(problem, markup=False, highlight=False)
        fail(f"{file}: not allowed ({len(refused)} problem(s)); nothing was applied")
    with store_or_exit(settings) as store:
        registry = JobRegistry(store, policy=policy)
        for definition in definitions:
            try:
                before = registry.get(definition.name)
            except InvalidJobRecordError:  # a stored document that no longer validates
                registry.apply(definition)
                state = "replaced (the stored definition was invalid)"
                out.print(f"  {definition.name}: {state}", markup=False, highlight=False)
                continue
            record = registry.apply(definition)  # keeps the pause state unless set
            state = (
                "created"
                if before is None
                else ("unchanged" if before.revision == record.revision else "updated")
            )
            out.print(f"  {definition.name}: {state}", markup=False, highlight=False)
    out.print(f"{file}: {len(definitions)} job(s) applied", style="bold green")


@jobs_app.command("list")
def list_jobs(as_json: JsonOption = False) -> None:
    """Every registered job with its schedule and next fire time. A stored job that
    no longer validates is reported on stderr (and, in the table, as 'invalid')."""
    from storage.errors import InvalidJobRecordError
    from storage.jobs import JobRegistry

    invalid: list[InvalidJobRecordError] = []
    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        rows = [_summary(record) for record in JobRegistry(store).list(on_invalid=invalid.append)]
    for problem in invalid:
        err.print(f"warning: {problem}; replace it (slurp jobs apply FILE) or delete it "
                  f"(slurp jobs delete {problem.name})", markup=False, highlight=False)  # fmt: skip
    if as_json:
        print_json(rows)
        return
    table = Table("job", "collection", "schedule", "next fire (UTC)", "state")
    for row in rows:
        table.add_row(
            row["name"], f"{row['collection']} ({row['type']})", row["schedule"] or "manual",
            row["next_fire"] or "-", "paused" if row["paused"] else "active",
        )  # fmt: skip
    for problem in invalid:
        table.add_row(problem.name, "?", "?", "-", "invalid")
    out.print(table)


@jobs_app.command("show")
def show(name: str, as_json: JsonOption = False) -> None:
    """A job's definition, next fire time and last runs."""
    from storage.history import History
    from storage.jobs import JobRegistry

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        record = _require(JobRegistry(store), name)
        runs = History(store).last_runs(name, limit=10)
    from contracts.masking import masked_definition

    summary = _summary(record)
    if as_json:
        print_json({**summary, "definition": masked_definition(record.definition),
                    "last_runs": runs})  # fmt: skip
        return
    shown = masked_definition(record.definition.model_dump(mode="json", exclude_defaults=True))
    out.print(json.dumps(shown, indent=2), markup=False, highlight=False)
    out.print(f"next fire: {summary['next_fire'] or 'manual only'}"
              f"{' (paused)' if summary['paused'] else ''}")  # fmt: skip
    from slurp.commands.runs import history_table

    out.print(history_table(runs))


@jobs_app.command("pause")
def pause(name: str) -> None:
    """Stop scheduling NAME (manual runs still work)."""
    _set_paused(name, True)


@jobs_app.command("resume")
def resume(name: str) -> None:
    """Schedule NAME again (slots missed while paused are not fired)."""
    _set_paused(name, False)


@jobs_app.command("delete")
def delete(name: str) -> None:
    """Remove NAME from the registry (its collection and history stay)."""
    from storage.jobs import JobRegistry

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        if not JobRegistry(store).delete(name):
            fail(f"no job named {name!r}")
    out.print(f"{name}: deleted")


def _set_paused(name: str, paused: bool) -> None:
    from storage.errors import JobNotFoundError
    from storage.jobs import JobRegistry

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        try:
            JobRegistry(store).set_paused(name, paused)
        except JobNotFoundError as exc:
            fail(str(exc))
    out.print(f"{name}: {'paused' if paused else 'resumed'}")


def _require(registry: Any, name: str) -> Any:
    from storage.errors import JobNotFoundError

    try:
        return registry.require(name)
    except JobNotFoundError as exc:
        fail(str(exc))


def _summary(record: Any) -> dict[str, Any]:
    from contracts.base import utcnow
    from ticker.cron import next_fire
    from ticker.errors import ScheduleError

    definition = record.definition
    schedule = definition.schedule
    next_at = None
    if schedule is not None and not definition.paused:
        try:
            next_at = next_fire(schedule, utcnow()).isoformat().replace("+00:00", "Z")
        except ScheduleError:  # stored before such schedules were refused: never fires
            next_at = None
    return {
        "name": definition.name,
        "collection": definition.collection.name,
        "type": definition.collection.type.value,
        "schedule": f"{schedule.cron} {schedule.timezone}" if schedule else None,
        "paused": definition.paused,
        "next_fire": next_at,
        "revision": record.revision,
    }
