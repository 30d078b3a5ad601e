"""The conventions docs/api.md claims, as Django REST framework + simplejwt have them:
trailing slashes served directly, form-encoded bodies, 400 for bad bodies,
``/api/token/verify/``, and a hint for ``?limit=``/``?page=`` written without ``$``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_harness import PASSWORDS, bearer, client_for, fill, fresh_store, login, running_api, spec

from api.server import ApiServer
from api.slashes import declared_spelling
from contracts.jobs import CollectionType
from storage.store import Store

RECORDS = [{"id": i, "name": f"n{i}"} for i in range(15)]
PAGES = [{"id": i, "page": i % 3, "limit": "none"} for i in range(6)]  # fields named so


@pytest.fixture(scope="module")
def store(mongo_url: str) -> Iterator[Store]:
    with fresh_store(mongo_url) as shared:
        yield shared


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[ApiServer]:
    fill(store, spec(CollectionType.NORMAL, "users"), RECORDS, "r1")
    fill(store, spec(CollectionType.NORMAL, "book"), PAGES, "r1")
    snap = spec(CollectionType.VERSIONED, "snap", keep_versions=2)
    fill(store, snap, [{"n": 1}], "s1")
    with running_api(store) as api:
        yield api


@pytest.fixture(scope="module")
def admin(server: ApiServer) -> Iterator[httpx.Client]:
    with client_for(server, "admin") as client:
        yield client


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with client_for(server) as plain:
        yield plain


# -- trailing slashes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/collections/", 200),
        ("/api/collections/users/", 200),
        ("/api/collections/users/versions/", 404),  # a normal collection keeps none
        ("/api/collections/snap/versions/", 200),
        ("/api/collections/snap/versions/1/", 200),
        ("/api/collections/nope/", 404),
        ("/api/jobs/", 200),
        ("/api/jobs/nope/", 404),
        ("/api/jobs/nope/runs/", 404),
        ("/api/runs/nope/", 404),
    ],
)
def test_paths_with_a_trailing_slash_are_served_directly(
    admin: httpx.Client, path: str, status: int
) -> None:
    response = admin.get(path)  # httpx, like curl, does not follow redirects by default
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    without = admin.get(path.rstrip("/"))
    assert without.status_code == status


def test_records_are_the_same_with_or_without_the_slash(admin: httpx.Client) -> None:
    with_slash = admin.get("/api/collections/users/", params={"$limit": 3, "id": 2})
    assert with_slash.json() == admin.get("/api/collections/users", params={"$limit": 3, "id": 2}
                                          ).json() == [RECORDS[2]]  # fmt: skip


def test_token_endpoints_without_their_slash(client: httpx.Client) -> None:
    tokens = client.post("/api/token", json={"username": "reader", "password": PASSWORDS["reader"]})
    assert tokens.status_code == 200, tokens.text
    verified = client.post("/api/token/verify", json={"token": tokens.json()["access"]})
    assert (verified.status_code, verified.json()) == (200, {})


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this host")
def test_curl_gets_records_with_a_trailing_slash(server: ApiServer) -> None:
    with client_for(server) as client:
        access = login(client, "reader")["access"]
    result = subprocess.run(
        ["curl", "-s", "-w", "\\n%{http_code}", f"{server.url}/api/collections/users/",
         "-H", f"Authorization: Bearer {access}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200" and httpx.Response(200, content=body).json() == RECORDS


# -- bodies: JSON or form; 400 when bad; 415 when neither -------------------------------


def test_form_encoded_login_refresh_and_verify(client: httpx.Client) -> None:
    form = {"username": "reader", "password": PASSWORDS["reader"]}
    tokens = client.post("/api/token/", data=form)  # what `curl -d` sends
    assert tokens.status_code == 200, tokens.text
    pair = tokens.json()
    assert client.get("/api/jobs", headers=bearer(pair["access"])).status_code == 200
    rotated = client.post("/api/token/refresh/", data={"refresh": pair["refresh"]})
    assert rotated.status_code == 200 and set(rotated.json()) == {"access", "refresh"}
    verified = client.post("/api/token/verify/", data={"token": rotated.json()["access"]})
    assert (verified.status_code, verified.json()) == (200, {})
    charset = client.post(
        "/api/token/",
        content=f"username=reader&password={PASSWORDS['reader']}",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert charset.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"json": {"username": "reader"}}, ["body", "password"]),
        ({"json": {}}, ["body", "username"]),
        ({"data": {"username": "reader"}}, ["body", "password"]),
        ({"json": {"username": "r", "password": "hunter2-secret", "extra": 1}}, ["body", "extra"]),
        ({"json": {"username": 7, "password": "hunter2-secret"}}, ["body", "username"]),
        ({"json": ["reader", "hunter2-secret"]}, ["body"]),
        ({}, ["body", "username"]),  # no body at all
    ],
)
def test_bad_token_bodies_are_400_per_field(
    client: httpx.Client, kwargs: dict[str, Any], expected: list[str]
) -> None:
    response = client.post("/api/token/", **kwargs)
    assert response.status_code == 400, response.text
    errors = response.json()["detail"]
    assert any(error["loc"] == expected for error in errors), errors
    assert all(set(error) == {"loc", "msg", "type"} for error in errors)
    assert "hunter2" not in response.text


def test_malformed_and_unsupported_bodies(client: httpx.Client, admin: httpx.Client) -> None:
    broken = client.post(
        "/api/token/",
        content=b'{"username": "hunter2',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400 and broken.json()["detail"].startswith("JSON parse error")
    assert "hunter2" not in broken.text
    plain = client.post("/api/token/", content=b"reader:pw", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert plain.json() == {"detail": 'Unsupported media type "text/plain" in request; send '
                            "application/json or application/x-www-form-urlencoded."}  # fmt: skip
    for path, body in [("/api/token/refresh/", {}), ("/api/token/verify/", {"tok": "x"}),
                       ("/api/token/blacklist/", {"refresh": ""})]:  # fmt: skip
        assert client.post(path, json=body).status_code == 400
    # Every other body too (DRF answers 400, not FastAPI's 422)
    job = admin.put("/api/jobs/j", json={"name": "j"})
    assert job.status_code == 400 and job.json()["detail"][0]["loc"][0] == "body"
    assert admin.put("/api/jobs/j", content=b"{", headers={"Content-Type": "application/json"}
                     ).status_code == 400  # fmt: skip


def test_openapi_documents_400_and_both_body_types(client: httpx.Client) -> None:
    schema = client.get("/api/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path in ("/api/token/", "/api/token/refresh/", "/api/token/verify/",
                 "/api/token/blacklist/"):  # fmt: skip
        operation = schema["paths"][path]["post"]
        assert set(operation["requestBody"]["content"]) == {
            "application/json", "application/x-www-form-urlencoded"}  # fmt: skip
        assert "400" in operation["responses"] and "401" in operation["responses"]
    # every declared path follows the rule api.slashes rewrites requests by
    assert [p for p in schema["paths"] if p.startswith("/api/") and declared_spelling(p) != p] == []


# -- ?limit= / ?page= without $ ---------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{"limit": 10}, {"page": 2}, {"with_meta": "true"}, {"limit": 5, "$limit": 2},
     {"page": 2, "$with_meta": "true"}, {"page": 2, "$page": 2, "$limit": 5}],
)  # fmt: skip
def test_pagination_without_dollar_gets_a_hint(admin: httpx.Client, params: dict[str, Any]) -> None:
    response = admin.get("/api/collections/users/", params=params)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "parameters without '$' filter on fields" in detail
    assert "pagination is $limit, $page and $with_meta" in detail


def test_fields_named_like_pagination_still_filter(admin: httpx.Client) -> None:
    book = "/api/collections/book"
    assert [r["id"] for r in admin.get(book, params={"page": 1}).json()] == [1, 4]
    assert [r["id"] for r in admin.get(book, params={"limit": "none", "$limit": 2}).json()] == [
        0,
        1,
    ]
    meta = admin.get(book, params={"page": 2, "$with_meta": "true"}).json()
    assert meta["count"] == 2
    # a page past the end of a filter that matches: an empty page, as always
    assert admin.get(book, params={"page": 2, "$page": 5, "$limit": 1}).json() == []
    assert admin.get(book, params={"page": 7}).status_code == 400  # matches nothing: hint
