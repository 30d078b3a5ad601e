"""Reading job files (YAML, or JSON) into ``JobDefinition`` objects.

The file shape is a public interface::

    jobs:
      - name: users
        datasources: [{name: users, type: rest, url: "https://api.example.org/users"}]
        collection: {type: upserted, name: users, upsert_key: id}

Every problem is reported at once, each line naming the file, the line number where
the YAML parser knows it, the job and the field.

A job file is untrusted input, bounded before it is parsed: at most
``MAX_JOB_FILE_BYTES`` (checked before the file is read whole), no YAML anchors or
aliases (``&name``/``*name``: a few hundred bytes of nested aliases expand to
gigabytes, the "billion laughs"), at most ``MAX_DEPTH`` nested collections. Every
reader of job files (``slurp validate``, ``slurp jobs apply``, ``SLURP_JOBS_FILE`` of
``slurp ticker``, ``slurp dev``, ``JobRegistry.load_file``) goes through ``load_jobs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from contracts.errors import JobFileError
from contracts.jobs import JobDefinition

__all__ = [
    "MAX_DEPTH",
    "MAX_JOB_FILE_BYTES",
    "JobFileLoader",
    "format_validation_error",
    "load_jobs",
    "parse_jobs",
]

#: Largest job file, in bytes (1 MiB: thousands of jobs).
MAX_JOB_FILE_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists in a job file.
MAX_DEPTH = 64

_Loc = tuple[str | int, ...]
_JOBS = TypeAdapter(list[JobDefinition])


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that job files do not allow (anchors, aliases, too deep)."""


class JobFileLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases, and with a depth limit."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                problem="YAML anchors and aliases (&name, *name) are not allowed in job "
                "files; write the values out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    problem=f"nested deeper than {MAX_DEPTH} levels",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_jobs(path: str | Path, max_bytes: int = MAX_JOB_FILE_BYTES) -> list[JobDefinition]:
    """Read and validate a job file; raise ``JobFileError`` listing every problem.

    A file over ``max_bytes`` is refused without being read whole."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(max_bytes + 1)  # a pipe or device has no size to stat
    except OSError as exc:
        raise JobFileError(str(path), [f"{path}: cannot read the file: {exc.strerror}"]) from None
    if len(raw) > max_bytes:
        raise JobFileError(str(path), [_too_large(str(path), max_bytes)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobFileError(str(path), [f"{path}: not UTF-8 text ({exc.reason})"]) from None
    return parse_jobs(text, source=str(path), max_bytes=max_bytes)


def parse_jobs(
    text: str, source: str = "<jobs>", max_bytes: int = MAX_JOB_FILE_BYTES
) -> list[JobDefinition]:
    """Validate job-file text (YAML 1.1; JSON is a subset)."""
    if len(text) > max_bytes or len(text.encode("utf-8")) > max_bytes:
        raise JobFileError(source, [_too_large(source, max_bytes)])
    loader = JobFileLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise JobFileError(source, [f"{where}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobFileError(source, [f"{where}: not valid YAML/JSON: {problem}"]) from None
    finally:
        loader.dispose()
    lines = dict(_node_lines(node)) if node is not None else {}
    if not isinstance(data, dict) or "jobs" not in data:
        raise JobFileError(
            source, [f"{source}:1: the file must be a mapping with a 'jobs' list at the top"]
        )
    unknown = sorted(str(k) for k in data if k != "jobs")
    if unknown:
        raise JobFileError(
            source, [f"{source}:1: unknown top-level key(s) {', '.join(unknown)}; only 'jobs'"]
        )
    raw_jobs = data["jobs"]
    if not isinstance(raw_jobs, list):
        raise JobFileError(source, [f"{source}:{lines.get(('jobs',), 1)}: 'jobs' must be a list"])
    try:
        jobs = _JOBS.validate_python(raw_jobs)
    except ValidationError as exc:
        problems = format_validation_error(exc, raw_jobs, source, lines)
        raise JobFileError(source, problems) from None
    names = [job.name for job in jobs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise JobFileError(source, [f"{source}: job names must be unique; repeated: {repeated}"])
    return jobs


def _too_large(source: str, max_bytes: int) -> str:
    return (
        f"{source}: the file is larger than {max_bytes} bytes, the limit of a job file "
        "(split it into several files)"
    )


def format_validation_error(
    exc: ValidationError,
    raw_jobs: list[Any],
    source: str,
    lines: dict[_Loc, int] | None = None,
) -> list[str]:
    """One line per pydantic error: ``file:line: job 'x': field.path: message``."""
    lines = lines or {}
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        data_loc = _data_path(loc, raw_jobs)
        line = _nearest_line(("jobs", *data_loc), lines)
        where = f"{source}:{line}" if line else source
        job = ""
        if data_loc and isinstance(data_loc[0], int) and data_loc[0] < len(raw_jobs):
            raw = raw_jobs[data_loc[0]]
            name = raw.get("name") if isinstance(raw, dict) else None
            job = f" job {name!r}:" if name else f" job #{data_loc[0] + 1}:"
        field = ".".join(str(p) for p in data_loc[1:]) or "(job)"
        message = error["msg"].removeprefix("Value error, ")
        out.append(f"{where}:{job} {field}: {message}")
    return out


def _data_path(loc: _Loc, data: Any) -> _Loc:
    """Drop the parts of a pydantic location that are not in the data (union tags)."""
    path: list[str | int] = []
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_list or (isinstance(data, dict) and part in data):
            data = data[part]
            path.append(part)
        elif isinstance(data, dict) and isinstance(part, str) and part == data.get("type"):
            continue  # discriminated-union tag
        else:
            path.append(part)
            data = None
    return tuple(path)


def _nearest_line(loc: _Loc, lines: dict[_Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _node_lines(node: yaml.Node, path: _Loc = ()) -> Iterator[tuple[_Loc, int]]:
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield from _node_lines(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _node_lines(item, (*path, index))
