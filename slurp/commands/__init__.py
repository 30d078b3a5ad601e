"""Subcommands of ``slurp``, one module per area; each has ``register(app)``.

Modules import their heavy machinery inside the command functions, so ``slurp
--help`` stays instant.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["register_all"]

MODULES = ("jobs", "runs", "versions", "worker", "ticker", "dev", "api", "users")


def register_all(app: typer.Typer) -> None:
    for name in MODULES:
        try:
            module = importlib.import_module(f"slurp.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"slurp.commands.{name}":
                raise
            continue  # not built yet
        module.register(app)
