"""The datasource types, keyed by config ``type``, and ``fetch`` that streams one.

Implementations are imported on first use (the ``sql`` type imports psycopg only when
a job uses it). ``register`` adds or replaces a type (plugins, tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Generator
from typing import Any

from pydantic import BaseModel

from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ConfigError, DatasourceError
from datasources.progress import Progress
from datasources.runtime import Runtime

__all__ = ["build", "fetch", "register", "types"]

_TYPES: dict[str, str | type[Source[Any]]] = {
    "inline": "datasources.inline:InlineItems",
    "rest": "datasources.rest:RestItems",
    "csv": "datasources.csv_source:CsvItems",
    "json": "datasources.json_source:JsonItems",
    "jsonl": "datasources.json_source:JsonlItems",
    "xml": "datasources.xml_source:XmlItems",
    "sql": "datasources.sql:SqlItems",
    "odbc": "datasources.odbc:OdbcItems",
    "rabbitmq": "datasources.rabbitmq:RabbitMqItems",
    "soap": "datasources.soap:SoapItems",
    "collection": "datasources.collection:CollectionItems",
}


def types() -> list[str]:
    """The registered type names."""
    return sorted(_TYPES)


def register(type_name: str, implementation: str | type[Source[Any]]) -> None:
    """Register ``implementation`` (a class or ``"module:Class"``) for ``type_name``."""
    _TYPES[type_name] = implementation


def _implementation(type_name: str) -> type[Source[Any]]:
    entry = _TYPES.get(type_name)
    if entry is None:
        raise ConfigError(f"unknown datasource type {type_name!r}; known: {', '.join(types())}")
    if isinstance(entry, str):
        module_name, _, class_name = entry.partition(":")
        cls: type[Source[Any]] = getattr(importlib.import_module(module_name), class_name)
        _TYPES[type_name] = entry = cls
    return entry


def build(config: BaseModel, runtime: Runtime) -> Source[Any]:
    """The source for ``config`` (no I/O)."""
    type_name = str(getattr(config, "type", ""))
    try:
        return _implementation(type_name)(config, runtime)
    except DatasourceError as exc:
        exc.with_source(str(getattr(config, "name", "?")))
        raise


def fetch(source: Source[Any], ctx: RunContext, progress: Progress) -> Generator[Item, None, None]:
    """Stream the items of ``source``: counts them in ``progress``, marks the source
    done at the end, and names the source in every ``DatasourceError``. I/O errors an
    implementation let through become a ``DatasourceError`` (retryable)."""
    counter = progress.source(source.name)
    try:
        for item in source.open(ctx, counter):
            counter.item()
            yield item
    except DatasourceError as exc:
        exc.with_source(source.name)
        raise
    except OSError as exc:
        raise DatasourceError(
            f"{source.type} source failed: {type(exc).__name__}: {exc}",
            source=source.name,
            retryable=True,
        ) from exc
    counter.done()
