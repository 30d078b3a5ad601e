"""Datasources and slurpers: fetch the items of a job's datasources, transform them
with the job's slurper, and hand the records to storage.

The worker's calls::

    runtime = Runtime.from_settings(settings, collections=CollectionReader(store))
    ctx = RunContext.for_run(job, message, attempt=attempt)
    progress = Progress(on_update=publish)           # optional
    records = run_slurper(job, ctx, runtime, progress)
    store_run(strategy, ctx.run_id, records)

One module per datasource type (``datasources.registry`` maps ``type`` to it); user
documentation: docs/datasources.md.
"""

from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import (
    ConfigError,
    DatasourceError,
    FetchError,
    ResponseFormatError,
    SecretMissingError,
    SlurperError,
    SlurperFailedError,
    SlurperImportError,
    SlurperNotAllowedError,
    SlurperResultError,
)
from datasources.progress import Progress, SourceCounts, SourceProgress
from datasources.registry import build, fetch, register, types
from datasources.runtime import Runtime
from datasources.slurper import is_allowed, resolve_slurper, run_slurper

__all__ = [
    "ConfigError",
    "DatasourceError",
    "FetchError",
    "Item",
    "Progress",
    "ResponseFormatError",
    "RunContext",
    "Runtime",
    "SecretMissingError",
    "SlurperError",
    "SlurperFailedError",
    "SlurperImportError",
    "SlurperNotAllowedError",
    "SlurperResultError",
    "Source",
    "SourceCounts",
    "SourceProgress",
    "build",
    "fetch",
    "is_allowed",
    "register",
    "resolve_slurper",
    "run_slurper",
    "types",
]
