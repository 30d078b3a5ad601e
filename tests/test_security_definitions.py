"""The trust boundary of job definitions: job authors are trusted with data, not with
the host. Files only under the roots, environment variables only from the allow-list
(never ``SLURP_*``), outbound HTTP only where the egress rules allow, no literal
credentials, every view of a definition masked, slurpers refused at validation.

Everything runs against real things: files and symlinks on disk, a real HTTP server
on 127.0.0.1, the ``slurp`` console script as a subprocess, the API on uvicorn."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_harness import client_for, running_api
from pydantic import ValidationError

from contracts import JobFileError, parse_jobs
from contracts.jobs import JobDefinition
from contracts.masking import masked_definition, scrub_urls
from datasources import (
    FetchError,
    NotAllowedError,
    Progress,
    RunContext,
    SlurperNotAllowedError,
    build,
    fetch,
)
from datasources.errors import DatasourceError
from datasources.policy import LOOPBACK_NETWORKS, JobPolicy
from slurp.errors import SettingsError
from slurp.settings import load_settings
from storage.jobs import JobRegistry
from storage.store import Store
from tests.datasource_servers import HttpServer, Reply, fast_runtime, make_job, records_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer().start()
    yield http
    http.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "ok.csv").write_text("a\n1\n")
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "private.csv").write_text("secret\nhost-only-data\n")
    return folder


def csv_job(path: str, **extra: Any) -> JobDefinition:
    return make_job([{"name": "src", "type": "csv", "path": path}], **extra)


def problems(policy: JobPolicy, job: JobDefinition) -> str:
    return "\n".join(str(p) for p in policy.check(job))


def runtime_for(policy: JobPolicy, **overrides: Any) -> Any:
    return fast_runtime(policy=policy, **overrides)


def slurp_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("SLURP_")}
    return subprocess.run(
        [sys.executable, "-m", "slurp", *args], env={**base, **(env or {})}, cwd=cwd,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# --- files ---------------------------------------------------------------------------


def test_etc_shadow_is_refused_at_validation_and_at_run_time(root: Path) -> None:
    policy = JobPolicy(file_roots=(root,))
    job = csv_job("/etc/shadow")
    found = problems(policy, job)
    assert "datasources.0.path" in found and "/etc/shadow" in found
    assert "SLURP_FILE_ROOTS" in found
    with pytest.raises(NotAllowedError) as info:
        records_of(job, runtime_for(policy))
    assert "/etc/shadow" in str(info.value) and "SLURP_FILE_ROOTS" in str(info.value)
    assert not info.value.retryable


def test_a_templated_path_is_checked_after_rendering(root: Path) -> None:
    policy = JobPolicy(file_roots=(root,))
    job = csv_job("${params.file}")
    assert problems(policy, job) == ""  # nothing to know before the run
    ctx = RunContext(job="job", run_id="r", params={"file": "/etc/shadow"})
    with pytest.raises(NotAllowedError, match="/etc/shadow"):
        records_of(job, runtime_for(policy), ctx)
    inside = RunContext(job="job", run_id="r", params={"file": str(root / "ok.csv")})
    assert records_of(job, runtime_for(policy), inside) == [{"a": "1"}]


def test_a_symlink_leading_out_of_a_root_is_refused_at_run_time(root: Path, outside: Path) -> None:
    (root / "link.csv").symlink_to(outside / "private.csv")
    (root / "dir").symlink_to(outside)
    policy = JobPolicy(file_roots=(root,))
    for path in (root / "link.csv", root / "dir" / "private.csv"):
        job = csv_job(str(path))
        assert problems(policy, job) == ""  # lexically inside: only the run can tell
        with pytest.raises(NotAllowedError) as info:
            records_of(job, runtime_for(policy))
        assert str(outside / "private.csv") in str(info.value)
        assert "SLURP_FILE_ROOTS" in str(info.value)
    # a symlink staying inside the root is fine
    (root / "alias.csv").symlink_to(root / "ok.csv")
    assert records_of(csv_job(str(root / "alias.csv")), runtime_for(policy)) == [{"a": "1"}]


@pytest.mark.parametrize("path", ["../outside/private.csv", "data/../../etc/passwd", "a/.."])
def test_dotdot_is_refused(root: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    policy = JobPolicy(file_roots=(root,))
    job = csv_job(path)
    assert "'..'" in problems(policy, job)
    with pytest.raises(NotAllowedError, match=r"'\.\.'"):
        records_of(job, runtime_for(policy))


def test_relative_paths_resolve_in_the_working_directory(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    policy = JobPolicy()  # default root: the working directory
    assert records_of(csv_job("ok.csv"), runtime_for(policy)) == [{"a": "1"}]


def test_sqlite_outside_the_roots_is_refused(root: Path, outside: Path) -> None:
    database = outside / "other.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.execute("INSERT INTO t VALUES ('host-only')")
    policy = JobPolicy(file_roots=(root,))

    def sql_job(url: str) -> JobDefinition:
        return make_job([{"name": "db", "type": "sql", "url": url, "query": "SELECT x FROM t"}])

    absolute = sql_job(f"sqlite:///{database}")
    assert "SLURP_FILE_ROOTS" in problems(policy, absolute)
    with pytest.raises(NotAllowedError, match=r"other\.db"):
        records_of(absolute, runtime_for(policy))
    (root / "linked.db").symlink_to(database)
    linked = sql_job(f"sqlite:///{root / 'linked.db'}")
    assert problems(policy, linked) == ""
    with pytest.raises(NotAllowedError, match="SLURP_FILE_ROOTS"):
        records_of(linked, runtime_for(policy))
    assert "'..'" in problems(policy, sql_job("sqlite:///../outside/other.db"))
    # inside a root it reads, and ATTACH cannot reach other files
    (root / "own.db").write_bytes(database.read_bytes())
    own = sql_job(f"sqlite:///{root / 'own.db'}")
    assert records_of(own, runtime_for(policy)) == [{"x": "host-only"}]
    attach = make_job(
        [{"name": "db", "type": "sql", "url": f"sqlite:///{root / 'own.db'}",
          "query": f"ATTACH DATABASE '{outside / 'created.db'}' AS o"}]
    )  # fmt: skip
    with pytest.raises(FetchError):
        records_of(attach, runtime_for(policy))
    assert not (outside / "created.db").exists()


def test_the_sources_themselves_guard_without_the_up_front_check(
    root: Path, server: HttpServer
) -> None:
    """``run_slurper`` checks a job before fetching; the sources check again on what
    they actually open, read and connect to (the real guard)."""
    server.route("/x", lambda r: Reply.json([]))
    policy = JobPolicy(file_roots=(root,), env_allow=("SLURP_*",))
    runtime = runtime_for(policy, environ={"SLURP_MONGO_URL": "mongodb://admin:pw@db"})
    ctx = RunContext(job="job", run_id="r")
    configs = [
        ({"type": "csv", "path": "/etc/shadow"}, "SLURP_FILE_ROOTS"),
        ({"type": "rest", "url": server.url("/x")}, "SLURP_HTTP_ALLOW_PRIVATE"),
        ({"type": "rest", "url": "https://api.example.org/",
          "headers": {"X-Leak": "${env.SLURP_MONGO_URL}"}}, "SLURP_"),
    ]  # fmt: skip
    for config, setting in configs:
        source = build(make_job([{"name": "s", **config}]).datasources[0], runtime)
        with pytest.raises(NotAllowedError, match=setting):
            list(fetch(source, ctx, Progress()))
    assert server.seen("/x") == []


# --- environment ---------------------------------------------------------------------


def test_slurp_variables_are_never_readable_even_when_allow_listed(server: HttpServer) -> None:
    server.route("/leak", lambda r: Reply.json([]))
    headers = {"X-Leak": "${env.SLURP_MONGO_URL} ${env.SLURP_REDIS_URL}"}
    job = make_job(
        [{"name": "api", "type": "rest", "url": server.url("/leak"), "headers": headers}]
    )
    policy = JobPolicy(
        env_allow=("SLURP_MONGO_URL", "SLURP_*", "slurp_redis_url"),
        http_allow_hosts=("*", *LOOPBACK_NETWORKS),
    )
    found = problems(policy, job)
    assert "SLURP_MONGO_URL" in found and "SLURP_REDIS_URL" in found
    environ = {"SLURP_MONGO_URL": "mongodb://admin:pw@db", "SLURP_REDIS_URL": "redis://r"}
    with pytest.raises(NotAllowedError, match="SLURP_"):
        records_of(job, runtime_for(policy, environ=environ))
    assert server.seen("/leak") == []  # nothing was sent anywhere


def test_only_allow_listed_variables_are_readable(server: HttpServer) -> None:
    server.route("/items", lambda r: Reply.json([{"key": r.headers.get("x-key")}]))
    source = {"name": "api", "type": "rest", "url": server.url("/items")}
    job = make_job([{**source, "headers": {"X-Key": "${env.MYAPP_KEY}"}}])
    environ = {"MYAPP_KEY": "k-1", "HOME": "/root"}
    denied = JobPolicy(http_allow_hosts=("*", *LOOPBACK_NETWORKS))
    found = problems(denied, job)
    assert "MYAPP_KEY" in found and "SLURP_JOB_ENV_ALLOW" in found
    with pytest.raises(NotAllowedError, match="SLURP_JOB_ENV_ALLOW"):
        records_of(job, runtime_for(denied, environ=environ))
    assert server.seen("/items") == []
    for allow in (("MYAPP_KEY",), ("MYAPP_*",)):
        allowed = JobPolicy(env_allow=allow, http_allow_hosts=("*", *LOOPBACK_NETWORKS))
        assert problems(allowed, job) == ""
        assert records_of(job, runtime_for(allowed, environ=environ)) == [{"key": "k-1"}]
    # the *_env fields of auth and sql are variables too
    home = make_job([{**source, "auth": {"type": "bearer", "token_env": "HOME"}}])
    assert "HOME" in problems(JobPolicy(env_allow=("MYAPP_*",)), home)


def test_env_in_urls_and_query_parameters_is_refused_at_validation() -> None:
    job = make_job(
        [{"name": "api", "type": "rest", "url": "https://api.example.org/?k=${env.KEY}",
          "params": {"key": "${env.KEY}"}}]
    )  # fmt: skip
    found = problems(JobPolicy(env_allow=("KEY",)), job)
    assert "datasources.0.url" in found and "datasources.0.params.key" in found
    assert "headers and bodies only" in found


# --- outbound HTTP -------------------------------------------------------------------


def test_loopback_is_refused_by_default_and_allowed_by_the_setting(server: HttpServer) -> None:
    server.route("/items", lambda r: Reply.json([{"n": 1}]))
    job = make_job([{"name": "api", "type": "rest", "url": server.url("/items")}])
    default = JobPolicy()
    assert "SLURP_HTTP_ALLOW_PRIVATE" in problems(default, job)
    with pytest.raises(NotAllowedError, match=r"127\.0\.0\.1"):
        records_of(job, runtime_for(default))
    assert server.seen("/items") == []
    for allowed in (
        JobPolicy(http_allow_private=True),
        JobPolicy(http_allow_hosts=("*", "127.0.0.0/8")),
        JobPolicy.from_settings(load_settings({"SLURP_HTTP_ALLOW_PRIVATE": "true"})),
    ):
        assert problems(allowed, job) == ""
        assert records_of(job, runtime_for(allowed)) == [{"n": 1}]


def test_names_are_resolved_and_every_address_checked_at_request_time(
    server: HttpServer,
) -> None:
    server.route("/items", lambda r: Reply.json([{"host": r.headers.get("host")}]))
    url = f"http://localhost:{server.port}/items"
    job = make_job([{"name": "api", "type": "rest", "url": url}])
    with pytest.raises(NotAllowedError, match=r"localhost.*(127\.0\.0\.1|::1)"):
        records_of(job, runtime_for(JobPolicy()))
    assert server.seen("/items") == []
    # allowed: the request goes to the checked address, with the name as Host
    allowed = JobPolicy(http_allow_hosts=("*", *LOOPBACK_NETWORKS))
    assert records_of(job, runtime_for(allowed)) == [{"host": f"localhost:{server.port}"}]


def test_an_allow_list_of_hosts_restricts_names(server: HttpServer) -> None:
    job = make_job([{"name": "api", "type": "rest", "url": "https://evil.example.net/x"}])
    policy = JobPolicy(http_allow_hosts=("api.example.org", "*.example.com"))
    assert "evil.example.net" in problems(policy, job)
    assert "SLURP_HTTP_ALLOW_HOSTS" in problems(policy, job)
    ok = make_job([{"name": "api", "type": "rest", "url": "https://eu.example.com/x"}])
    assert problems(policy, ok) == ""


def test_redirects_are_checked_too(server: HttpServer) -> None:
    target = f"http://127.0.0.2:{server.port}/inner"
    server.route("/jump", lambda r: Reply(302, headers={"Location": target}))
    server.route("/inner", lambda r: Reply.json([{"reached": True}]))
    job = make_job([{"name": "api", "type": "rest", "url": server.url("/jump")}])
    only_one = JobPolicy(http_allow_hosts=("127.0.0.1",))
    with pytest.raises(NotAllowedError, match=r"127\.0\.0\.2"):
        records_of(job, runtime_for(only_one))
    assert [r.path for r in server.requests] == ["/jump"]


def test_oauth_token_urls_are_checked() -> None:
    auth = {"type": "oauth2_client_credentials", "token_url": "http://169.254.169.254/token",
            "client_id_env": "CID", "client_secret_env": "CSECRET"}  # fmt: skip
    job = make_job(
        [{"name": "api", "type": "rest", "url": "https://api.example.org/", "auth": auth}]
    )
    found = problems(JobPolicy(env_allow=("CID", "CSECRET")), job)
    assert "datasources.0.auth.token_url" in found and "169.254.169.254" in found


# --- literal credentials -------------------------------------------------------------

JOB = """\
jobs:
  - name: leaky
    datasources:
      - {name: api, type: rest, url: "%s", headers: %s}
    collection: {type: normal, name: leaky}
