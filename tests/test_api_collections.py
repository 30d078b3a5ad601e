"""GET /api/collections...: records, pagination, filters, versions, ACL, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_harness import client_for, fill, fresh_store, running_api, spec
from storage_model import canonical

from api.server import ApiServer
from contracts.jobs import CollectionType
from storage.store import Store

USERS = [
    {
        "id": i,
        "username": f"user{i}",
        "active": i % 2 == 0,
        "score": i / 2,
        "code": str(i),
        "address": {"city": ("Zurich", "Geneva", "Basel")[i % 3], "zip": 8000 + i},
        "note": None if i == 3 else "x",
    }
    for i in range(25)
]


@pytest.fixture(scope="module")
def store(mongo_url: str) -> Iterator[Store]:
    """One database for the module; tests that add collections use their own names."""
    with fresh_store(mongo_url) as shared:
        yield shared


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[ApiServer]:
    fill(store, spec(CollectionType.NORMAL, "users"), USERS, "r1")
    snap = spec(CollectionType.VERSIONED, "snap", keep_versions=2)
    for n in range(1, 4):
        fill(store, snap, [{"n": n, "i": i} for i in range(n * 10)], f"snap-{n}")
    with running_api(store) as api:
        yield api


@pytest.fixture(scope="module")
def admin(server: ApiServer) -> Iterator[httpx.Client]:
    with client_for(server, "admin") as client:
        yield client


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_record_without_internal_fields(admin: httpx.Client) -> None:
    records = get(admin, "/api/collections/users")
    assert records == USERS  # storage order = insertion order; no _id
    listing = get(admin, "/api/collections")
    assert {c["name"]: c["records"] for c in listing} == {"users": 25, "snap": 30}


def test_large_collection_is_streamed_complete(store: Store, admin: httpx.Client) -> None:
    big = [{"i": i, "text": "y" * 50} for i in range(20_000)]
    fill(store, spec(CollectionType.NORMAL, "big"), big, "big-1")
    with admin.stream("GET", "/api/collections/big") as response:
        assert response.status_code == 200
        assert response.headers.get("content-length") is None  # chunked, not buffered
        body = b"".join(response.iter_bytes())
    assert httpx.Response(200, content=body).json() == big


def test_pages(admin: httpx.Client) -> None:
    assert get(admin, "/api/collections/users", **{"$limit": 10}) == USERS[:10]
    assert get(admin, "/api/collections/users", **{"$limit": 10, "$page": 3}) == USERS[20:]
    assert get(admin, "/api/collections/users", **{"$page": 1}) == USERS  # default limit 100
    assert get(admin, "/api/collections/users", **{"$limit": 10, "$page": 9}) == []


def test_with_meta(admin: httpx.Client) -> None:
    page = get(admin, "/api/collections/users", **{"$limit": 10, "$page": 2, "$with_meta": "true"})
    assert page == {
        "page": 2, "next": 3, "previous": 1, "last": 3, "limit": 10, "count": 25,
        "items": USERS[10:20],
    }  # fmt: skip
    first = get(admin, "/api/collections/users", **{"$with_meta": "true"})
    assert (first["page"], first["limit"], first["next"], first["previous"]) == (1, 100, None, None)
    assert first["items"] == USERS
    last = get(admin, "/api/collections/users", **{"$limit": 10, "$page": 3, "$with_meta": "true"})
    assert (last["next"], last["previous"], last["items"]) == (None, 2, USERS[20:])
    empty = get(admin, "/api/collections/users", **{"$with_meta": "true", "active": "maybe"})
    assert (empty["count"], empty["last"], empty["items"], empty["next"]) == (0, 1, [], None)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"username": "user7"}, [7]),
        ({"id": "7"}, [7]),  # "7" also matches the integer 7
        ({"code": "7"}, [7]),  # ... and the string "7"
        ({"score": "1.5"}, [3]),
        ({"score": "2"}, [4]),  # 2 matches 2.0
        ({"active": "true", "address.city": "Basel"}, [2, 8, 14, 20]),
        ({"address.zip": "8011"}, [11]),
        ({"note": "null"}, [3]),
        ({"username": "nobody"}, []),
    ],
)
def test_equality_filters(admin: httpx.Client, params: dict[str, str], expected: list[int]) -> None:
    records = get(admin, "/api/collections/users", **params)
    assert [r["id"] for r in records] == expected


def test_repeated_filter_matches_any_value(admin: httpx.Client) -> None:
    response = admin.get("/api/collections/users?id=1&id=4&$with_meta=true")
    assert [r["id"] for r in response.json()["items"]] == [1, 4]
    assert response.json()["count"] == 2


@pytest.mark.parametrize(
    "query",
    [
        "$limit=0", "$limit=10001", "$limit=ten", "$limit=", "$page=0", "$page=-1",
        "$page=1.5", "$with_meta=maybe", "$sort=id", "$where=1", "a..b=1", "_id=1",
        "a.$gt=1",
    ],
)  # fmt: skip
def test_bad_parameters_are_400_with_a_message(admin: httpx.Client, query: str) -> None:
    response = admin.get(f"/api/collections/users?{query}")
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
    name = query.split("=")[0].split(".")[0]
    assert name.strip("$") in detail or "invalid" in detail


def test_unknown_collection_is_404(admin: httpx.Client) -> None:
    for path in ("/api/collections/nope", "/api/collections/nope/versions"):
        response = admin.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "no collection named 'nope'"}


def test_versions(admin: httpx.Client) -> None:
    versions = get(admin, "/api/collections/snap/versions")
    assert [(v["number"], v["records"]) for v in versions] == [(2, 20), (3, 30)]
    assert set(versions[0]) == {
        "number", "run_id", "created_at", "records", "pinned", "restored_from", "restored_by",
    }  # fmt: skip
    assert [r["i"] for r in get(admin, "/api/collections/snap/versions/2")] == list(range(20))
    assert get(admin, "/api/collections/snap") == get(admin, "/api/collections/snap/versions/3")
    page = get(admin, "/api/collections/snap/versions/2", **{"$limit": 5, "$with_meta": "true"})
    assert (page["count"], page["last"], len(page["items"])) == (20, 4, 5)
    assert get(admin, "/api/collections/snap/versions/2", i="3") == [{"n": 2, "i": 3}]


def test_missing_version_and_unversioned_collection_are_404(admin: httpx.Client) -> None:
    gone = admin.get("/api/collections/snap/versions/1")
    assert gone.status_code == 404
    assert "no version 1" in gone.json()["detail"] and "2, 3" in gone.json()["detail"]
    for path in ("/api/collections/users/versions", "/api/collections/users/versions/1"):
        response = admin.get(path)
        assert response.status_code == 404
        assert "keeps no versions" in response.json()["detail"]
    assert admin.get("/api/collections/snap/versions/zero").status_code == 400


def test_accumulative_serves_committed_runs_only(store: Store, admin: httpx.Client) -> None:
    events = spec(CollectionType.ACCUMULATIVE, "events")
    fill(store, events, [{"e": 1}, {"e": 2}], "a1")
    fill(store, events, [{"e": 3}], "a2")
    assert get(admin, "/api/collections/events") == [{"e": 1}, {"e": 2}, {"e": 3}]
    page = get(admin, "/api/collections/events", **{"$limit": 2, "$with_meta": "true"})
    assert (page["count"], page["items"]) == (3, [{"e": 1}, {"e": 2}])


def test_upserted_records_come_back_as_sent(store: Store, admin: httpx.Client) -> None:
    keyed = spec(CollectionType.UPSERTED, "keyed", upsert_key="ref.id")
    records = [{"ref": {"id": f"k{i}"}, "v": i} for i in range(5)]
    fill(store, keyed, records, "u1")
    assert canonical(get(admin, "/api/collections/keyed")) == canonical(records)


def test_read_acl(server: ApiServer) -> None:
    with client_for(server, "narrow") as narrow:
        assert narrow.get("/api/collections/users").status_code == 200
        for path in ("/api/collections/snap", "/api/collections/snap/versions",
                     "/api/collections/snap/versions/2", "/api/collections/nope"):  # fmt: skip
            response = narrow.get(path)
            assert response.status_code == 403  # existence is not revealed either
            assert response.json() == {
                "detail": "You do not have permission to perform this action."
            }
        assert [c["name"] for c in narrow.get("/api/collections").json()] == ["users"]
