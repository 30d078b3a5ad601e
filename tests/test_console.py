"""The web console over HTTP against a real uvicorn server, MongoDB-wire server and
Redis: sign-in and sessions, CSRF, ACLs (by page and by forged request), masking,
every page's content, actions and their failures. (A real browser drives it in
test_console_browser.py.) Runs in the history come from the real ``Runner``."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from api_harness import PASSWORDS, fresh_store, make_config, running_api

from api.console.actions import ParamsError, parse_params
from api.console.chart import runs_chart
from api.console.cronwords import describe
from api.console.views import attempts, job_row, progress_rows, record_table
from api.server import ApiServer
from contracts.base import utcnow
from contracts.events import JobFailed, JobStarted
from contracts.jobfile import parse_jobs
from contracts.jobs import JobDefinition
from contracts.messages import RunJob
from contracts.publish import queue_keys
from slurp.settings import Settings
from storage.history import History
from storage.jobs import JobRegistry
from workers.errors import RunFailed
from workers.local import local_runner

JOBS = """
jobs:
  - name: users
    description: Users, upserted by id.
    datasources:
      - name: users
        type: inline
        records:
          - {id: 1, name: Leanne, role: admin}
          - {id: 2, name: Ervin, role: user, address: {city: Gwenborough, geo: [1.5, 2]}}
    slurper: examples.slurpers:drop_admins
    schedule: {cron: "0 4 * * 1-5", timezone: Europe/Zurich}
    collection: {type: upserted, name: users, upsert_key: id}
  - name: cities
    datasources:
      - {name: cities, type: inline, records: [{name: Zurich}, {name: Basel}]}
    collection: {type: versioned, name: cities, keep_versions: 2}
  - name: broken
    datasources:
      - {name: rows, type: inline, records: [{no_id: 1}]}
    collection: {type: upserted, name: users_broken, upsert_key: id}
  - name: feed
    datasources:
      - name: feed
        type: rest
        url: "http://127.0.0.1:9/feed?region=eu-zone-7"
        params: {tenant: tenant-secret-42}
        headers: {X-Trace: trace-abc-123, Authorization: "Bearer ${env.FEED_TOKEN}"}
    collection: {type: normal, name: feed}
  - name: counter
    datasources:
      - {name: rows, type: inline, records: [{n: 1}]}
    collection: {type: accumulative, name: counter}
  - name: internal
    datasources:
      - {name: rows, type: inline, records: [{id: 1, secret: internal-data}]}
    paused: true
    collection: {type: normal, name: internal}
