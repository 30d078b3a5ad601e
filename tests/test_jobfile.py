"""Job files: the public YAML/JSON shape, and errors that point at file:line, job, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts import JobFileError, load_jobs, parse_jobs

EXAMPLE = Path(__file__).parents[1] / "examples" / "jobs.yaml"

SHAPE = """\
jobs:
  - name: users
    datasources:
      - {name: users, type: rest, url: "https://api.example.org/users"}
    slurper: examples.slurpers:drop_admins
    schedule: {cron: "0 4 * * *", timezone: Europe/Zurich}
    paused: false
    collection: {type: upserted, name: users, upsert_key: id}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(JobFileError) as info:
        parse_jobs(text, source="jobs.yaml")
    return info.value.problems


def test_the_documented_shape_parses() -> None:
    (job,) = parse_jobs(SHAPE)
    assert job.name == "users"
    assert job.collection.upsert_key == "id"
    assert job.schedule is not None and job.schedule.timezone == "Europe/Zurich"
    assert job.slurper == "examples.slurpers:drop_admins"


def test_json_is_accepted_too() -> None:
    data = {"jobs": [{"name": "a", "datasources": [{"name": "a", "type": "inline", "records": []}],
                      "collection": {"type": "accumulative", "name": "a"}}]}  # fmt: skip
    (job,) = parse_jobs(json.dumps(data))
    assert job.collection.type == "accumulative"


def test_shipped_example_is_valid() -> None:
    jobs = load_jobs(EXAMPLE)
    assert [j.name for j in jobs] == ["users", "cities"]


def test_errors_name_line_job_and_field() -> None:
    text = SHAPE.replace("upsert_key: id", "keep_versions: 0").replace("Europe/Zurich", "Nowhere")
    problems = problems_of(text)
    assert any(
        p.startswith("jobs.yaml:6: job 'users': schedule.timezone: unknown timezone 'Nowhere'")
        for p in problems
    ), problems
    assert any(p.startswith("jobs.yaml:8: job 'users': collection.keep_versions") for p in problems)


def test_datasource_errors_point_into_the_list() -> None:
    text = SHAPE.replace('type: rest, url: "https://api.example.org/users"', "type: rest")
    (problem,) = problems_of(text)
    assert problem.startswith("jobs.yaml:4: job 'users': datasources.0.url: Field required")


def test_yaml_syntax_error_has_a_line() -> None:
    (problem,) = problems_of("jobs:\n  - name: [unclosed\n")
    assert problem.startswith("jobs.yaml:3: not valid YAML/JSON")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", "must be a mapping with a 'jobs' list"),
        ("jobs: {}", "'jobs' must be a list"),
        ("jobs: []\nextra: 1", "unknown top-level key(s) extra"),
    ],
)
def test_bad_top_level(text: str, expected: str) -> None:
    (problem,) = problems_of(text)
    assert expected in problem


def test_duplicate_job_names() -> None:
    (problem,) = problems_of(SHAPE + SHAPE.removeprefix("jobs:\n"))
    assert "job names must be unique; repeated: ['users']" in problem


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="cannot read the file"):
        load_jobs(tmp_path / "missing.yaml")
