"""Shared pieces of the CLI: consoles, settings, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import typer
from rich.console import Console

from slurp.errors import SlurpError
from slurp.settings import Settings, load_settings

__all__ = ["err", "fail", "out", "print_json", "settings_or_exit", "store_or_exit"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line to stderr and exit non-zero."""
    err.print(f"error: {message}", style="bold red", markup=False, highlight=False)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SlurpError as exc:
        fail(str(exc))


@contextmanager
def store_or_exit(settings: Settings) -> Iterator[Any]:
    """``storage.Store`` of the configured (or embedded) database; errors exit 1."""
    from pymongo.errors import PyMongoError

    from slurp.embedded import open_store
    from storage.errors import StorageError

    try:
        with open_store(settings) as store:
            yield store
    except (SlurpError, StorageError) as exc:
        fail(str(exc))
    except PyMongoError as exc:
        fail(f"database error: {exc}")


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, default=_default, indent=2) + "\n")
