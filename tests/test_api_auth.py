"""Tokens, roles, ACL, rate-limited logins, password hashes and the API settings."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import jwt
import pytest
from api_harness import (
    PASSWORDS,
    SECRET,
    bearer,
    client_for,
    fresh_store,
    login,
    make_config,
    running_api,
    users,
)

from api.auth import LoginRateLimiter, TokenService
from api.config import ApiConfig, ApiConfigError, UserSpec, load_api_config
from api.errors import RateLimited
from api.passwords import hash_password, parse_hash, scrypt_hash, verify_password
from api.server import ApiServer
from storage.store import Store

BAD_TOKEN = {"detail": "Given token not valid for any token type"}
NO_TOKEN = {"detail": "Authentication credentials were not provided."}
BAD_LOGIN = {"detail": "No active account found with the given credentials"}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}

PROTECTED = [
    ("GET", "/api/collections"),
    ("GET", "/api/collections/users"),
    ("GET", "/api/collections/users/versions"),
    ("GET", "/api/collections/users/versions/1"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/j"),
    ("PUT", "/api/jobs/j"),
    ("DELETE", "/api/jobs/j"),
    ("POST", "/api/jobs/j/pause"),
    ("POST", "/api/jobs/j/resume"),
    ("POST", "/api/jobs/j/runs"),
    ("GET", "/api/jobs/j/runs"),
    ("GET", "/api/runs/r"),
]
ADMIN_ONLY = [(m, p) for m, p in PROTECTED if m != "GET"]


@pytest.fixture(scope="module")
def store(mongo_url: str) -> Iterator[Store]:
    with fresh_store(mongo_url) as shared:
        yield shared


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[ApiServer]:
    with running_api(store) as api:
        yield api


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with client_for(server) as plain:
        yield plain


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user_id"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_login_returns_simplejwt_style_tokens(client: httpx.Client) -> None:
    tokens = login(client, "reader")
    assert set(tokens) == {"access", "refresh"}
    claims = jwt.decode(tokens["access"], SECRET, algorithms=["HS256"])
    assert set(claims) == {"token_type", "user_id", "exp", "iat", "jti"}
    assert (claims["token_type"], claims["user_id"]) == ("access", "reader")
    assert claims["exp"] - claims["iat"] == 300
    refresh = jwt.decode(tokens["refresh"], SECRET, algorithms=["HS256"])
    assert (refresh["token_type"], refresh["exp"] - refresh["iat"]) == ("refresh", 86400)
    assert client.get("/api/jobs", headers=bearer(tokens["access"])).status_code == 200


def test_refresh_gives_a_working_access_token(client: httpx.Client) -> None:
    refresh = login(client, "reader")["refresh"]
    response = client.post("/api/token/refresh/", json={"refresh": refresh})
    assert response.status_code == 200 and set(response.json()) == {"access", "refresh"}
    access = response.json()["access"]
    assert client.get("/api/collections", headers=bearer(access)).status_code == 200
    # an access token cannot refresh, a refresh token cannot authenticate
    assert client.post("/api/token/refresh/", json={"refresh": access}).json() == BAD_TOKEN
    assert client.get("/api/jobs", headers=bearer(refresh)).status_code == 401


def test_bad_credentials_look_the_same(client: httpx.Client) -> None:
    for username, password in [("reader", "wrong"), ("nobody", "wrong"), ("READER", "reader-pw-1")]:
        response = client.post("/api/token/", json={"username": username, "password": password})
        assert (response.status_code, response.json()) == (401, BAD_LOGIN)
    invalid = client.post("/api/token/", json={"username": "", "password": "hunter2-secret"})
    assert invalid.status_code == 400
    assert "hunter2" not in invalid.text  # the submitted value is never echoed


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_wants_a_token(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert (response.status_code, response.json()) == (401, NO_TOKEN)
    assert response.headers["www-authenticate"] == "Bearer"


def test_invalid_tokens_get_401_without_detail(client: httpx.Client) -> None:
    good = login(client, "admin")
    now = time.time()
    expired = TokenService(SECRET, 300, 300, clock=lambda: now - 301).issue("admin").access
    other_key = TokenService("x" * 40, 300, 300).issue("admin").access
    unsigned = jwt.encode(
        {"token_type": "access", "user_id": "admin", "exp": now + 60, "iat": now, "jti": "a"},
        key=None,
        algorithm="none",
    )
    no_exp = jwt.encode({"token_type": "access", "user_id": "admin", "jti": "a", "iat": now},
                        SECRET, algorithm="HS256")  # fmt: skip
    reader_token = login(client, "reader")["access"]
    for token in [expired, other_key, unsigned, no_exp, _tamper(reader_token), good["refresh"],
                  "garbage", good["access"] + "x"]:  # fmt: skip
        response = client.get("/api/jobs", headers=bearer(token))
        assert (response.status_code, response.json()) == (401, BAD_TOKEN), token
    for header in ["Basic YWRtaW46YWRtaW4=", "Bearer", good["access"]]:
        response = client.get("/api/jobs", headers={"Authorization": header})
        assert (response.status_code, response.json()) == (401, NO_TOKEN)


def test_removed_user_loses_access(store: Store, client: httpx.Client) -> None:
    tokens = login(client, "narrow")
    fewer = tuple(u for u in users() if u.username != "narrow")
    with running_api(store, users=fewer) as other, client_for(other) as elsewhere:
        response = elsewhere.get("/api/collections", headers=bearer(tokens["access"]))
        assert (response.status_code, response.json()) == (401, BAD_TOKEN)
        refreshed = elsewhere.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
        assert (refreshed.status_code, refreshed.json()) == (401, BAD_TOKEN)


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_readers_cannot_write(server: ApiServer, method: str, path: str) -> None:
    with client_for(server, "reader") as reader:
        response = reader.request(method, path, json={})
        assert (response.status_code, response.json()) == (403, FORBIDDEN)


def test_open_endpoints(client: httpx.Client) -> None:
    assert client.get("/api/health").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/openapi.json").json()["info"]["title"] == "slurp API"


def test_failed_logins_are_rate_limited(server: ApiServer) -> None:
    wrong = {"username": "admin", "password": "wrong"}
    with client_for(server) as client:
        for _ in range(5):
            assert client.post("/api/token/", json=wrong).status_code == 401
        limited = client.post("/api/token/", json=wrong)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "Too many failed login attempts" in limited.json()["detail"]
        right = {"username": "admin", "password": PASSWORDS["admin"]}
        assert client.post("/api/token/", json=right).status_code == 429  # even if right
        assert login(client, "reader")  # other usernames are not affected
    # the same username from another client address is not affected
    other_ip = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, transport=other_ip) as client:
        assert login(client, "admin")


def test_concurrent_guesses_cannot_overshoot_the_limit(server: ApiServer) -> None:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(12)

    def guess() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            start.wait()
            status = client.post("/api/token/", json={"username": "narrow", "password": "x"})
            with lock:
                statuses[status.status_code] += 1

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == {401: 5, 429: 7}


def test_rate_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = LoginRateLimiter(max_failures=2, window_s=10, clock=lambda: now[0])
    key = ("admin", "1.2.3.4")
    limiter.attempt(key)
    now[0] += 4
    limiter.attempt(key)
    with pytest.raises(RateLimited) as raised:
        limiter.attempt(key)
    assert raised.value.headers["Retry-After"] == "6"
    now[0] += 6  # the first failure leaves the window
    limiter.attempt(key)
    limiter.succeeded(key)  # a success forgets the failures
    limiter.attempt(key)
    limiter.attempt(key)
    small = LoginRateLimiter(max_failures=1, window_s=10, clock=lambda: now[0], max_keys=2)
    for ip in ("a", "b", "c"):
        small.attempt(("u", ip))
    small.attempt(("u", "a"))  # forgotten: at most max_keys keys are remembered


def test_password_hashes() -> None:
    encoded = hash_password("s3cret")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and "s3cret" not in encoded
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert hash_password("s3cret") != encoded  # salted
    older = scrypt_hash("s3cret", n=2**10)  # hashes of earlier versions still verify
    assert older.startswith("scrypt$1024$8$1$") and verify_password("s3cret", older)
    assert not verify_password("s3cret ", older)
    for bad in ["s3cret", "scrypt$1000$8$1$AAAA$BBBB", "scrypt$1024$8$1$!!$BBBB", "md5$x",
                "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "$argon2id$v=19$garbage"]:  # fmt: skip
        with pytest.raises(ValueError) as raised:
            parse_hash(bad)
        assert bad not in str(raised.value)


def test_password_helper_prints_a_hash() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.passwords", "--stdin"],
        input="correct horse\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert verify_password("correct horse", result.stdout.strip())


def test_users_never_hold_plain_passwords() -> None:
    with pytest.raises(ValueError) as raised:
        UserSpec.model_validate({"username": "x", "password_hash": "plain-password"})
    assert "plain-password" not in str(raised.value)
    user = UserSpec.model_validate({"username": "x", "password_hash": hash_password("p")})
    assert "argon2" not in repr(user)  # SecretStr


def test_config_from_environment() -> None:
    entry = {"username": "ops", "password_hash": scrypt_hash("p", n=2), "role": "admin"}
    env = {
        "SLURP_API_JWT_SECRET": "k" * 32,
        "SLURP_API_USERS": json.dumps([entry]),
        "SLURP_API_PORT": "9000",
        "SLURP_API_TRUSTED_PROXIES": '["10.0.0.1"]',
        "SLURP_OTHER": "ignored: not an API setting",
    }
    config = load_api_config(env)
    assert config.port == 9000 and config.trusted_proxies == ("10.0.0.1",)
    ops = config.user("ops")
    assert ops is not None and ops.role == "admin" and ops.collections == ("*",)
    with pytest.raises(ApiConfigError) as raised:
        load_api_config({**env, "SLURP_API_JWT_SECRET": "short", "SLURP_API_PROT": "1"})
    message = str(raised.value)
    assert "SLURP_API_PROT: unknown setting" in message
    assert "SLURP_API_JWT_SECRET: " in message and "at least 32" in message
    assert "short" not in message
    with pytest.raises(ApiConfigError, match="SLURP_API_USERS: not valid JSON"):
        load_api_config({**env, "SLURP_API_USERS": "[{"})
    with pytest.raises(ValueError, match="usernames must be unique"):
        ApiConfig.model_validate({"jwt_secret": "k" * 32, "users": [entry, entry]})
    assert make_config().login_max_failures == 5
