"""Running a job's datasources and slurper: the records a run stores.

``run_slurper(job, ctx, runtime, progress)`` returns the run's records as a lazy
iterator, to be handed to ``storage.runs.store_run``:

- no slurper: the single datasource's items, streamed straight through (nothing is
  materialised; memory holds what the source holds: a page, a batch, a line);
- a slurper ``module:function``: every datasource is fetched in the job's order into
  ``data_map`` (name -> *list* of items: each source is materialised in memory), then
  ``function(ctx, data_map)`` is called; it may return a list or any iterable (a
  generator streams its records to storage as it yields them).

Sources with a commit (queues) are ended through a ``datasources.session.SourceSession``
passed as ``session``: the caller commits it after storing the records, or aborts it.
Without one, the sources are aborted when the records' iterator ends (a look that
consumes nothing).

Before anything is fetched, the job is checked against ``Runtime.policy``
(``JobPolicy.require``: files, variables, hosts, slurper). The slurper runs code, so
its module must lie under one of the policy's ``slurper_modules``
(``Settings.slurper_modules``), compared by whole dotted components: ``examples``
allows ``examples.slurpers`` but not ``examples2``. Anything else is refused with
``SlurperNotAllowedError`` *before* it is imported.

Records are not checked here: storage checks and converts each one when it is written
(``storage.records.normalise``: a JSON object with storable field names) and fails the
run with ``BadRecordError`` naming the record's 0-based position in this iterator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

from contracts.jobs import JobDefinition
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import (
    DatasourceError,
    SlurperFailedError,
    SlurperImportError,
    SlurperNotAllowedError,
    SlurperResultError,
)
from datasources.policy import is_allowed, slurper_refusal
from datasources.progress import Progress
from datasources.registry import build, fetch
from datasources.runtime import Runtime
from datasources.session import SourceSession

__all__ = ["DataMap", "SlurperFunction", "is_allowed", "resolve_slurper", "run_slurper"]

DataMap = dict[str, list[Item]]
SlurperFunction = Callable[[RunContext, DataMap], Iterable[object]]


def resolve_slurper(spec: str, allowed: Sequence[str]) -> SlurperFunction:
    """The function named by ``spec`` (``module:function``), checked against the
    allow-list *before* its module is imported."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise SlurperImportError(f"slurper {spec!r} is not 'module:function'")
    if refusal := slurper_refusal(spec, allowed):
        raise SlurperNotAllowedError(f"slurper {refusal}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SlurperImportError(f"slurper {spec!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise SlurperImportError(
            f"slurper {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise SlurperImportError(f"slurper {spec!r}: {module_name!r} has no {function_name!r}")
    if not callable(function):
        raise SlurperImportError(f"slurper {spec!r}: {function_name!r} is not callable")
    return function  # type: ignore[no-any-return]


def run_slurper(
    job: JobDefinition,
    ctx: RunContext,
    runtime: Runtime,
    progress: Progress | None = None,
    session: SourceSession | None = None,
) -> Generator[object, None, None]:
    """The records of one run of ``job`` (lazy: fetching starts on first ``next``).

    Configuration problems (the policy refuses the job, unknown type, slurper not
    importable) raise here, at once; fetching problems raise ``DatasourceError`` while
    iterating; the slurper's own exceptions raise ``SlurperFailedError`` (the original
    is ``__cause__``). Every source built joins ``session`` (see the module docstring).
    """
    runtime.policy.require(job)
    progress = progress if progress is not None else Progress()
    sources = [build(config, runtime) for config in job.datasources]
    if job.slurper is None:
        if len(sources) != 1:
            raise SlurperImportError("a job without a slurper has exactly one datasource")
        records = fetch(sources[0], ctx, progress)
    else:
        function = resolve_slurper(job.slurper, runtime.policy.slurper_modules)
        records = _slurp(job.slurper, function, sources, ctx, progress)
    if session is None:
        return _aborted_at_end(records, sources)
    for source in sources:
        session.add(source)
    return records


def _aborted_at_end(
    records: Generator[object, None, None], sources: list[Source[Any]]
) -> Generator[object, None, None]:
    session = SourceSession()
    for source in sources:
        session.add(source)
    try:
        yield from records
    finally:
        records.close()
        session.abort()


def _slurp(
    spec: str,
    function: SlurperFunction,
    sources: list[Source[Any]],
    ctx: RunContext,
    progress: Progress,
) -> Generator[object, None, None]:
    data_map: DataMap = {source.name: list(fetch(source, ctx, progress)) for source in sources}
    try:
        result = function(ctx, data_map)
    except DatasourceError:
        raise
    except Exception as exc:
        raise _failed(spec, exc) from exc
    if isinstance(result, Mapping | str | bytes) or not isinstance(result, Iterable):
        raise SlurperResultError(
            f"slurper {spec!r} returned {type(result).__name__}; it must return a list or "
            "an iterable (e.g. a generator) of records (dicts)"
        )
    iterator = iter(result)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except DatasourceError:
            raise
        except Exception as exc:
            raise _failed(spec, exc) from exc
        yield record


def _failed(spec: str, exc: Exception) -> SlurperFailedError:
    return SlurperFailedError(f"slurper {spec!r} raised {type(exc).__name__}: {exc}")
