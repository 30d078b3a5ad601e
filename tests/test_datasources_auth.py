"""Credentials against a real HTTP server: basic, bearer, OAuth2 token endpoint with
expiring tokens, and secrets that never reach messages or logs."""

from __future__ import annotations

import base64
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from datasources import FetchError, SecretMissingError
from datasources.auth import TokenCache
from tests.datasource_servers import HttpServer, Reply, Request, fast_runtime, make_job, records_of

CLIENT_ID = "slurp-client"
CLIENT_SECRET = "cl13nt-s3cret-value"
ENV = {"CID": CLIENT_ID, "CSECRET": CLIENT_SECRET, "USER": "ann", "PASS": "pa55-word-xyz"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class OAuthServer:
    """A token endpoint issuing numbered tokens, and an API accepting live ones."""

    def __init__(self, http: HttpServer, expires_in: int = 3600) -> None:
        self.http = http
        self.expires_in = expires_in
        self.live: set[str] = set()
        self._numbers = itertools.count(1)
        http.route("/token", self.token, method="POST")
        http.route("/api", self.api)

    def token(self, request: Request) -> Reply:
        form = request.form()
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.update(client_id=cid, client_secret=secret)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            # a careless server echoing what it got: the secret must still be masked
            return Reply.json({"error": "invalid_client", "got": form}, status=401)
        if form["grant_type"] == "password" and (form["username"], form["password"]) != (
            "ann",
            "pa55-word-xyz",
        ):
            return Reply.json({"error": "invalid_grant"}, status=400)
        token = f"tok-{next(self._numbers)}-{'x' * 12}"
        self.live.add(token)
        return Reply.json(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )

    def api(self, request: Request) -> Reply:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.live:
            return Reply.json({"error": "invalid_token"}, status=401)
        page = int(request.query.get("page", "1"))
        return Reply.json([{"page": page, "token": token}] if page <= 2 else [])

    def tokens_used(self) -> list[str]:
        seen = self.http.seen("/api")
        return [r.headers["authorization"].removeprefix("Bearer ") for r in seen]


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer().start()
    yield http
    http.stop()


def oauth_job(server: HttpServer, **auth: Any) -> Any:
    config = {
        "type": "oauth2_client_credentials",
        "token_url": server.url("/token"),
        "client_id_env": "CID",
        "client_secret_env": "CSECRET",
        **auth,
    }
    source = {
        "name": "api",
        "type": "rest",
        "url": server.url("/api"),
        "pagination": {"style": "page"},
        "auth": config,
    }
    return make_job([source])


def test_oauth2_token_is_reused_until_it_expires_then_refetched(server: HttpServer) -> None:
    oauth = OAuthServer(server, expires_in=600)
    clock = Clock()
    runtime = fast_runtime(environ=ENV, token_cache=TokenCache(clock=clock))
    job = oauth_job(server)

    first = records_of(job, runtime)
    assert [r["page"] for r in first] == [1, 2]
    records_of(job, runtime)  # a second run, 9 minutes later: same token
    clock.now += 540 - 1
    records_of(job, runtime)
    assert len(server.seen("/token")) == 1
    assert set(oauth.tokens_used()) == {first[0]["token"]}

    clock.now += 2  # within the renewal margin (10 % of 600 s = 60 s) of expiry: renewed
    renewed = records_of(job, runtime)
    assert len(server.seen("/token")) == 2
    assert renewed[0]["token"] != first[0]["token"]
    assert {r["token"] for r in renewed} == {renewed[0]["token"]}
    assert server.seen("/token")[0].form() == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


def test_a_token_revoked_early_is_refetched_once_on_401(server: HttpServer) -> None:
    oauth = OAuthServer(server)
    runtime = fast_runtime(environ=ENV)
    job = oauth_job(server)
    records_of(job, runtime)
    oauth.live.clear()  # the server forgets every token before they expire
    records = records_of(job, runtime)
    assert [r["page"] for r in records] == [1, 2]
    assert len(server.seen("/token")) == 2
    statuses = [r.headers["authorization"] for r in server.seen("/api")]
    assert len(statuses) == 3 + 1 + 3  # run 1, the refused request, run 2


def test_oauth2_password_grant_with_basic_client_auth(server: HttpServer) -> None:
    OAuthServer(server)
    job = oauth_job(
        server,
        type="oauth2_password",
        username_env="USER",
        password_env="PASS",
        client_auth="basic",
        scope="read",
    )
    assert len(records_of(job, fast_runtime(environ=ENV))) == 2
    (token_request,) = server.seen("/token")
    assert token_request.headers["authorization"].startswith("Basic ")
    assert token_request.form() == {
        "grant_type": "password",
        "username": "ann",
        "password": "pa55-word-xyz",
        "scope": "read",
    }


def test_refused_client_secret_is_masked_in_the_error(server: HttpServer) -> None:
    OAuthServer(server)
    env = {**ENV, "CSECRET": "wrong-but-secret-123"}
    with pytest.raises(FetchError) as info:
        records_of(oauth_job(server), fast_runtime(environ=env))
    message = str(info.value)
    assert "HTTP 401" in message and "invalid_client" in message
    assert "wrong-but-secret-123" not in message and "***" in message
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("auth", "expected_header"),
    [
        ({"type": "basic", "username_env": "USER", "password_env": "PASS"},
         "Basic " + base64.b64encode(b"ann:pa55-word-xyz").decode()),
        ({"type": "bearer", "token_env": "TOKEN"}, "Bearer t0ken-abcdef-123"),
    ],
)  # fmt: skip
def test_static_credentials_are_sent_and_never_logged_or_reported(
    server: HttpServer, caplog: Any, auth: dict[str, Any], expected_header: str
) -> None:
    def echo(request: Request) -> Reply:
        # first a 503 (logged as a retry), then a 403 echoing the credentials
        status = 503 if len(server.seen("/echo")) == 1 else 403
        return Reply.text(f"you sent {request.headers.get('authorization')}", "text/plain", status)

    server.route("/echo", echo)
    source = {"name": "api", "type": "rest", "url": server.url("/echo"), "auth": auth}
    runtime = fast_runtime(environ={**ENV, "TOKEN": "t0ken-abcdef-123"})
    with caplog.at_level(logging.DEBUG), pytest.raises(FetchError) as info:
        records_of(make_job([source]), runtime)
    assert [r.headers["authorization"] for r in server.seen("/echo")] == [expected_header] * 2
    secret_texts = ["pa55-word-xyz", "t0ken-abcdef-123", expected_header.split()[1]]
    for text in (str(info.value), repr(info.value.args), caplog.text):
        assert not any(secret in text for secret in secret_texts), text
    assert "HTTP 403" in str(info.value) and "***" in str(info.value)
    assert "retry 1/3" in caplog.text


def test_missing_secret_names_the_variable_only(server: HttpServer) -> None:
    source = {
        "name": "api",
        "type": "rest",
        "url": server.url("/api"),
        "auth": {"type": "bearer", "token_env": "NOT_SET_ANYWHERE"},
    }
    runtime = fast_runtime(env_allow=["NOT_SET_ANYWHERE"])  # allowed, but not set
    with pytest.raises(SecretMissingError, match="environment variable NOT_SET_ANYWHERE"):
        records_of(make_job([source]), runtime)
    assert server.seen("/api") == []
