"""Slurpers: data_map and ctx, the allow-list, failures, and the whole path from
datasources through a slurper into storage (a real SecantusDB server), incl. chaining
jobs through a ``collection`` source."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts.messages import RunJob
from datasources import (
    ConfigError,
    FetchError,
    RunContext,
    SlurperFailedError,
    SlurperImportError,
    SlurperNotAllowedError,
    SlurperResultError,
    is_allowed,
    run_slurper,
)
from storage.errors import BadRecordError
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import Store
from storage.strategies import strategy_for
from tests.datasource_servers import HttpServer, Reply, fast_runtime, make_job, records_of

HELPERS = "tests.datasource_servers"
USERS = [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}, {"id": 3, "name": "Cy"}]
POSTS = [{"userId": 1, "title": "a"}, {"userId": 1, "title": "b"}, {"userId": 3, "title": "c"}]


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer().start()
    yield http
    http.stop()


def inline(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "type": "inline", "records": records}


def helpers_runtime(**overrides: Any) -> Any:
    return fast_runtime(slurper_modules=["examples", HELPERS], **overrides)


def store_job_run(store: Store, job: Any, runtime: Any, run_id: str = "run-1") -> Any:
    ctx = RunContext(job=job.name, run_id=run_id)
    strategy = strategy_for(store, job.collection)
    return store_run(strategy, run_id, run_slurper(job, ctx, runtime))


def test_slurper_joins_a_rest_api_and_a_jsonl_file_into_storage(
    server: HttpServer, tmp_path: Path, store: Store
) -> None:
    server.route("/users", lambda r: Reply.json({"data": USERS}))
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps(p) + "\n" for p in POSTS))
    job = make_job(
        [
            {"name": "users", "type": "rest", "url": server.url("/users"),
             "records_path": "data"},
            {"name": "posts", "type": "jsonl", "path": str(posts)},
        ],
        slurper="examples.slurpers:join_users_posts",
        name="users_posts",
        collection={"type": "versioned", "name": "users_posts", "keep_versions": 3},
    )  # fmt: skip
    result = store_job_run(store, job, fast_runtime())
    assert result.records_written == 3
    stored = list(CollectionReader(store).find("users_posts"))
    assert stored == [
        {"id": 1, "name": "Ann", "posts": 2},
        {"id": 2, "name": "Bob", "posts": 0},
        {"id": 3, "name": "Cy", "posts": 1},
    ]

    # chaining: another job reads that collection (live, and a given version)
    server.route("/users", lambda r: Reply.json({"data": USERS[:1]}))
    store_job_run(store, job, fast_runtime(), run_id="run-2")
    reader = CollectionReader(store)
    chained = make_job([{"name": "up", "type": "collection", "collection": "users_posts"}])
    runtime = fast_runtime(collections=reader)
    assert records_of(chained, runtime) == [{"id": 1, "name": "Ann", "posts": 2}]
    first = chained.model_copy(
        update={"datasources": [chained.datasources[0].model_copy(update={"version": 1})]}
    )
    assert [r["id"] for r in records_of(first, runtime)] == [1, 2, 3]


def test_collection_source_errors(store: Store) -> None:
    job = make_job([{"name": "up", "type": "collection", "collection": "nothing_here"}])
    with pytest.raises(ConfigError, match="collection sources need a database"):
        records_of(job)
    with pytest.raises(FetchError, match="no collection named 'nothing_here'") as info:
        records_of(job, fast_runtime(collections=CollectionReader(store)))
    assert info.value.retryable


def test_a_bad_record_fails_the_run_naming_its_position(store: Store) -> None:
    job = make_job(
        [inline("a", [{"n": 0}])],
        slurper=f"{HELPERS}:third_is_not_a_record",
        collection={"type": "normal", "name": "bad"},
    )
    with pytest.raises(BadRecordError, match="record at position 2: must be a JSON object"):
        store_job_run(store, job, helpers_runtime())
    assert CollectionReader(store).count("bad") == 0


def test_ctx_and_data_map_given_to_the_slurper() -> None:
    job = make_job(
        [inline("users", USERS), inline("posts", POSTS)],
        slurper=f"{HELPERS}:context_record",
        params={"region": "eu", "limit": 5},
        schedule={"cron": "0 4 * * *", "timezone": "Europe/Zurich"},
    )
    slot = datetime(2026, 2, 1, 3, tzinfo=UTC)
    message = RunJob.for_slot(job.name, slot).model_copy(update={"params": {"limit": 9}})
    ctx = RunContext.for_run(job, message)
    (record,) = list(run_slurper(job, ctx, helpers_runtime()))
    assert record == {
        "job": "job",
        "run_id": message.run_id,
        "trigger": "schedule",
        "scheduled_for": "2026-02-01T03:00:00+00:00",
        "params": {"region": "eu", "limit": 9},
        "timezone": "Europe/Zurich",
        "sources": {"users": "list", "posts": "list"},
        "counts": {"users": 3, "posts": 3},
    }
    assert ctx.run_time.isoformat() == "2026-02-01T04:00:00+01:00"


def test_without_a_slurper_items_stream_lazily(server: HttpServer) -> None:
    server.route("/p", lambda r: Reply.json([{"page": int(r.query["page"])}] * 10))
    job = make_job([{"name": "p", "type": "rest", "url": server.url("/p"),
                     "pagination": {"style": "page"}, "max_pages": 50}])  # fmt: skip
    records = run_slurper(job, RunContext(job="job", run_id="r"), fast_runtime())
    assert server.seen("/p") == []  # nothing is fetched before the first record is asked for
    assert next(records) == {"page": 1}
    assert len(server.seen("/p")) == 1
    records.close()


@pytest.mark.parametrize(
    ("module", "allowed", "expected"),
    [
        ("examples", ["examples"], True),
        ("examples.slurpers", ["examples"], True),
        ("examples.sub.deep", ["examples"], True),
        ("examples2", ["examples"], False),
        ("examples2.slurpers", ["examples"], False),
        ("example", ["examples"], False),
        ("acme.jobs.x", ["examples", "acme.jobs"], True),
        ("acme.jobsx", ["acme.jobs"], False),
        ("anything", [], False),
        ("anything", [""], False),
    ],
)
def test_allow_list_matches_whole_dotted_components(
    module: str, allowed: list[str], expected: bool
) -> None:
    assert is_allowed(module, allowed) is expected


def test_a_slurper_outside_the_allow_list_is_refused_before_import(
    tmp_path: Path, monkeypatch: Any
) -> None:
    package = tmp_path / "evil_slurpers"
    package.mkdir()
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (package / "mod.py").write_text("def slurp(ctx, data_map):\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    job = make_job([inline("a", [{"n": 1}])], slurper="evil_slurpers.mod:slurp")
    with pytest.raises(SlurperNotAllowedError) as info:
        run_slurper(job, RunContext(job="job", run_id="r"), fast_runtime())
    assert "module 'evil_slurpers.mod' is not under an allowed prefix ('examples')" in str(
        info.value
    )
    assert "SLURP_SLURPER_MODULES" in str(info.value)
    assert not marker.exists() and "evil_slurpers" not in sys.modules
    lookalike = make_job([inline("a", [{"n": 1}])], slurper="examples2.slurpers:x")
    with pytest.raises(SlurperNotAllowedError):
        run_slurper(lookalike, RunContext(job="job", run_id="r"), fast_runtime())
    # allowed, it imports and runs
    allowed = fast_runtime(slurper_modules=["evil_slurpers"])
    assert records_of(job, allowed) == [] and marker.exists()


@pytest.mark.parametrize(
    ("slurper", "error", "expected"),
    [
        ("examples.no_such_module:f", SlurperImportError, "cannot import 'examples.no_such_mod"),
        ("examples.slurpers:no_such_function", SlurperImportError, "has no 'no_such_function'"),
        (f"{HELPERS}:NOT_CALLABLE", SlurperImportError, "'NOT_CALLABLE' is not callable"),
        (f"{HELPERS}:returns_a_dict", SlurperResultError, "returned dict; it must return a list"),
        (f"{HELPERS}:raises_at_once", SlurperFailedError, "raised KeyError: 'missing'"),
        (f"{HELPERS}:fails_midway", SlurperFailedError, "raised ValueError: upstream data is odd"),
    ],
)  # fmt: skip
def test_slurper_failures_are_clear(slurper: str, error: type[Exception], expected: str) -> None:
    job = make_job([inline("a", [{"n": 1}])], slurper=slurper)
    with pytest.raises(error) as info:
        records_of(job, helpers_runtime())
    assert expected in str(info.value)
    assert not getattr(info.value, "retryable", True)
    if error is SlurperFailedError:
        assert info.value.__cause__ is not None


def test_inline_records_are_copies_a_slurper_may_change() -> None:
    job = make_job([inline("a", [{"n": 1, "tags": ["x"]}])])
    first = records_of(job)
    first[0]["tags"].append("changed")
    assert records_of(job) == [{"n": 1, "tags": ["x"]}]
