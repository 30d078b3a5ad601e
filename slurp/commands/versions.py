"""``slurp versions NAME`` (list), ``versions restore NAME N``, ``versions pin|unpin NAME N``.

``slurp versions NAME`` lists the kept versions of a versioned collection, or the
restorable previous data (grace copies) of a normal one. ``restore`` makes version N
live again as a new version (for a normal collection N is the grace copy's index, or
``previous`` for the newest); ``pin`` keeps a version whatever ``keep_versions`` says.
See ``storage.versions``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from slurp.commands.common import fail, out, print_json, settings_or_exit, store_or_exit

__all__ = ["register", "versions_app"]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class _ListByDefault(TyperGroup):
    """``slurp versions NAME`` means ``slurp versions list NAME``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        first = next((arg for arg in args if not arg.startswith("-")), None)
        if first is not None and first not in self.commands:
            args = ["list", *args]
        return super().parse_args(ctx, args)


versions_app = typer.Typer(
    cls=_ListByDefault,
    help="Versions of a collection: list (slurp versions NAME), restore, pin, unpin.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(versions_app, name="versions")


@versions_app.command("list")
def list_versions(name: str, as_json: JsonOption = False) -> None:
    """The kept versions of versioned collection NAME (restorable previous data of a
    normal one)."""
    from storage.errors import StorageError
    from storage.reader import CollectionReader
    from storage.versions import Versions

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        reader = CollectionReader(store)
        try:
            kind = reader.entry(name).type
            kept = reader.versions(name)
        except StorageError as exc:
            from slurp.commands.runs import _job_hint

            fail(str(exc) + _job_hint(store, name))
        if kind == "normal":
            _print_previous(name, Versions(store).restorable(name), as_json)
            return
        if not kind.versioned:
            fail(
                f"collection {name!r} is of type '{kind}', which keeps no versions "
                "(only the versioned types do)"
            )
    rows = [{"version": v.number, "run_id": v.run_id, "created_at": v.created_at,
             "records": v.records, "pinned": v.pinned, "restored_from": v.restored_from,
             "restored_by": v.restored_by} for v in kept]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    table = Table("version", "created (UTC)", "records", "run", "note")
    for row in rows:
        note = " ".join(
            (["pinned"] if row["pinned"] else [])
            + ([f"restore of {row['restored_from']}"] if row["restored_from"] else [])
        )
        table.add_row(str(row["version"]), f"{row['created_at']:%Y-%m-%d %H:%M:%S}",
                      str(row["records"]), str(row["run_id"]), note)  # fmt: skip
    out.print(table)


def _print_previous(name: str, copies: list[Any], as_json: bool) -> None:
    rows = [{"previous": c.index, "retired_at": c.retired_at, "expires_at": c.expires_at,
             "records": c.records} for c in copies]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print(f"{name} is a normal collection: no previous data to restore (a commit's "
                  "replaced data is kept a few minutes)")  # fmt: skip
        return
    title = f"{name}: previous data (slurp versions restore {name} previous)"
    table = Table("previous", "replaced (UTC)", "restorable until (UTC)", "records", title=title)
    for row in rows:
        table.add_row(str(row["previous"]), f"{row['retired_at']:%Y-%m-%d %H:%M:%S}",
                      f"{row['expires_at']:%Y-%m-%d %H:%M:%S}", str(row["records"]))  # fmt: skip
    out.print(table)


@versions_app.command("restore")
def restore(
    name: str,
    number: Annotated[
        str, typer.Argument(help="Version number; normal collections: 'previous' or its index.")
    ],
) -> None:
    """Make version N of collection NAME the live data again, as a new version (the
    versions in between stay); atomic for readers. For a normal collection: its
    previous data, within its grace time."""
    from storage.errors import StorageError
    from storage.versions import Versions

    which = 1 if number == "previous" else _number(number)
    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        versions = Versions(store)
        try:
            kind = versions.catalog.require(name).type
            if kind == "normal":
                done = versions.restore_previous(name, by="slurp-cli", which=which)
            elif number == "previous":
                fail(f"{name!r} is versioned: give a version number (slurp versions {name})")
            else:
                done = versions.restore(name, which, by="slurp-cli")
        except StorageError as exc:
            fail(str(exc))
    if done.version is None:
        out.print(f"restored the previous data of {name}: {done.records} records live")
    else:
        out.print(f"restored version {done.restored_from} of {name} as version "
                  f"{done.version}: {done.records} records live")  # fmt: skip


@versions_app.command("pin")
def pin(name: str, number: int) -> None:
    """Pin version N of NAME: pruning (keep_versions) keeps it."""
    _pin(name, number, True)


@versions_app.command("unpin")
def unpin(name: str, number: int) -> None:
    """Unpin version N of NAME: the next commit prunes it if it is too old."""
    _pin(name, number, False)


def _pin(name: str, number: int, pinned: bool) -> None:
    from storage.errors import StorageError
    from storage.versions import Versions

    settings = settings_or_exit()
    with store_or_exit(settings) as store:
        try:
            Versions(store).pin(name, number, pinned)
        except StorageError as exc:
            fail(str(exc))
    out.print(f"version {number} of {name} {'pinned' if pinned else 'unpinned'}")


def _number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        fail(f"{text!r} is not a version number (or 'previous')")
    if value < 1:
        fail("version numbers start at 1")
    return value
