"""Datasources and slurpers: fetch the items of a job's datasources, transform them
with the job's slurper, and hand the records to storage.

The worker's calls::

    runtime = Runtime.from_settings(settings, collections=CollectionReader(store))
    ctx = RunContext.for_run(job, message, attempt=attempt)
    progress = Progress(on_update=publish)           # optional
    session = SourceSession()                        # sources with a commit (queues)
    records = run_slurper(job, ctx, runtime, progress, session)
    store_run(strategy, ctx.run_id, records)          # on failure: session.abort()
    session.commit()                                  # acknowledge what was consumed

One module per datasource type (``datasources.registry`` maps ``type`` to it); what a
job may reach on the host is ``datasources.policy.JobPolicy`` (``Runtime.policy``); user
documentation: docs/datasources.md.
"""

from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import (
    ConfigError,
    DatasourceError,
    FetchError,
    NotAllowedError,
    ResponseFormatError,
    SecretMissingError,
    SlurperError,
    SlurperFailedError,
    SlurperImportError,
    SlurperNotAllowedError,
    SlurperResultError,
    SoapFaultError,
)
from datasources.policy import JobPolicy
from datasources.progress import Progress, SourceCounts, SourceProgress
from datasources.registry import build, fetch, register, types
from datasources.runtime import Runtime
from datasources.session import SourceSession
from datasources.slurper import is_allowed, resolve_slurper, run_slurper

__all__ = [
    "ConfigError",
    "DatasourceError",
    "FetchError",
    "Item",
    "JobPolicy",
    "NotAllowedError",
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
    "SoapFaultError",
    "Source",
    "SourceCounts",
    "SourceProgress",
    "SourceSession",
    "build",
    "fetch",
    "is_allowed",
    "register",
    "resolve_slurper",
    "run_slurper",
    "types",
]
