"""The ``slurp`` command line. Each subcommand lives in a small function here;
heavier ones import their machinery lazily so ``slurp --help`` stays instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from slurp import __version__
from slurp.commands import register_all

__all__ = ["app", "main"]

app = typer.Typer(
    name="slurp",
    help="Scheduled data ingestion: jobs, workers, ticker and collections.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        _out.print(f"slurp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Scheduled data ingestion: jobs, workers, ticker and collections."""


@app.command()
def version() -> None:
    """Print the installed slurp version."""
    _out.print(f"slurp {__version__}")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Job file (YAML or JSON) to check.")],
) -> None:
    """Check a job file; print every problem (file:line, job, field) and exit 1 if any.
    Jobs are also checked against the job policy of the SLURP_* settings (file roots,
    allowed variables, hosts, slurper modules)."""
    from contracts.errors import JobFileError
    from contracts.jobfile import load_jobs
    from datasources.policy import JobPolicy
    from slurp.commands.common import settings_or_exit

    try:
        jobs = load_jobs(file)
        problems = JobPolicy.from_settings(settings_or_exit()).problem_lines(jobs, str(file))
        if problems:
            raise JobFileError(str(file), problems)
    except JobFileError as exc:
        for problem in exc.problems:
            _err.print(problem, markup=False, highlight=False)
        _err.print(f"{file}: invalid ({len(exc.problems)} problem(s))", style="bold red")
        raise typer.Exit(1) from None
    for job in jobs:
        when = f"{job.schedule.cron} ({job.schedule.timezone})" if job.schedule else "manual"
        paused = " [paused]" if job.paused else ""
        _out.print(
            f"  {job.name}: {job.collection.type} -> {job.collection.name}, {when}{paused}",
            markup=False,
            highlight=False,
        )
    _out.print(f"{file}: OK, {len(jobs)} job(s)", style="bold green")


@app.command()
def schema(
    write: Annotated[bool, typer.Option("--write", help="Regenerate the committed files.")] = False,
) -> None:
    """Check (or --write) the committed JSON Schemas of RunJob and JobDefinition."""
    from contracts.schema import SCHEMA_DIR, stale_schemas, write_schemas

    if write:
        for path in write_schemas():
            _out.print(f"wrote {path}")
        return
    stale = stale_schemas()
    if stale:
        _err.print(f"out of date in {SCHEMA_DIR}: {', '.join(stale)}; run 'slurp schema --write'")
        raise typer.Exit(1)
    _out.print("schemas up to date")


register_all(app)


def main() -> None:
    """Console-script entry point."""
    app()
