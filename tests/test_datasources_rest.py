"""REST datasource against a real HTTP server on 127.0.0.1: pages, retries, timeouts,
bad answers, templates."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from datasources import (
    ConfigError,
    FetchError,
    Progress,
    ResponseFormatError,
    RunContext,
)
from datasources.progress import SourceCounts
from tests.datasource_servers import HttpServer, Reply, Request, fast_runtime, make_job, records_of


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer().start()
    yield http
    http.stop()


def rest(server: HttpServer, path: str, **config: Any) -> dict[str, Any]:
    return {"name": "api", "type": "rest", "url": server.url(path), **config}


def test_10k_records_over_100_pages_with_progress(server: HttpServer) -> None:
    def pages(request: Request) -> Reply:
        page, size = int(request.query["page"]), int(request.query["per_page"])
        first = (page - 1) * size
        items = [{"id": i, "name": f"user {i}"} for i in range(first, min(first + size, 10_000))]
        return Reply.json({"data": {"items": items, "page": page}})

    server.route("/users", pages)
    updates: list[dict[str, SourceCounts]] = []
    progress = Progress(on_update=lambda snap: updates.append(dict(snap)), interval_s=0)
    job = make_job(
        [
            rest(
                server,
                "/users",
                records_path="data.items",
                pagination={"style": "page", "size_param": "per_page", "size": 100},
            )
        ]
    )
    records = records_of(job, progress=progress)
    assert [r["id"] for r in records] == list(range(10_000))
    # 100 full pages, then the empty page 101 that ends the walk
    assert [int(r.query["page"]) for r in server.seen("/users")] == list(range(1, 102))
    assert progress.snapshot() == {"api": SourceCounts(items=10_000, pages=101, done=True)}
    assert updates[-1]["api"].done and updates[-1]["api"].items == 10_000
    assert any(0 < u["api"].items < 10_000 for u in updates), "progress reported along the way"


def test_offset_cursor_and_link_pagination(server: HttpServer) -> None:
    data = [{"n": i} for i in range(250)]

    def by_offset(request: Request) -> Reply:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return Reply.json(data[offset : offset + limit])

    def by_cursor(request: Request) -> Reply:
        start = int(request.query.get("cursor", "0"))
        following = start + 100 if start + 100 < len(data) else None
        return Reply.json({"items": data[start : start + 100], "meta": {"next": following}})

    def by_link(request: Request) -> Reply:
        start = int(request.query.get("from", "0"))
        headers = {}
        if start + 100 < len(data):
            headers["Link"] = f'</linked?from={start + 100}&x=1>; rel="next"'
        return Reply.json(data[start : start + 100], headers=headers)

    server.route("/offset", by_offset)
    server.route("/cursor", by_cursor)
    server.route("/linked", by_link)
    offset = {"style": "offset", "param": "offset", "size_param": "limit", "size": 100}
    cursor = {"style": "cursor", "param": "cursor", "cursor_path": "meta.next"}
    for path, pagination, records_path in [
        ("/offset", offset, None),
        ("/cursor", cursor, "items"),
        ("/linked", {"style": "link"}, None),
    ]:
        source = rest(server, path, pagination=pagination, records_path=records_path)
        assert records_of(make_job([source])) == data, path
        assert len(server.seen(path)) == 3, path
    assert [r.query.get("offset") for r in server.seen("/offset")] == ["0", "100", "200"]
    assert [r.query.get("cursor") for r in server.seen("/cursor")] == [None, "100", "200"]
    assert [r.query for r in server.seen("/linked")][1:] == [
        {"from": "100", "x": "1"},
        {"from": "200", "x": "1"},
    ]


def test_max_pages_bounds_an_endless_api(server: HttpServer, caplog: Any) -> None:
    server.route("/endless", lambda r: Reply.json([{"page": int(r.query["page"])}]))
    source = rest(server, "/endless", pagination={"style": "page"}, max_pages=3)
    with caplog.at_level(logging.WARNING):
        assert records_of(make_job([source])) == [{"page": 1}, {"page": 2}, {"page": 3}]
    assert len(server.seen("/endless")) == 3
    assert "stopped after max_pages=3" in caplog.text


def test_500_twice_then_success(server: HttpServer) -> None:
    def flaky(request: Request) -> Reply:
        if len(server.seen("/flaky")) <= 2:
            return Reply.text("boom", "text/plain", status=500)
        return Reply.json([{"ok": True}])

    server.route("/flaky", flaky)
    assert records_of(make_job([rest(server, "/flaky")])) == [{"ok": True}]
    assert len(server.seen("/flaky")) == 3


def test_429_retry_comes_after_retry_after(server: HttpServer) -> None:
    def limited(request: Request) -> Reply:
        if len(server.seen("/limited")) == 1:
            return Reply(429, b"slow down", {"Retry-After": "1"})
        return Reply.json([{"ok": True}])

    server.route("/limited", limited)
    # the real sleep and a large backoff base: only Retry-After can explain a ~1 s wait
    runtime = fast_runtime(backoff_base_s=30.0, backoff_max_s=30.0)
    assert records_of(make_job([rest(server, "/limited")]), runtime) == [{"ok": True}]
    first, second = server.seen("/limited")
    assert 1.0 <= second.at - first.at < 10.0


def test_retry_after_longer_than_the_limit_fails_at_once(server: HttpServer) -> None:
    server.route("/later", lambda r: Reply(503, b"", {"Retry-After": "3600"}))
    with pytest.raises(FetchError, match="Retry-After 3600 s") as info:
        records_of(make_job([rest(server, "/later")]))
    assert info.value.retryable and info.value.status == 503
    assert len(server.seen("/later")) == 1


def test_timeout_is_retried_then_fails_retryable(server: HttpServer) -> None:
    server.route("/slow", lambda r: Reply(200, b"[]", delay_s=5))
    job = make_job([rest(server, "/slow", timeout_s=0.2, max_retries=1)])
    with pytest.raises(FetchError) as info:
        records_of(job)
    assert info.value.retryable
    assert "timed out after 0.2 s" in str(info.value)
    assert "gave up after 2 attempts" in str(info.value)
    assert str(info.value).startswith("datasource 'api': GET http://127.0.0.1:")
    assert len(server.seen("/slow")) == 2


def test_5xx_exhausted_is_retryable_and_4xx_is_not_retried(server: HttpServer) -> None:
    server.route("/down", lambda r: Reply(503, b"maintenance"))
    server.route("/missing", lambda r: Reply.json({"error": "no such thing"}, status=404))
    with pytest.raises(FetchError, match="HTTP 503") as down:
        records_of(make_job([rest(server, "/down", max_retries=2)]))
    assert down.value.retryable and len(server.seen("/down")) == 3
    with pytest.raises(FetchError, match=r"HTTP 404 Not Found: \{\"error\": \"no such") as gone:
        records_of(make_job([rest(server, "/missing")]))
    assert not gone.value.retryable and len(server.seen("/missing")) == 1


def test_connection_refused_is_retryable(server: HttpServer) -> None:
    url = server.url("/x")
    server.stop()
    job = make_job([{"name": "api", "type": "rest", "url": url, "max_retries": 1}])
    with pytest.raises(FetchError, match="connection failed") as info:
        records_of(job)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("reply", "config", "expected"),
    [
        (Reply.text('{"data": [1, 2', "application/json"), {}, "is not JSON"),
        (Reply.text("<html>hi</html>", "text/html"), {}, "is not JSON (text/html"),
        (Reply.json({"results": []}), {"records_path": "data.items"},
         "records_path 'data.items' not found in the answer of GET"),
        (Reply.json({"data": {"items": 3}}), {"records_path": "data.items"},
         "records_path 'data.items' in the answer of GET"),
        (Reply.json({"results": [], "next": None}), {},
         "is an object, not a list: set records_path to the list's path; keys: next, results"),
    ],
)  # fmt: skip
def test_bad_answers_are_clear_errors(
    server: HttpServer, reply: Reply, config: dict[str, Any], expected: str
) -> None:
    server.route("/bad", lambda r: reply)
    with pytest.raises(ResponseFormatError) as info:
        records_of(make_job([rest(server, "/bad", **config)]))
    assert expected in str(info.value)
    assert not info.value.retryable


def test_templates_use_the_run_time_in_the_jobs_timezone(server: HttpServer) -> None:
    server.route("/search", lambda r: Reply.json({"hits": [r.json()]}), method="POST")
    source = rest(
        server,
        "/search",
        method="POST",
        params={"day": "${yesterday}", "compact": "${date:%Y%m%d}", "since": "${params.since}"},
        headers={"X-Run": "${job}/${run_id}", "X-Key": "${env.API_KEY}"},
        body={"from": "${datetime-1h}", "to": "${datetime_utc}", "literal": "$gt $${x}"},
        records_path="hits",
    )
    job = make_job(
        [source], params={"since": "2020"}, schedule={"cron": "@daily", "timezone": "Europe/Zurich"}
    )
    # 23:30 UTC on 1 March is 00:30 on 2 March in Zurich: "yesterday" is 1 March
    ctx = RunContext(
        job="job",
        run_id="r-7",
        trigger="schedule",
        scheduled_for=datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
        params=job.params,
        timezone="Europe/Zurich",
    )
    runtime = fast_runtime(environ={"API_KEY": "k-123456"})
    (record,) = records_of(job, runtime, ctx)
    assert record == {
        "from": "2026-03-01T23:30:00+01:00",
        "to": "2026-03-01T23:30:00Z",
        "literal": "$gt ${x}",
    }
    (request,) = server.seen("/search")
    assert request.query == {"day": "2026-03-01", "compact": "20260302", "since": "2020"}
    assert request.headers["x-run"] == "job/r-7"
    assert request.headers["x-key"] == "k-123456"


def test_template_errors_name_the_field() -> None:
    bad_name = {"name": "a", "type": "rest", "url": "http://127.0.0.1:9/${nope}"}
    with pytest.raises(ConfigError, match=r"datasource 'a': url: unknown template name \$\{nope"):
        records_of(make_job([bad_name]))
    secret_in_url = {"name": "a", "type": "rest", "url": "http://127.0.0.1:9/?k=${env.KEY}"}
    with pytest.raises(ConfigError, match="allowed in headers and bodies only"):
        records_of(make_job([secret_in_url]), fast_runtime(environ={"KEY": "v"}))
