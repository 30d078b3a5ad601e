"""Pure parts of datasources, by tables: templates, Retry-After, pagination, progress,
config rules, the runtime built from settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from contracts.datasources import Pagination
from contracts.jobs import JobDefinition
from datasources import (
    ConfigError,
    JobPolicy,
    NotAllowedError,
    Progress,
    RunContext,
    Runtime,
    SecretMissingError,
)
from datasources.http import retry_after_s
from datasources.pagination import PageAnswer, Paginator
from datasources.progress import SourceCounts
from datasources.redaction import Redactor
from datasources.templates import TemplateValues, render
from slurp.settings import load_settings

# 2026-03-29 01:30 UTC is 03:30 CEST in Zurich, an hour after the spring-forward gap
ZURICH = RunContext(
    job="daily",
    run_id="r-1",
    trigger="schedule",
    scheduled_for=datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    params={"since": "2020-01-01", "ids": [1, 2]},
    timezone="Europe/Zurich",
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${date}", "2026-03-29"),
        ("${today}/${yesterday}/${tomorrow}", "2026-03-29/2026-03-28/2026-03-30"),
        ("${yesterday:%Y%m%d}", "20260328"),
        ("${datetime}", "2026-03-29T03:30:00+02:00"),
        ("${datetime_utc}", "2026-03-29T01:30:00Z"),
        ("${timestamp}", "1774747800"),
        ("${date-7d}", "2026-03-22"),
        ("${datetime-2h}", "2026-03-29T00:30:00+01:00"),  # elapsed time, across the gap
        ("${datetime-1d}", "2026-03-28T03:30:00+01:00"),  # a calendar day, same wall time
        ("${datetime+90m:%H:%M}", "05:00"),
        ("${job}:${run_id}:${trigger}", "daily:r-1:schedule"),
        ("${params.since}..${params.ids}", "2020-01-01..[1, 2]"),
        ("$gt $id $$${x} $$ 5$", "$gt $id $${x} $$ 5$"),
        ("$${date}", "${date}"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_template_values(template: str, expected: str) -> None:
    assert render(template, TemplateValues(ZURICH), "url") == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${nope}", "url: unknown template name ${nope}; known: date, datetime"),
        ("${date", "url: malformed template"),
        ("${params.missing}", "the run has no param 'missing' (params: ids, since)"),
        ("${job:%Y}", "unknown template name ${job:%Y}"),
        ("${params.since:%Y}", "shifts and formats apply to dates and times"),
        ("${env.TOKEN}", "allowed in headers and bodies only"),
    ],
)
def test_template_errors(template: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        render(template, TemplateValues(ZURICH), "url")
    assert expected in str(info.value)


def test_env_template_is_a_masked_secret() -> None:
    redactor = Redactor({"TOKEN": "abc-secret-1"}, JobPolicy(env_allow=["TOKEN"]).check_env)
    values = TemplateValues(ZURICH, redactor)
    assert render("Bearer ${env.TOKEN}", values, "headers.Authorization") == "Bearer abc-secret-1"
    assert redactor("sent abc-secret-1 and abc-secret-1") == "sent *** and ***"
    with pytest.raises(NotAllowedError, match=r"headers\.X: environment variable UNSET is not"):
        render("${env.UNSET}", values, "headers.X")
    with pytest.raises(NotAllowedError, match="SLURP_"):
        render("${env.SLURP_MONGO_URL}", values, "headers.X")
    unset = TemplateValues(ZURICH, Redactor({}, JobPolicy(env_allow=["UNSET"]).check_env))
    with pytest.raises(SecretMissingError, match=r"headers\.X: environment variable UNSET"):
        render("${env.UNSET}", unset, "headers.X")


def test_manual_runs_use_the_start_time() -> None:
    ctx = RunContext(job="j", run_id="r", now=datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    assert render("${date}", TemplateValues(ctx), "url") == "2026-01-01"
    tokyo = RunContext(job="j", run_id="r", now=ctx.now, timezone="Asia/Tokyo")
    assert render("${datetime}", TemplateValues(tokyo), "url") == "2026-01-01T09:30:00+09:00"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 00:00:10 GMT", 10.0),
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after(header: str, expected: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": header} if header else {})
    assert retry_after_s(response, now=datetime(2026, 1, 1, tzinfo=UTC)) == expected


def test_pagination_param_defaults_to_the_style() -> None:
    pages = Paginator(Pagination(style="offset", size_param="limit", size=2), "u", {"a": "1"})
    first = pages.first()
    assert first.params == {"a": "1", "offset": "0", "limit": "2"}
    second = pages.next(PageAnswer(first, [], 2))
    assert second is not None and second.params["offset"] == "2"
    assert pages.next(PageAnswer(second, [], 1)) is None  # a short page is the last
    cursor = Paginator(Pagination(style="cursor", cursor_path="next"), "u", {})
    first = cursor.first()
    assert first.params == {}
    following = cursor.next(PageAnswer(first, {"next": "c2"}, 5))
    assert following is not None and following.params == {"cursor": "c2"}
    with pytest.raises(Exception, match="repeats the previous one"):
        cursor.next(PageAnswer(following, {"next": "c2"}, 5))


def test_progress_throttles_and_survives_a_failing_callback() -> None:
    now = [0.0]
    calls: list[dict[str, SourceCounts]] = []

    def on_update(snapshot: Any) -> None:
        calls.append(dict(snapshot))
        raise RuntimeError("observer broke")

    progress = Progress(on_update=on_update, interval_s=1.0, clock=lambda: now[0])
    source = progress.source("a")
    for _ in range(1000):
        source.item()
    source.page()
    assert calls == []  # within the interval: nothing reported yet
    now[0] = 1.5
    source.page()
    assert calls[-1]["a"] == SourceCounts(items=1000, pages=2)
    source.item()
    source.done()  # finishing always reports
    assert calls[-1]["a"] == SourceCounts(items=1001, pages=2, done=True)
    assert progress.items == 1001 and progress.pages == 2


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"type": "rest", "url": "ftp://x"}, "url must start with http:// or https://"),
        ({"type": "rest", "url": "http://x", "body": {"a": 1}}, "sent with method POST only"),
        ({"type": "rest", "url": "http://x", "pagination": {"style": "offset"}},
         "offset pagination needs 'size' and 'size_param'"),
        ({"type": "rest", "url": "http://x", "pagination": {"style": "cursor"}},
         "cursor pagination needs 'cursor_path'"),
        ({"type": "rest", "url": "http://x", "auth": {"type": "bearer"}},
         "auth type 'bearer' needs token_env"),
        ({"type": "rest", "url": "http://x",
          "auth": {"type": "oauth2_client_credentials", "client_id_env": "A"}},
         "needs token_url, client_secret_env"),
        ({"type": "rest", "url": "http://x", "auth": {"type": "bearer", "token_env": "a-b"}},
         "String should match pattern"),
        ({"type": "csv", "path": "a.csv", "headers": {"a": "b"}},
         "'headers' and 'auth' apply to a 'url' only"),
        ({"type": "xml", "path": "a.xml", "record_path": "a/b", "method": "POST"},
         "'method' and 'body' apply to a 'url' only"),
        ({"type": "xml", "url": "http://x", "record_path": "a//b"}, "String should match"),
        ({"type": "sql", "url": "db2://x/db", "query": "SELECT 1"},
         "url must start with one of postgresql://"),
    ],
)  # fmt: skip
def test_config_rules(source: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        JobDefinition.model_validate(
            {
                "name": "j",
                "datasources": [{"name": "s", **source}],
                "collection": {"type": "normal", "name": "c"},
            }
        )
    assert expected in str(info.value)


def test_runtime_from_settings() -> None:
    settings = load_settings(
        {
            "SLURP_SLURPER_MODULES": "examples,acme.jobs",
            "SLURP_HTTP_TIMEOUT_S": "7",
            "SLURP_HTTP_RETRIES": "1",
        }
    )
    runtime = Runtime.from_settings(settings)
    assert runtime.policy.slurper_modules == ("examples", "acme.jobs")
    assert runtime.http_timeout_s == 7.0
    assert runtime.backoff().retries == 1 and runtime.backoff(4).retries == 4
    assert runtime.collections is None