"""


def file_problems(url: str = "https://api.example.org/x", headers: str = "{}") -> list[str]:
    with pytest.raises(JobFileError) as info:
        parse_jobs(JOB % (url, headers), source="jobs.yaml")
    return info.value.problems


def test_userinfo_in_a_url_is_refused_with_the_fix() -> None:
    (problem,) = file_problems(url="http://user:PASSWORD-123@api.example.org/x")
    assert problem.startswith("jobs.yaml:4: job 'leaky': datasources.0.url:")
    assert "${env." in problem and "auth" in problem
    assert "PASSWORD-123" not in problem


@pytest.mark.parametrize(
    "headers",
    [
        "{Authorization: 'Bearer abc-123-literal'}",
        "{X-Api-Key: abc-123-literal}",
        "{PRIVATE-TOKEN: abc-123-literal}",
        "{Cookie: 'session=abc-123-literal'}",
        "{Proxy-Authorization: 'Basic abc-123-literal'}",
        "{X-Client-Secret: '${params.secret}'}",
    ],
)
def test_literal_credential_headers_are_refused(headers: str) -> None:
    (problem,) = file_problems(headers=headers)
    assert "datasources.0.headers" in problem
    assert "${env.NAME}" in problem
    assert "abc-123-literal" not in problem


@pytest.mark.parametrize(
    "headers",
    [
        "{Authorization: 'Bearer ${env.API_TOKEN}'}",
        "{X-Api-Key: '${env.API_KEY}'}",
        "{Cookie: 'session=${env.SESSION}; lang=${env.LANG_CODE}'}",
        "{Content-Type: text/csv, Accept: application/json, X-Request-Id: '${run_id}'}",
    ],
)
def test_credential_headers_from_env_references_are_fine(headers: str) -> None:
    (job,) = parse_jobs(JOB % ("https://api.example.org/x", headers))
    assert job.datasources[0].headers  # type: ignore[union-attr]


def test_sql_passwords_come_from_the_environment() -> None:
    def sql(url: str) -> dict[str, Any]:
        return {"name": "db", "type": "sql", "url": url, "query": "SELECT 1"}

    with pytest.raises(ValidationError) as info:
        make_job([sql("postgresql://reporter:hunter2-literal@db.internal/shop")])
    assert (
        "${env." in str(info.value)
        and "hunter2-literal" not in str(info.value).split("input_value")[0]
    )
    job = make_job([sql("postgresql://reporter:${env.SHOP_DB_PASSWORD}@db.internal/shop")])
    assert "SHOP_DB_PASSWORD" in problems(JobPolicy(), job)
    assert problems(JobPolicy(env_allow=("SHOP_*",)), job) == ""
    token_url = {"type": "bearer", "token_env": "T"}
    with pytest.raises(ValidationError, match="userinfo"):
        make_job(
            [{"name": "api", "type": "rest", "url": "https://tok-123@api.example.org/",
              "auth": token_url}]
        )  # fmt: skip


# --- slurpers ------------------------------------------------------------------------


def test_slurp_validate_refuses_a_slurper_outside_the_allow_list(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  - name: pwn\n"
        "    datasources: [{name: a, type: inline, records: [{cmd: id}]}]\n"
        "    slurper: os:system\n"
        "    collection: {type: normal, name: pwn}\n"
    )
    result = slurp_cli("validate", "jobs.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "job 'pwn': slurper:" in result.stderr and "'os:system'" in result.stderr
    assert "SLURP_SLURPER_MODULES" in result.stderr
    allowed = slurp_cli("validate", "jobs.yaml", cwd=tmp_path, env={"SLURP_SLURPER_MODULES": "os"})
    assert allowed.returncode == 0, allowed.stderr
    # jobs apply refuses before touching the database (none is configured here)
    applied = slurp_cli("jobs", "apply", "jobs.yaml", cwd=tmp_path)
    assert applied.returncode == 1 and "SLURP_SLURPER_MODULES" in applied.stderr
    assert "nothing was applied" in applied.stderr


def test_slurp_validate_refuses_files_outside_the_roots(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  - name: shadow\n"
        "    datasources: [{name: a, type: csv, path: /etc/shadow}]\n"
        "    collection: {type: normal, name: shadow}\n"
    )
    result = slurp_cli("validate", "jobs.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "job 'shadow': datasources.0.path: '/etc/shadow'" in result.stderr
    assert "SLURP_FILE_ROOTS" in result.stderr
    with_root = slurp_cli("validate", "jobs.yaml", cwd=tmp_path, env={"SLURP_FILE_ROOTS": "/etc"})
    assert with_root.returncode == 0, with_root.stderr


def test_the_runtime_refuses_a_disallowed_slurper_before_importing_it() -> None:
    job = make_job([{"name": "a", "type": "inline", "records": []}], slurper="os:system")
    with pytest.raises(SlurperNotAllowedError, match="SLURP_SLURPER_MODULES"):
        records_of(job, runtime_for(JobPolicy()))


# --- settings ------------------------------------------------------------------------


def test_settings_lists_and_their_validation(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "SLURP_FILE_ROOTS": f"{tmp_path}, /srv/drop",
            "SLURP_JOB_ENV_ALLOW": '["MYAPP_*", "SHOP_DB_PASSWORD"]',
            "SLURP_HTTP_ALLOW_HOSTS": "api.example.org,*.example.com,10.1.0.0/16",
        }
    )
    assert settings.file_roots == [tmp_path, Path("/srv/drop")]
    assert settings.job_env_allow == ["MYAPP_*", "SHOP_DB_PASSWORD"]
    assert settings.http_allow_hosts == ["api.example.org", "*.example.com", "10.1.0.0/16"]
    assert settings.http_allow_private is False
    defaults = load_settings({})
    assert defaults.file_roots == [Path(".")] and defaults.job_env_allow == []
    assert defaults.http_allow_hosts == ["*"]
    policy = JobPolicy.from_settings(settings)
    assert policy.file_roots == (tmp_path.resolve(), Path("/srv/drop"))
    with pytest.raises(SettingsError) as info:
        load_settings({"SLURP_JOB_ENV_ALLOW": "*", "SLURP_HTTP_ALLOW_HOSTS": "10.0.0.0/33"})
    assert "SLURP_JOB_ENV_ALLOW" in str(info.value) and "SLURP_HTTP_ALLOW_HOSTS" in str(info.value)


# --- masking -------------------------------------------------------------------------

MASKED_JOB: dict[str, Any] = {
    "name": "masked",
    "datasources": [
        {
            "name": "api",
            "type": "rest",
            "url": "https://api.example.org/v1/items?api_key=qwerty-123&page=1",
            "params": {"since": "${yesterday}", "apikey": "literal-abc"},
            "headers": {
                "Authorization": "Bearer ${env.API_TOKEN}",
                "X-Trace": "trace-literal-77",
                "Accept": "application/json",
            },
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "https://auth.example.org/token?aud=xyz-secret",
                "client_id_env": "CID",
                "client_secret_env": "CSECRET",
            },
        },
        {
            "name": "db",
            "type": "sql",
            "url": "postgresql://reporter:${env.DB_PW}@db/shop",
            "query": "SELECT 1",
        },
        {
            "name": "soap",
            "type": "xml",
            "url": "https://soap.example.org/s",
            "method": "POST",
            "record_path": "r",
            "body": "<Login><password>pw-literal-9</password></Login>",
        },
    ],
    "slurper": "examples.slurpers:drop_admins",
    "collection": {"type": "normal", "name": "masked"},
}
LITERALS = ("qwerty-123", "literal-abc", "trace-literal-77", "xyz-secret", "pw-literal-9")


def test_masked_definition_for_admins_and_readers() -> None:
    job = JobDefinition.model_validate(MASKED_JOB)
    admin = masked_definition(job)
    text = json.dumps(admin)
    assert not any(secret in text for secret in LITERALS), text
    api, db, soap = admin["datasources"]
    assert api["url"] == "https://api.example.org/v1/items?api_key=***&page=***"
    assert api["headers"] == {
        "Authorization": "Bearer ${env.API_TOKEN}",
        "X-Trace": "***",
        "Accept": "application/json",
    }
    assert api["params"] == {"since": "${yesterday}", "apikey": "***"}
    assert api["auth"]["client_secret_env"] == "CSECRET"
    assert db["url"] == "postgresql://reporter:${env.DB_PW}@db/shop"
    reader = masked_definition(job, reader=True)
    api, db, soap = reader["datasources"]
    assert not {"headers", "auth", "params", "body"} & (set(api) | set(soap))
    assert api["url"] == "https://api.example.org/v1/items"
    assert "DB_PW" not in db["url"] and "reporter" in db["url"]
    assert not any(secret in json.dumps(reader) for secret in LITERALS)


def test_error_messages_never_carry_userinfo_or_query_secrets() -> None:
    text = "GET http://ann:s3cr3t-pw@api.example.org/x?page=2&access_token=tok-999: HTTP 500"
    scrubbed = scrub_urls(text)
    assert scrubbed == "GET http://***@api.example.org/x?page=2&access_token=***: HTTP 500"
    error = FetchError(text, source="api")
    assert "s3cr3t-pw" not in str(error) and "tok-999" not in str(error)
    assert isinstance(error, DatasourceError)


def test_a_failed_request_does_not_report_query_secrets(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.url("/down") + "?api_key=qk-literal-42&page=1"
    server.route("/down", lambda r: Reply(503, b"no"))
    job = make_job([{"name": "api", "type": "rest", "url": url, "max_retries": 1}])
    with caplog.at_level(logging.DEBUG), pytest.raises(FetchError) as info:
        records_of(job, runtime_for(JobPolicy(http_allow_private=True)))
    assert "HTTP 503" in str(info.value) and "qk-literal-42" not in str(info.value)
    assert "HTTP Request" in caplog.text and "page=1" in caplog.text  # httpx's own line
    assert "qk-literal-42" not in caplog.text


# --- API -----------------------------------------------------------------------------


def test_api_readers_see_no_secrets_and_admins_the_masked_form(store: Store) -> None:
    JobRegistry(store).put(JobDefinition.model_validate(MASKED_JOB))
    with running_api(store) as api:
        with client_for(api, "reader") as reader:
            listed = reader.get("/api/jobs")
            one = reader.get("/api/jobs/masked")
        with client_for(api, "admin") as admin:
            full = admin.get("/api/jobs/masked")
    for response in (listed, one, full):
        assert response.status_code == 200, response.text
        assert not any(secret in response.text for secret in LITERALS), response.text
    source = one.json()["definition"]["datasources"][0]
    assert not {"headers", "auth", "params"} & set(source)
    assert "?" not in source["url"]
    assert listed.json()[0]["definition"] == one.json()["definition"]
    admin_source = full.json()["definition"]["datasources"][0]
    assert admin_source["headers"]["Authorization"] == "Bearer ${env.API_TOKEN}"
    assert admin_source["headers"]["X-Trace"] == "***"


def test_api_put_applies_the_policy(store: Store, tmp_path: Path) -> None:
    policy = JobPolicy(file_roots=(tmp_path,))
    body = {
        "name": "shadow",
        "datasources": [{"name": "a", "type": "csv", "path": "/etc/shadow"}],
        "collection": {"type": "normal", "name": "shadow"},
    }
    with running_api(store, policy=policy) as api, client_for(api, "admin") as admin:
        refused = admin.put("/api/jobs/shadow", json=body)
        assert refused.status_code == 400, refused.text
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["body", "datasources", 0, "path"]
        assert "SLURP_FILE_ROOTS" in error["msg"]
        assert admin.get("/api/jobs/shadow").status_code == 404
        os_system = {**body, "datasources": [{"name": "a", "type": "inline", "records": []}],
                     "slurper": "os:system"}  # fmt: skip
        refused = admin.put("/api/jobs/shadow", json=os_system)
        assert refused.status_code == 400
        assert refused.json()["detail"][0]["loc"] == ["body", "slurper"]
        fine = {**body, "datasources": [{"name": "a", "type": "csv", "path": str(tmp_path / "x")}]}
        assert admin.put("/api/jobs/shadow", json=fine).status_code == 201


def test_cli_jobs_show_is_masked(mongo_url: str, mongo_db_name: str, tmp_path: Path) -> None:
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": [MASKED_JOB]}))
    env = {
        "SLURP_MONGO_URL": mongo_url,
        "SLURP_MONGO_DB": mongo_db_name,
        "SLURP_JOB_ENV_ALLOW": "API_TOKEN,CID,CSECRET,DB_PW",
    }
    applied = slurp_cli("jobs", "apply", "jobs.json", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    for args in (("jobs", "show", "masked"), ("jobs", "show", "masked", "--json")):
        shown = slurp_cli(*args, cwd=tmp_path, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "${env.API_TOKEN}" in shown.stdout
        assert not any(secret in shown.stdout for secret in LITERALS), shown.stdout