"""


@pytest.fixture(scope="module")
def env(mongo_url: str, redis_url: str) -> Iterator[dict[str, Any]]:
    """Jobs with real runs in their history, an API + console with a Redis queue."""
    with fresh_store(mongo_url) as store:
        registry = JobRegistry(store)
        for definition in parse_jobs(JOBS):
            registry.put(definition)
        settings = Settings.model_validate({"mongo_url": mongo_url, "mongo_db": store.db.name})
        runner = local_runner(settings, store, can_retry=False)
        runs: dict[str, list[str]] = {}
        for job, times in (("users", 2), ("cities", 3), ("broken", 1), ("internal", 1)):
            for _ in range(times):
                run = RunJob(job=job, requested_by="test")
                with contextlib.suppress(RunFailed):
                    runner.handle(run.model_dump(mode="json"), attempt=1)
                runs.setdefault(job, []).append(run.run_id)
        client = redis.Redis.from_url(redis_url)
        queue = f"q_{uuid.uuid4().hex[:8]}"
        with running_api(store, client, queue) as server:
            yield {
            "store": store, "server": server, "redis": client, "queue": queue, "runs": runs,
            "runner": runner,
        }  # fmt: skip
        client.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:2000]
    return found.group(1)


def sign_in(server: ApiServer, username: str, password: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30.0)
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={
            "csrf": csrf_of(form.text),
            "username": username,
            "password": password or PASSWORDS[username],
            "next": "/",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return client


@pytest.fixture
def admin(env: dict[str, Any]) -> Iterator[httpx.Client]:
    client = sign_in(env["server"], "admin")
    yield client
    client.close()


@pytest.fixture
def narrow(env: dict[str, Any]) -> Iterator[httpx.Client]:
    """A reader whose ACL covers the 'users' collection only."""
    client = sign_in(env["server"], "narrow")
    yield client
    client.close()


def queued(env: dict[str, Any]) -> int:
    return int(env["redis"].llen(queue_keys(env["queue"]).queue))


# -- sign-in, sessions, CSRF -----------------------------------------------------------


def test_pages_need_a_session(env: dict[str, Any]) -> None:
    with httpx.Client(base_url=env["server"].url) as client:
        for path in ("/", "/jobs/users", "/collections/users", "/runs/x"):
            answer = client.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login?next=")
        assert client.get("/jobs/users").headers["location"] == "/login?next=/jobs/users"
        assert client.post("/jobs/users/run", data={}).headers["location"] == "/login?next=/"
        assert client.get("/static/console.css").status_code == 200  # vendored, public
        assert client.get("/static/nope.css").status_code == 404


def test_login_form_failures_and_cookie_flags(env: dict[str, Any]) -> None:
    server = env["server"]
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login?next=/jobs/users")
        assert page.status_code == 200 and 'for="username"' in page.text
        token = csrf_of(page.text)
        login_cookie = page.headers["set-cookie"]
        assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie
        data = {"csrf": token, "username": "admin", "password": "wrong", "next": "/jobs/users"}
        wrong = client.post("/login", data=data)
        assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
        unknown = client.post("/login", data={**data, "username": "ghost"})
        assert unknown.status_code == 401 and "Wrong username or password." in unknown.text
        forged = client.post("/login", data={**data, "csrf": "forged"})
        assert forged.status_code == 403 and "security token" in forged.text
        good = client.post(
            "/login", data={**data, "csrf": csrf_of(unknown.text), "password": PASSWORDS["admin"]}
        )
        assert good.status_code == 303 and good.headers["location"] == "/jobs/users"
        session = next(
            c for c in good.headers.get_list("set-cookie") if c.startswith("slurp_session=")
        )
        assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
        assert "Secure" not in session  # plain HTTP here
        assert client.get("/jobs/users").status_code == 200
    # No open redirect.
    with httpx.Client(base_url=server.url) as client:
        token = csrf_of(client.get("/login").text)
        away = client.post(
            "/login",
            data={"csrf": token, "username": "reader", "password": PASSWORDS["reader"],
                  "next": "//evil.example/x"},
        )  # fmt: skip
        assert away.headers["location"] == "/"


def test_session_cookie_is_secure_over_https(env: dict[str, Any]) -> None:
    config = make_config(trusted_proxies=("127.0.0.1",))
    with ApiServer(config, env["store"]) as server, httpx.Client(base_url=server.url) as client:
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.7"}
        page = client.get("/login", headers=https)
        client.cookies.set("slurp_login_csrf", csrf_of(page.text))  # a Secure cookie
        answer = client.post(
            "/login",
            headers=https,
            data={"csrf": csrf_of(page.text), "username": "admin", "password": PASSWORDS["admin"]},
        )
        assert answer.status_code == 303, answer.text
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("slurp_session=") and "Secure" in cookie


def test_logout_ends_the_session_everywhere(env: dict[str, Any]) -> None:
    client = sign_in(env["server"], "reader")
    cookie = client.cookies["slurp_session"]
    page = client.get("/")
    assert client.post("/logout", data={}).status_code == 403  # CSRF on logout too
    out = client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    with httpx.Client(base_url=env["server"].url, cookies={"slurp_session": cookie}) as copy:
        assert copy.get("/").status_code == 303  # the copied cookie died with the session
    client.close()


def test_forms_are_bounded(admin: httpx.Client) -> None:
    page = admin.get("/jobs/users")
    big = admin.post(
        "/jobs/users/run", data={"csrf": csrf_of(page.text), "params": "x=" + "y" * 20_000}
    )
    assert big.status_code == 413
    wrong_type = admin.post("/jobs/users/pause", json={"csrf": csrf_of(page.text)})
    assert wrong_type.status_code == 400 and "expected a form" in wrong_type.text


# -- pages --------------------------------------------------------------------------


def test_jobs_list(env: dict[str, Any], admin: httpx.Client) -> None:
    page = admin.get("/")
    assert page.status_code == 200
    headers = page.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    html = page.text
    for name in ("users", "cities", "broken", "feed", "internal"):
        assert f'href="/jobs/{name}"' in html
    assert "at 04:00, on Monday to Friday" in html and "<code>0 4 * * 1-5</code>" in html
    assert "Europe/Zurich" in html and re.search(r"\d{4}-\d\d-\d\d 04:00 CES?T", html)
    assert re.search(r'<tr class="failing\s*"[^>]*data-search="broken', html)
    assert re.search(r'<tr class="\s*paused"[^>]*data-search="internal', html)
    assert "1 failing" in html and "1 paused" in html
    assert "manual only" in html and "never run" in html
    filtered = admin.get("/", params={"q": "CITIES"}).text
    assert 'href="/jobs/cities"' in filtered and 'href="/jobs/users"' not in filtered
    assert "No job matches" in admin.get("/", params={"q": "zzz"}).text


def test_job_page_masks_like_the_api_and_shows_history(
    env: dict[str, Any], admin: httpx.Client
) -> None:
    feed = admin.get("/jobs/feed").text
    for secret in ("tenant-secret-42", "trace-abc-123", "eu-zone-7"):
        assert secret not in feed
    assert "***" in feed and "${env.FEED_TOKEN}" in feed
    users = admin.get("/jobs/users").text
    assert 'id="run-now"' in users and 'id="pause"' in users
    assert '<svg class="chart"' in users and "Duration" in users and "Records written" in users
    for run_id in env["runs"]["users"]:
        assert f'href="/runs/{run_id}"' in users
    broken = admin.get("/jobs/broken").text
    assert "upsert key &#39;id&#39; is missing" in broken
    assert 'class="bar bad"' in broken
    assert admin.get("/jobs/nope").status_code == 404
    assert admin.get("/jobs/users", params={"page": 0}).status_code == 400
    assert "No runs on this page." in admin.get("/jobs/users", params={"page": 5}).text


def test_history_is_paged(env: dict[str, Any], admin: httpx.Client) -> None:
    for _ in range(25):
        env["runner"].handle(RunJob(job="counter").model_dump(mode="json"), attempt=1)
    first = admin.get("/jobs/counter").text
    assert first.count('<tr class="ok">') == 20 and 'rel="next"' in first
    second = admin.get("/jobs/counter", params={"page": 2}).text
    assert second.count('<tr class="ok">') == 5 and 'rel="prev"' in second
    assert 'rel="next"' not in second
    assert admin.get("/jobs/counter").text.count('class="bar ok"') == 2 * 25  # 2 panels


def test_run_page_attempts_events_and_live_part(env: dict[str, Any], admin: httpx.Client) -> None:
    broken = env["runs"]["broken"][0]
    page = admin.get(f"/runs/{broken}")
    assert page.status_code == 200
    html = page.text
    assert '<span class="badge bad">failed</span>' in html
    assert "upsert key &#39;id&#39; is missing" in html
    assert re.search(r"<code>local:\d+</code>", html)  # the attempt's worker
    assert html.index(">started<") < html.index(">failed</span> <time")
    assert 'data-live-url="/runs/' in html and 'data-active="false"' in html
    live = admin.get(f"/runs/{broken}", params={"part": "live"})
    assert live.status_code == 200 and "<html" not in live.text and "Attempts" in live.text
    ok = admin.get(f"/runs/{env['runs']['cities'][-1]}").text
    assert '<span class="badge ok">succeeded</span>' in ok and 'id="records-written">2<' in ok
    assert 'href="/collections/cities?version=3"' in ok
    missing = admin.get("/runs/no-such-run")
    assert missing.status_code == 404 and "a queued run appears once a worker starts it" in (
        missing.text
    )


def test_collection_pages(env: dict[str, Any], admin: httpx.Client) -> None:
    listing = admin.get("/collections").text
    assert 'href="/collections/cities"' in listing and "versioned" in listing
    cities = admin.get("/collections/cities").text
    assert "keeps 2 versions" in cities
    assert 'href="/collections/cities?version=3"' in cities
    assert 'href="/collections/cities?version=2"' in cities
    assert '?version=1"' not in cities  # dropped: only 2 kept
    assert f"{env['server'].url}/api/collections/cities</code>" in cities
    for run_id in env["runs"]["cities"][-2:]:
        assert f'href="/runs/{run_id}"' in cities
    version = admin.get("/collections/cities", params={"version": 2}).text
    assert "Records of version 2" in version and "/api/collections/cities/versions/2" in version
    assert "<td>Zurich</td>" in version
    assert admin.get("/collections/cities", params={"version": 1}).status_code == 404
    users = admin.get("/collections/users").text
    assert "keeps no versions" in admin.get("/collections/users?version=1").text
    assert '{"city":"Gwenborough","geo":[1.5,2]}' in users.replace("&#34;", '"')
    assert admin.get("/collections/nope").status_code == 404


def test_collection_records_are_paged(env: dict[str, Any], admin: httpx.Client) -> None:
    records = [{"id": i, "tags": ["a", "b"]} for i in range(120)]
    job = {
        "name": "many",
        "datasources": [{"name": "rows", "type": "inline", "records": records}],
        "collection": {"type": "normal", "name": "many"},
    }
    JobRegistry(env["store"]).put(JobDefinition.model_validate(job))
    env["runner"].handle(RunJob(job="many").model_dump(mode="json"), attempt=1)
    first = admin.get("/collections/many").text
    assert "Records 1 to 50 of 120" in first and "Page 1 of 3" in first
    assert '<td>["a","b"]</td>' in first.replace("&#34;", '"')
    last = admin.get("/collections/many", params={"page": 3}).text
    assert "Records 101 to 120 of 120" in last and 'rel="next"' not in last


# -- actions ------------------------------------------------------------------------


def test_run_now_queues_a_manual_run(env: dict[str, Any], admin: httpx.Client) -> None:
    page = admin.get("/jobs/users")
    before = queued(env)
    answer = admin.post(
        "/jobs/users/run", data={"csrf": csrf_of(page.text), "params": "since=2024-01-01\n\n"}
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert re.fullmatch(r"/runs/[0-9a-f-]{36}\?job=users", location)
    assert queued(env) == before + 1
    run_page = admin.get(location)
    assert run_page.status_code == 200
    assert '<span class="badge muted">queued</span>' in run_page.text
    assert 'data-active="true"' in run_page.text  # the page follows it


def test_bad_params_and_no_queue_are_messages_on_the_page(
    env: dict[str, Any], admin: httpx.Client
) -> None:
    page = admin.get("/jobs/users")
    before = queued(env)
    bad = admin.post("/jobs/users/run", data={"csrf": csrf_of(page.text), "params": "oops"})
    assert bad.status_code == 400
    assert "Not run: line 1 is not key=value: &#39;oops&#39;." in bad.text
    assert ">oops</textarea>" in bad.text and queued(env) == before
    with running_api(env["store"]) as no_queue:  # no Redis: no queue
        client = sign_in(no_queue, "admin")
        page = client.get("/jobs/users")
        answer = client.post("/jobs/users/run", data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 503
        assert 'role="alert">Not run: runs cannot be queued' in answer.text
        client.close()


def test_pause_and_resume(env: dict[str, Any], admin: httpx.Client) -> None:
    registry = JobRegistry(env["store"])
    token = csrf_of(admin.get("/jobs/cities").text)
    paused = admin.post("/jobs/cities/pause", data={"csrf": token})
    assert paused.status_code == 303 and paused.headers["location"] == "/jobs/cities?done=paused"
    assert registry.require("cities").definition.paused is True
    page = admin.get(paused.headers["location"]).text
    assert "Paused: no scheduled runs" in page and 'id="resume"' in page
    resumed = admin.post("/jobs/cities/resume", data={"csrf": token})
    assert resumed.headers["location"] == "/jobs/cities?done=resumed"
    assert registry.require("cities").definition.paused is False
    assert admin.post("/jobs/nope/pause", data={"csrf": token}).status_code == 404


def test_forged_posts_change_nothing(env: dict[str, Any], admin: httpx.Client) -> None:
    registry = JobRegistry(env["store"])
    before = queued(env)
    for data in ({}, {"csrf": ""}, {"csrf": "guess"}):
        answer = admin.post("/jobs/users/run", data=data)
        assert answer.status_code == 403 and "security token" in answer.text
        assert admin.post("/jobs/users/pause", data=data).status_code == 403
    assert queued(env) == before and registry.require("users").definition.paused is False
    # Another user's token does not work either.
    other = sign_in(env["server"], "reader")
    foreign = csrf_of(other.get("/").text)
    assert admin.post("/jobs/users/run", data={"csrf": foreign}).status_code == 403
    other.close()


# -- readers and ACLs ----------------------------------------------------------------


def test_readers_see_only_their_acl(env: dict[str, Any], narrow: httpx.Client) -> None:
    listing = narrow.get("/").text
    assert 'href="/jobs/users"' in listing
    for hidden in ("cities", "broken", "feed", "internal"):
        assert f'href="/jobs/{hidden}"' not in listing
    page = narrow.get("/jobs/users").text
    assert 'id="run-now"' not in page and 'id="pause"' not in page and "Actions" not in page
    assert narrow.get("/jobs/internal").status_code == 404
    assert narrow.get(f"/runs/{env['runs']['internal'][0]}").status_code == 404
    assert narrow.get(f"/runs/{env['runs']['internal'][0]}?part=live").status_code == 404
    denied = narrow.get("/collections/internal")
    assert denied.status_code == 403 and "internal-data" not in denied.text
    assert 'href="/collections/cities"' not in narrow.get("/collections").text
    assert narrow.get("/collections/users").status_code == 200
    # Readers get the reader's form of a definition (as from the API).
    reader = sign_in(env["server"], "reader")
    feed = reader.get("/jobs/feed").text
    assert "X-Trace" not in feed and "tenant" not in feed and "region" not in feed
    reader.close()


def test_readers_cannot_act_even_with_their_token(
    env: dict[str, Any], narrow: httpx.Client
) -> None:
    registry = JobRegistry(env["store"])
    token = csrf_of(narrow.get("/").text)
    before = queued(env)
    run = narrow.post("/jobs/users/run", data={"csrf": token})
    assert run.status_code == 403 and "Only admins can run" in run.text
    assert narrow.post("/jobs/users/pause", data={"csrf": token}).status_code == 403
    assert narrow.post("/jobs/internal/resume", data={"csrf": token}).status_code == 404
    assert narrow.post("/jobs/internal/run", data={}).status_code == 403  # CSRF first
    assert queued(env) == before
    assert registry.require("users").definition.paused is False
    assert registry.require("internal").definition.paused is True


# -- what the pages compute (pure) ----------------------------------------------------

CRON_WORDS = [
    ("* * * * *", "every minute"),
    ("*/15 * * * *", "every 15 minutes"),
    ("0 * * * *", "every hour"),
    ("30 * * * *", "every hour at minute 30"),
    ("0 4 * * *", "every day at 04:00"),
    ("0 9,17 * * *", "every day at 09:00 and 17:00"),
    ("0 4 * * 1-5", "at 04:00, on Monday to Friday"),
    ("5 4 * * sun", "at 04:05, on Sunday"),
    ("0 0 1 * *", "at 00:00, on day 1 of the month"),
    ("0 0 1 1 *", "at 00:00, on day 1 of the month, in January"),
    ("0 0 * 1-3 *", "every day at 00:00, in January to March"),
    ("0 */2 * * *", "every 2 hours"),
    ("30 */2 * * *", "every 2 hours at minute 30"),
    ("0,30 9-17 * * MON-FRI", "at minutes 0 and 30 past hours 9 to 17, on Monday to Friday"),
    ("*/5 9-17 * * *", "every 5 minutes during hours 9 to 17"),
    ("15 10 1,15 * 1", "at 10:15, on day 1 and 15 of the month or on Monday"),
    ("0 0 */2 * *", "at 00:00, every 2 days"),
    ("not cron", "not cron"),
]


@pytest.mark.parametrize(("expression", "words"), CRON_WORDS)
def test_cron_in_words(expression: str, words: str) -> None:
    assert describe(expression) == words


def test_params_lines() -> None:
    assert parse_params("a=1\n\n b = two=2 \n") == {"a": "1", "b": "two=2"}
    for bad in ("novalue", "=1", "$where=1", "\n".join(f"k{i}=1" for i in range(51))):
        with pytest.raises(ParamsError):
            parse_params(bad)


def test_attempts_come_from_events_then_the_attempt_log() -> None:
    events = [
        JobStarted(run_id="r", job="j", attempt=1, worker="host:1"),
        JobFailed(run_id="r", job="j", attempt=1, error_type="Boom", message="no", will_retry=True),
        JobStarted(run_id="r", job="j", attempt=2, worker="host:2"),
    ]
    log = {
        "2": {"status": "abandoned", "worker": "other", "error": {"type": "Lost", "message": "x"}},
        "3": {"status": "something-new", "worker": "host:3", "started_at": None},
        "junk": "ignored",
    }
    found = attempts(events, {"attempt_log": log})
    assert [(a.number, a.status, a.worker) for a in found] == [
        (1, "failed", "host:1"), (2, "abandoned", "host:2"), (3, "something-new", "host:3"),
    ]  # fmt: skip
    assert found[0].will_retry and found[0].error == "Boom: no" and found[1].error == "Lost: x"


def test_progress_rows_and_record_cells() -> None:
    sources, other = progress_rows({"a.items": 5, "a.pages": 1, "b.c.items": 2, "records": 9})
    assert sources == [
        {"name": "a", "items": 5, "pages": 1}, {"name": "b.c", "items": 2, "pages": 0},
    ]  # fmt: skip
    assert other == {"records": 9}
    columns, rows = record_table([{"a": 1, "n": {"x": [1, "é"]}}, {"b": None}])
    assert columns == ["a", "n", "b"]
    assert rows == [["1", '{"x":[1,"é"]}', ""], ["", "", "null"]]


def test_chart_escapes_and_marks_status() -> None:
    runs = [
        {"_id": "<r1>", "status": "failed", "duration_s": 2.0, "records_written": 0},
        {"_id": "r2", "status": "weird&", "duration_s": 1.0, "records_written": 10},
    ]
    svg = str(runs_chart(runs, lambda run_id: f"/runs/{run_id}"))
    assert "<r1>" not in svg and "&lt;r1&gt;" in svg and "weird&amp;" in svg
    assert 'class="bar bad"' in svg and 'class="bar muted"' in svg
    assert 'role="img"' in svg and "1 failed" in svg
    assert str(runs_chart([], str)) == ""


def test_job_row_of_a_paused_job_has_no_next_fire(env: dict[str, Any]) -> None:
    record = JobRegistry(env["store"]).require("internal")
    row = job_row(record, History(env["store"]).last_runs("internal", 1)[0], utcnow())
    assert row.paused and row.next_fire is None and row.words is None


def test_run_page_shows_who_asked_when_and_with_what(
    env: dict[str, Any], admin: httpx.Client
) -> None:
    run = RunJob(job="internal", requested_by="billing-service", params={"day": "2026-03-01"})
    env["runner"].handle(run.model_dump(mode="json"), attempt=1)
    html = admin.get(f"/runs/{run.run_id}").text
    assert 'id="requested-by">billing-service<' in html
    shown = re.search(r'id="requested-at"><time datetime="([^"]+)"', html)
    assert shown is not None  # MongoDB keeps milliseconds
    assert shown.group(1)[:23] == run.requested_at.isoformat()[:23]
    assert '<dd id="run-params"><code>{"day": "2026-03-01"}</code>' in html
    plain = admin.get(f"/runs/{env['runs']['internal'][0]}").text
    assert 'id="requested-by">test<' in plain
    assert '<dd id="run-params"><span class="muted">none</span>' in plain
