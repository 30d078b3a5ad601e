"""Contracts: validation rules, error messages, frozen models, JSON Schema drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import CollectionType, JobDefinition, JobFailed, JobStarted, RunJob
from contracts.messages import MAX_MESSAGE_BYTES, MAX_MESSAGE_DEPTH, RunJobMessage
from contracts.schema import SCHEMA_DIR, SCHEMAS, render, stale_schemas


def job(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "users",
        "datasources": [{"name": "users", "type": "inline", "records": [{"id": 1}]}],
        "collection": {"type": "normal", "name": "users"},
    }
    base.update(overrides)
    return base


def errors_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        JobDefinition.model_validate(data)
    return str(info.value)


def test_minimal_job_has_sane_defaults() -> None:
    definition = JobDefinition.model_validate(job())
    assert definition.schedule is None
    assert definition.paused is False
    assert definition.retry.max_retries == 3
    assert definition.schema_version == 1


@pytest.mark.parametrize(
    ("collection", "expected"),
    [
        ({"type": "upserted", "name": "u"},
         "upsert_key is required for collection type 'upserted'"),
        ({"type": "upserted_versioned", "name": "u", "keep_versions": 2},
         "upsert_key is required"),
        ({"type": "normal", "name": "u", "upsert_key": "id"}, "upsert_key is only allowed"),
        ({"type": "versioned", "name": "u"}, "keep_versions (>= 1) is required"),
        ({"type": "versioned", "name": "u", "keep_versions": 0}, "greater than or equal to 1"),
        ({"type": "accumulative", "name": "u", "keep_versions": 3},
         "keep_versions is only allowed for the versioned types"),
        ({"type": "nope", "name": "u"}, "'normal', 'upserted', 'accumulative'"),
        ({"type": "normal", "name": "system.users"}, "must not start with 'system.'"),
        ({"type": "normal", "name": "a$b"}, "must not contain '$'"),
        ({"type": "normal", "name": ""}, "must not be empty"),
    ],
)  # fmt: skip
def test_collection_rules_name_the_field_and_the_fix(
    collection: dict[str, Any], expected: str
) -> None:
    message = errors_of(job(collection=collection))
    assert "collection" in message
    assert expected in message


def test_every_wrong_field_is_reported_at_once() -> None:
    message = errors_of(
        job(
            name="bad name!",
            schedule={"cron": "61 * * * *", "timezone": "Mars/Olympus"},
            timeout_s=0,
        )
    )
    assert "name" in message and "a job name is 1-100 characters" in message
    assert "schedule.cron" in message and "not a valid cron expression" in message
    assert "schedule.timezone" in message and "unknown timezone 'Mars/Olympus'" in message
    assert "timeout_s" in message


def test_duplicate_datasource_names_are_refused() -> None:
    source = {"name": "a", "type": "inline", "records": []}
    message = errors_of(job(datasources=[source, source], slurper="examples.slurpers:x"))
    assert "datasource names must be unique; repeated: a" in message


def test_two_sources_need_a_slurper() -> None:
    sources = [
        {"name": "a", "type": "inline", "records": []},
        {"name": "b", "type": "inline", "records": []},
    ]
    assert "without a slurper a job has exactly one datasource" in errors_of(
        job(datasources=sources)
    )


def test_datasource_union_is_discriminated_by_type() -> None:
    message = errors_of(job(datasources=[{"name": "a", "type": "ftp"}]))
    assert "datasources.0" in message and "'inline', 'rest'" in message
    message = errors_of(job(datasources=[{"name": "a", "type": "csv"}]))
    assert "exactly one of 'path'" in message


@pytest.mark.parametrize("cron", ["0 4 * * *", "0 0 * * 1", "0 22 * * 1-5", "15 */3 * * *",
                                  "@daily", "@hourly", "@weekly", "@monthly"])  # fmt: skip
def test_valid_crons_and_aliases(cron: str) -> None:
    definition = JobDefinition.model_validate(job(schedule={"cron": cron}))
    assert definition.schedule is not None
    assert len(definition.schedule.expression.split()) == 5


@pytest.mark.parametrize("cron", ["", "* * * *", "0 4 * * * *", "@sometimes", "a b c d e"])
def test_invalid_crons(cron: str) -> None:
    assert "not a valid cron expression" in errors_of(job(schedule={"cron": cron}))


def test_slurper_reference_format() -> None:
    assert "is not 'module:function'" in errors_of(job(slurper="examples.slurpers.drop"))


def test_unknown_fields_are_refused_everywhere() -> None:
    assert "Extra inputs are not permitted" in errors_of(job(colection={}))
    message = errors_of(job(collection={"type": "normal", "name": "u", "keep": 1}))
    assert "collection.keep" in message


def test_models_are_frozen() -> None:
    definition = JobDefinition.model_validate(job())
    with pytest.raises(ValidationError):
        definition.name = "other"  # type: ignore[misc]


def test_collection_type_properties() -> None:
    assert {t.value for t in CollectionType if t.upserts} == {"upserted", "upserted_versioned"}
    assert {t.value for t in CollectionType if t.versioned} == {
        "versioned", "upserted_versioned", "accumulative_versioned"}  # fmt: skip


def test_run_job_scheduled_id_is_deterministic_and_utc() -> None:
    slot = datetime(2026, 3, 29, 4, 0, tzinfo=timezone(timedelta(hours=2)))
    first = RunJob.for_slot("users", slot)
    second = RunJob.for_slot("users", slot.astimezone(UTC))
    assert first.run_id == second.run_id
    assert first.scheduled_for == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert RunJob.for_slot("users", slot + timedelta(minutes=1)).run_id != first.run_id
    assert RunJob.for_slot("other", slot).run_id != first.run_id


def test_run_job_round_trips_as_json() -> None:
    message = RunJob(job="users", requested_by="svc-a")
    again = RunJob.model_validate_json(message.model_dump_json())
    assert again == message


def test_run_job_rules() -> None:
    with pytest.raises(ValidationError, match="scheduled_for is required"):
        RunJob(job="users", trigger="schedule")
    with pytest.raises(ValidationError, match="timezone-aware"):
        RunJob.model_validate({"job": "users", "requested_at": "2026-01-01T00:00:00"})
    with pytest.raises(ValidationError, match="Input should be 'schedule', 'manual' or 'api'"):
        RunJob.model_validate({"job": "users", "trigger": "cron"})


def test_events_carry_unique_ids_and_kinds() -> None:
    a = JobStarted(run_id="r", job="users")
    b = JobStarted(run_id="r", job="users")
    assert a.event_id != b.event_id
    failed = JobFailed(run_id="r", job="unknown job!", error_type="X", message="m")
    assert json.loads(failed.model_dump_json())["kind"] == "failed"


def test_committed_json_schemas_match_the_models() -> None:
    assert stale_schemas() == [], "run 'slurp schema --write' and commit the result"
    for model in SCHEMAS.values():
        schema = json.loads(render(model))
        assert schema["additionalProperties"] is False


def _validator(filename: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMA_DIR / filename).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _documented_message() -> dict[str, Any]:
    """The example message of docs/wire-format.md (its first JSON block)."""
    text = (Path(__file__).parent.parent / "docs" / "wire-format.md").read_text(encoding="utf-8")
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    message: dict[str, Any] = json.loads(block)
    return message


def test_run_job_schema_states_the_workers_rules() -> None:
    validator = _validator("run_job.schema.json")
    documented = _documented_message()["args"][0]
    assert not list(validator.iter_errors(documented))
    RunJob.model_validate(documented)  # the model agrees
    slot = "2026-03-02T04:00:00Z"
    for good in [{"job": "users"}, {"job": "users", "trigger": "schedule", "scheduled_for": slot},
                 json.loads(RunJob.for_slot("users", datetime(2026, 3, 2, tzinfo=UTC))
                            .model_dump_json())]:  # fmt: skip
        assert not list(validator.iter_errors(good)), good
        RunJob.model_validate(good)
    for bad in [
        {"job": "users", "trigger": "schedule"},  # a schedule trigger without its slot
        {"job": "users", "trigger": "schedule", "scheduled_for": None},
        {"job": "users", "colour": "red"},  # no extra fields
        {"job": "bad name!"},
        {"job": "users", "trigger": "cron"},
        {"job": "users", "run_id": ""},
        {"trigger": "api"},
    ]:
        assert list(validator.iter_errors(bad)), bad
        with pytest.raises(ValidationError):
            RunJob.model_validate(bad)


def test_envelope_schema_validates_the_documented_and_published_messages() -> None:
    from contracts.publish import ACTOR_NAME, ScheduledRunEncoder, encode_run_job
    from workers.decoding import DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_BYTES

    assert (MAX_MESSAGE_BYTES, MAX_MESSAGE_DEPTH) == (DEFAULT_MAX_MESSAGE_BYTES,
                                                      DEFAULT_MAX_DEPTH)  # fmt: skip
    assert ACTOR_NAME == "run_job"
    assert SCHEMAS["run_job_message.schema.json"] is RunJobMessage
    validator = _validator("run_job_message.schema.json")
    documented = _documented_message()
    assert not list(validator.iter_errors(documented))
    RunJobMessage.model_validate(documented)
    published = [
        json.loads(encode_run_job(RunJob(job="users", requested_by="svc")).data),
        json.loads(ScheduledRunEncoder().encode("users", datetime(2026, 3, 2, tzinfo=UTC)).data),
    ]
    for message in published:
        assert not list(validator.iter_errors(message)), message
    schedule_without_slot = {**documented, "args": [{"job": "users", "trigger": "schedule"}]}
    for bad in [
        schedule_without_slot,
        {**documented, "args": []},
        {**documented, "args": [documented["args"][0], documented["args"][0]]},
        {**documented, "kwargs": {"x": 1}},
        {**documented, "actor_name": "other"},
        {**documented, "priority": 1},  # an unknown envelope field
        {**documented, "message_timestamp": "now"},
        {k: v for k, v in documented.items() if k != "message_id"},
    ]:
        assert list(validator.iter_errors(bad)), bad
