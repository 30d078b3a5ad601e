"""``slurp users ...``: the API's users in the database (``api.users``).

``add``, ``remove``, ``set-password``, ``set-role``, ``set-collections`` change the
users in the database of the settings (``SLURP_MONGO_URL``); ``list`` shows them
together with the read-only bootstrap users of ``SLURP_API_USERS``, which these
commands refuse to change. Passwords are read from a hidden prompt (twice) or, with
``--password-stdin``, from standard input: never from an argument, which would end up
in the shell history and the process list. Removing a user or changing their
password or role ends their sign-ins (refresh tokens, console sessions) at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from slurp.commands.common import fail, out, print_json, settings_or_exit, store_or_exit

__all__ = ["register"]

users_app = typer.Typer(help="Manage the API's users (in the database).", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input instead of a prompt."
    ),
]
Collections = Annotated[
    list[str] | None,
    typer.Option(
        "--collection",
        "-c",
        help="A collection the user may read (repeat it); default: every collection ('*').",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.read().removesuffix("\n").removesuffix("\r")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users_app.command("add")
def add(
    username: str,
    role: Annotated[str, typer.Option(help="admin (everything) or reader (GET only).")] = "reader",
    collection: Collections = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create USERNAME with a password (prompted, or --password-stdin)."""
    with _directory() as users:
        if users.get(username) is not None:
            _apply(lambda: users.check_writable(username))
            fail(f"a user named {username!r} exists already")
        password = _password(password_stdin)
        _apply(lambda: users.add(username, password, role, collection or ["*"]))
    out.print(f"{username}: added ({role})", markup=False, highlight=False)


@users_app.command("list")
def list_users(as_json: JsonOption = False) -> None:
    """Every user: the bootstrap users of SLURP_API_USERS and those in the database."""
    with _directory() as users:
        rows = [_row(user) for user in users.all()]
        shadowed = users.shadowed()
    for name in shadowed:
        out.print(
            f"warning: database user {name!r} is hidden by the bootstrap user of the same "
            "name (SLURP_API_USERS wins)",
            markup=False,
            highlight=False,
        )
    if as_json:
        print_json(rows)
        return
    table = Table("user", "role", "collections", "source")
    for row in rows:
        table.add_row(row["username"], row["role"], ", ".join(row["collections"]), row["source"])
    out.print(table)


@users_app.command("remove")
def remove(username: str) -> None:
    """Delete USERNAME; their tokens and console sessions stop working."""
    with _directory() as users:
        _apply(lambda: users.remove(username))
    out.print(f"{username}: removed", markup=False, highlight=False)


@users_app.command("set-password")
def set_password(username: str, password_stdin: PasswordStdin = False) -> None:
    """A new password for USERNAME; their refresh tokens and console sessions end."""
    with _directory() as users:
        _apply(lambda: users.check_writable(username))
        password = _password(password_stdin)
        _apply(lambda: users.set_password(username, password))
    out.print(f"{username}: password changed", markup=False, highlight=False)


@users_app.command("set-role")
def set_role(
    username: str,
    role: Annotated[str, typer.Argument(help="admin (everything) or reader (GET only).")],
) -> None:
    """A new ROLE for USERNAME; their refresh tokens and console sessions end."""
    with _directory() as users:
        _apply(lambda: users.set_role(username, role))
    out.print(f"{username}: role {role}", markup=False, highlight=False)


@users_app.command("set-collections")
def set_collections(
    username: str,
    collections: Annotated[list[str], typer.Argument(help="Collection names, or '*'.")],
) -> None:
    """The collections USERNAME may read (applies to their next request)."""
    with _directory() as users:
        _apply(lambda: users.set_collections(username, collections))
    out.print(f"{username}: collections {', '.join(collections)}", markup=False, highlight=False)


@contextmanager
def _directory() -> Iterator[Any]:
    """The ``api.users.UserDirectory`` of the settings' database and the bootstrap
    users; any problem (settings, database) exits 1 with one line."""
    try:
        from api.config import ApiConfigError, load_bootstrap_users
        from api.users import UserDirectory
    except ImportError as exc:  # argon2-cffi comes with the API extra
        fail(f"slurp users needs the API extra (pip install 'slurp[api]'): {exc}")
    try:
        bootstrap = load_bootstrap_users()
    except ApiConfigError as exc:
        fail(str(exc))
    with store_or_exit(settings_or_exit()) as store:
        yield UserDirectory(bootstrap, store)


def _apply(change: Any) -> None:
    from api.users import UserError

    try:
        change()
    except UserError as exc:
        fail(str(exc))


def _row(user: Any) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.spec.role,
        "collections": list(user.spec.collections),
        "source": user.source,
    }
