"""The job registry on a real MongoDB-wire server (SecantusDB, or SLURP_TEST_MONGO_URL)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import JobFileError
from contracts.jobs import JobDefinition
from storage.errors import InvalidJobRecordError, JobNotFoundError
from storage.jobs import JOBS_COLLECTION, JobRegistry
from storage.store import Store

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_job(name: str = "users", cron: str | None = "0 4 * * *", **extra: Any) -> JobDefinition:
    data: dict[str, Any] = {
        "name": name,
        "datasources": [{"name": "src", "type": "inline", "records": [{"id": 1}]}],
        "collection": {"type": "normal", "name": f"c_{name}"},
        **extra,
    }
    if cron is not None:
        data["schedule"] = {"cron": cron, "timezone": "Europe/Zurich"}
    return JobDefinition.model_validate(data)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(store: Store, clock: Clock) -> JobRegistry:
    return JobRegistry(store, clock=clock)


def test_put_creates_and_get_reads_back(registry: JobRegistry) -> None:
    definition = make_job()
    record = registry.put(definition)
    assert record.definition == definition
    assert record.revision >= 1
    assert record.created_at == record.updated_at == record.active_since == T0
    assert record.last_slot is None
    assert record.schedule_cursor == T0
    assert registry.get("users") == record
    assert registry.get("nope") is None


def test_identical_put_is_a_no_op(registry: JobRegistry, clock: Clock) -> None:
    first = registry.put(make_job())
    token = registry.version_token()
    clock.advance(minutes=5)
    again = registry.put(make_job())
    assert again == first
    assert registry.version_token() == token


def test_edits_bump_the_revision_and_schedule_edits_reset_active_since(
    registry: JobRegistry, clock: Clock
) -> None:
    first = registry.put(make_job())
    t1 = clock.advance(minutes=5)
    described = registry.put(make_job(description="nightly"))
    assert described.revision > first.revision
    assert described.updated_at == t1
    assert described.active_since == T0  # the schedule did not change
    t2 = clock.advance(minutes=5)
    rescheduled = registry.put(make_job(cron="* * * * *", description="nightly"))
    assert rescheduled.revision > described.revision
    assert rescheduled.active_since == t2  # missed slots of the old schedule never fire
    assert rescheduled.created_at == T0


def test_revisions_are_unique_across_jobs_and_never_reused(registry: JobRegistry) -> None:
    a = registry.put(make_job("a"))
    b = registry.put(make_job("b"))
    assert registry.delete("b")
    b_again = registry.put(make_job("b"))
    assert len({a.revision, b.revision, b_again.revision}) == 3
    assert b_again.revision > b.revision


def test_version_token_tracks_every_definition_change(registry: JobRegistry) -> None:
    tokens = [registry.version_token()]
    registry.put(make_job("a"))
    tokens.append(registry.version_token())
    registry.put(make_job("b"))
    tokens.append(registry.version_token())
    registry.put(make_job("a", cron="@hourly"))
    tokens.append(registry.version_token())
    registry.set_paused("a", True)
    tokens.append(registry.version_token())
    registry.delete("a")
    tokens.append(registry.version_token())
    assert len(set(tokens)) == len(tokens)
    registry.advance_slot("b", T0)  # ticker bookkeeping is not a definition change
    assert registry.version_token() == tokens[-1]


def test_require_names_the_registered_jobs(registry: JobRegistry) -> None:
    with pytest.raises(JobNotFoundError, match="no jobs are registered"):
        registry.require("users")
    registry.put(make_job("orders"))
    registry.put(make_job("users"))
    with pytest.raises(JobNotFoundError, match=r"no job named 'user' .*orders, users"):
        registry.require("user")
    assert registry.require("users").name == "users"


def test_list_is_sorted_and_skips_corrupt_documents(
    registry: JobRegistry, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    registry.put(make_job("b"))
    registry.put(make_job("a"))
    registry.put(make_job("c"))
    store.db[JOBS_COLLECTION].update_one({"_id": "c"}, {"$set": {"definition.schedule": 5}})
    bad: list[InvalidJobRecordError] = []
    assert [r.name for r in registry.list(on_invalid=bad.append)] == ["a", "b"]
    assert [e.name for e in bad] == ["c"]
    assert "schedule" in bad[0].problem
    with caplog.at_level(logging.WARNING, logger="storage.jobs"):
        assert len(registry.list()) == 2
    assert "stored job 'c' is invalid" in caplog.text
    with pytest.raises(InvalidJobRecordError):
        registry.get("c")


def test_delete(registry: JobRegistry) -> None:
    registry.put(make_job())
    assert registry.delete("users") is True
    assert registry.delete("users") is False
    assert registry.get("users") is None


def test_pause_and_resume(registry: JobRegistry, clock: Clock) -> None:
    created = registry.put(make_job())
    clock.advance(hours=1)
    paused = registry.set_paused("users", True)
    assert paused.definition.paused is True
    assert paused.revision > created.revision
    assert paused.active_since == T0
    assert registry.set_paused("users", True) == paused  # already paused: no change
    t2 = clock.advance(hours=1)
    resumed = registry.set_paused("users", False)
    assert resumed.definition.paused is False
    assert resumed.active_since == t2  # slots during the pause never fire
    assert registry.require("users").definition == make_job()
    with pytest.raises(JobNotFoundError):
        registry.set_paused("nope", True)


def test_advance_slot_only_moves_forward(registry: JobRegistry) -> None:
    registry.put(make_job())
    assert registry.last_scheduled_slot("users") is None
    slot = datetime(2026, 1, 6, 3, 0, tzinfo=UTC)
    assert registry.advance_slot("users", slot) is True
    assert registry.advance_slot("users", slot) is False
    assert registry.advance_slot("users", slot - timedelta(days=1)) is False
    assert registry.last_scheduled_slot("users") == slot
    later = slot + timedelta(days=1)
    assert registry.advance_slot("users", later) is True
    record = registry.require("users")
    assert record.last_slot == later
    assert record.schedule_cursor == later
    assert registry.advance_slot("nope", later) is False
    with pytest.raises(JobNotFoundError):
        registry.last_scheduled_slot("nope")
    with pytest.raises(ValueError, match="timezone-aware"):
        registry.advance_slot("users", datetime(2026, 1, 1))


def test_advance_slots_in_one_round_trip(registry: JobRegistry) -> None:
    for name in ("a", "b", "c"):
        registry.put(make_job(name))
    registry.advance_slot("c", T0 + timedelta(hours=1))
    moved = registry.advance_slots({"a": T0, "b": T0, "c": T0, "gone": T0})
    assert moved == 2  # c already had a later slot; "gone" does not exist
    assert [registry.last_scheduled_slot(n) for n in "abc"] == [T0, T0, T0 + timedelta(hours=1)]
    assert registry.advance_slots({}) == 0


def test_concurrent_advances_keep_the_latest(registry: JobRegistry) -> None:
    registry.put(make_job())
    slots = [T0 + timedelta(minutes=i) for i in range(40)]
    barrier = threading.Barrier(8)

    def advance(offset: int) -> None:
        barrier.wait()
        for slot in slots[offset::8][::-1] + slots[offset::8]:
            registry.advance_slot("users", slot)

    threads = [threading.Thread(target=advance, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.last_scheduled_slot("users") == slots[-1]


def test_concurrent_puts_each_get_their_own_revision(registry: JobRegistry) -> None:
    registry.put(make_job())
    barrier = threading.Barrier(6)
    revisions: dict[int, int] = {}

    def edit(i: int) -> None:
        barrier.wait()
        revisions[registry.put(make_job(description=f"edit {i}")).revision] = i

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(revisions) == 6  # six distinct revisions
    final = registry.require("users")
    assert final.revision == max(revisions)  # the last write wins, whole
    assert final.definition.description == f"edit {revisions[final.revision]}"


def test_load_file_puts_every_job_and_is_idempotent(registry: JobRegistry, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "jobs:\n"
        "  - name: a\n"
        "    datasources: [{name: src, type: inline, records: []}]\n"
        "    schedule: {cron: '@daily', timezone: Europe/Zurich}\n"
        "    collection: {type: normal, name: c_a}\n"
        "  - name: b\n"
        "    datasources: [{name: src, type: inline, records: []}]\n"
        "    collection: {type: normal, name: c_b}\n",
        encoding="utf-8",
    )
    records = registry.load_file(path)
    assert [r.name for r in records] == ["a", "b"]
    assert registry.load_file(path) == records  # nothing changed: same revisions
    path.write_text("jobs:\n  - name: c\n", encoding="utf-8")
    with pytest.raises(JobFileError):
        registry.load_file(path)
    assert [r.name for r in registry.list()] == ["a", "b"]
