"""Reading job files (YAML, or JSON) into ``JobDefinition`` objects.

The file shape is a public interface::

    jobs:
      - name: users
        datasources: [{name: users, type: rest, url: "https://api.example.org/users"}]
        collection: {type: upserted, name: users, upsert_key: id}

Every problem is reported at once, each line naming the file, the line number where
the YAML parser knows it, the job and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from contracts.errors import JobFileError
from contracts.jobs import JobDefinition

__all__ = ["format_validation_error", "load_jobs", "parse_jobs"]

_Loc = tuple[str | int, ...]
_JOBS = TypeAdapter(list[JobDefinition])


def load_jobs(path: str | Path) -> list[JobDefinition]:
    """Read and validate a job file; raise ``JobFileError`` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobFileError(str(path), [f"{path}: cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise JobFileError(str(path), [f"{path}: not UTF-8 text ({exc.reason})"]) from None
    return parse_jobs(text, source=str(path))


def parse_jobs(text: str, source: str = "<jobs>") -> list[JobDefinition]:
    """Validate job-file text (YAML 1.1; JSON is a subset)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobFileError(source, [f"{where}: not valid YAML/JSON: {problem}"]) from None
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
