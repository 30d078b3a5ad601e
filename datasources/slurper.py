"""Running a job's datasources and slurper: the records a run stores.

``run_slurper(job, ctx, runtime, progress)`` returns the run's records as a lazy
iterator, to be handed to ``storage.runs.store_run``:

- no slurper: the single datasource's items, streamed straight through (nothing is
  materialised; memory holds what the source holds: a page, a batch, a line);
- a slurper ``module:function``: every datasource is fetched in the job's order into
  ``data_map`` (name -> *list* of items: each source is materialised in memory), then
  ``function(ctx, data_map)`` is called; it may return a list or any iterable (a
  generator streams its records to storage as it yields them).

The slurper runs code, so its module must lie under one of
``Runtime.slurper_modules`` (``Settings.slurper_modules``), compared by whole dotted
components: ``examples`` allows ``examples.slurpers`` but not ``examples2``. Anything
else is refused with ``SlurperNotAllowedError`` *before* it is imported.

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
from datasources.progress import Progress
from datasources.registry import build, fetch
from datasources.runtime import Runtime

__all__ = ["DataMap", "SlurperFunction", "is_allowed", "resolve_slurper", "run_slurper"]

DataMap = dict[str, list[Item]]
SlurperFunction = Callable[[RunContext, DataMap], Iterable[object]]


def is_allowed(module: str, prefixes: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or lies below one (whole components)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes if p)


def resolve_slurper(spec: str, allowed: Sequence[str]) -> SlurperFunction:
    """The function named by ``spec`` (``module:function``), checked against the
    allow-list *before* its module is imported."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise SlurperImportError(f"slurper {spec!r} is not 'module:function'")
    if not is_allowed(module_name, allowed):
        shown = ", ".join(repr(p) for p in allowed) or "none"
        raise SlurperNotAllowedError(
            f"slurper {spec!r} refused: module {module_name!r} is not under an allowed "
            f"prefix ({shown}); add its package to SLURP_SLURPER_MODULES to allow it"
        )
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
) -> Generator[object, None, None]:
    """The records of one run of ``job`` (lazy: fetching starts on first ``next``).

    Configuration problems (unknown type, slurper refused or not importable) raise here,
    at once; fetching problems raise ``DatasourceError`` while iterating; the slurper's
    own exceptions raise ``SlurperFailedError`` (the original is ``__cause__``).
    """
    progress = progress if progress is not None else Progress()
    sources = [build(config, runtime) for config in job.datasources]
    if job.slurper is None:
        if len(sources) != 1:
            raise SlurperImportError("a job without a slurper has exactly one datasource")
        return fetch(sources[0], ctx, progress)
    function = resolve_slurper(job.slurper, runtime.slurper_modules)
    return _slurp(job.slurper, function, sources, ctx, progress)


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
