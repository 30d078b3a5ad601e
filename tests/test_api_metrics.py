"""GET /metrics: request count and latency by route template, method and status."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from api_harness import client_for, fill, fresh_store, running_api, spec
from prometheus_client.parser import text_string_to_metric_families

from contracts.jobs import CollectionType
from storage.store import Store

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def store(mongo_url: str) -> Iterator[Store]:
    with fresh_store(mongo_url) as shared:
        fill(shared, spec(CollectionType.NORMAL, "users"), [{"id": 1}], "r1")
        fill(shared, spec(CollectionType.NORMAL, "teams"), [{"id": 2}], "r2")
        yield shared


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def count(samples: Samples, route: str, method: str, status: int) -> float:
    labels = frozenset({"route": route, "method": method, "status": str(status)}.items())
    return samples.get(("slurp_http_requests_total", labels), 0.0)


def test_requests_are_counted_by_route_template(store: Store) -> None:
    with running_api(store) as server, client_for(server, "admin") as client:
        client.get("/api/collections/users")
        client.get("/api/collections/teams", params={"$limit": 1})
        client.get("/api/collections/nope")
        client.get("/api/collections/users", params={"$limit": 0})
        client.get("/no/such/path/123")
        client.post("/api/token/", json={"username": "admin", "password": "wrong"})
        client.request("BREW", "/api/health")
        samples = scrape(client)
    route = "/api/collections/{name}"
    assert count(samples, route, "GET", 200) == 2
    assert count(samples, route, "GET", 404) == 1
    assert count(samples, route, "GET", 400) == 1
    assert count(samples, "/api/token/", "POST", 200) == 1  # the login of client_for
    assert count(samples, "/api/token/", "POST", 401) == 1
    assert count(samples, "unmatched", "GET", 404) == 1
    assert count(samples, "/api/health", "OTHER", 405) == 1
    latency = ("slurp_http_request_duration_seconds_count",
               frozenset({"route": route, "method": "GET"}.items()))  # fmt: skip
    assert samples[latency] == 4
    routes = {dict(labels).get("route") for _, labels in samples}
    assert not any(r and ("users" in r or "123" in r) for r in routes)  # never raw paths


def test_each_app_has_its_own_registry(store: Store) -> None:
    with (
        running_api(store) as one,
        running_api(store) as two,
        client_for(one) as first,
        client_for(two) as second,
    ):
        for _ in range(3):
            first.get("/api/health")
        second.get("/api/health")
        assert count(scrape(first), "/api/health", "GET", 200) == 3
        assert count(scrape(second), "/api/health", "GET", 200) == 1


def test_metrics_need_no_token(store: Store) -> None:
    with running_api(store) as server, client_for(server) as client:
        assert "slurp_http_requests_total" in client.get("/metrics").text
