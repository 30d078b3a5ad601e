"""Shared pieces of the API tests: users, config, a real uvicorn server, a client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis

from api.config import ApiConfig, UserSpec
from api.passwords import scrypt_hash
from api.server import ApiServer
from contracts.jobs import CollectionSpec, CollectionType
from datasources.policy import JobPolicy
from storage.runs import store_run
from storage.store import Store, connect
from storage.strategies import strategy_for

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
#: Passwords of the test users (their hashes use a low scrypt cost: fast tests).
PASSWORDS = {"admin": "admin-pw-1", "reader": "reader-pw-1", "narrow": "narrow-pw-1"}
FAST_N = 2**10


def users() -> tuple[UserSpec, ...]:
    """admin (everything), reader (GET, every collection), narrow (GET, 'users' only)."""
    specs = [
        ("admin", "admin", ["*"]),
        ("reader", "reader", ["*"]),
        ("narrow", "reader", ["users"]),
    ]
    return tuple(
        UserSpec.model_validate(
            {
                "username": name,
                "password_hash": scrypt_hash(PASSWORDS[name], n=FAST_N),
                "role": role,
                "collections": collections,
            }
        )
        for name, role, collections in specs
    )


def make_config(**overrides: Any) -> ApiConfig:
    values: dict[str, Any] = {"jwt_secret": SECRET, "users": users(), "port": 0}
    values.update(overrides)
    return ApiConfig.model_validate(values)


@contextmanager
def running_api(
    store: Store,
    redis_client: redis.Redis | None = None,
    queue_name: str = "slurp",
    policy: JobPolicy | None = None,
    **config: Any,
) -> Iterator[ApiServer]:
    """The API on a real uvicorn server on 127.0.0.1:<free port>; ``PUT /api/jobs``
    applies ``policy`` if given."""
    with ApiServer(make_config(**config), store, redis_client, queue_name, policy=policy) as server:
        yield server


@contextmanager
def fresh_store(mongo_url: str) -> Iterator[Store]:
    """A store on a new database, dropped afterwards (for module-scoped fixtures)."""
    store = connect(mongo_url, f"t_api_{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        store.client.drop_database(store.db.name)
        store.close()


def login(client: httpx.Client, username: str, password: str | None = None) -> dict[str, str]:
    response = client.post(
        "/api/token/", json={"username": username, "password": password or PASSWORDS[username]}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def client_for(
    server: ApiServer, username: str | None = None, **kwargs: Any
) -> Iterator[httpx.Client]:
    """An httpx client on ``server``, logged in as ``username`` if given."""
    with httpx.Client(base_url=server.url, timeout=30.0, **kwargs) as client:
        if username is not None:
            client.headers.update(bearer(login(client, username)["access"]))
        yield client


def fill(store: Store, spec: CollectionSpec, records: Iterable[dict[str, Any]], run: str) -> None:
    """Commit one run of ``records`` into ``spec``'s collection."""
    store_run(strategy_for(store, spec, retire_grace_s=0), run, records)


def spec(kind: CollectionType, name: str, **extra: Any) -> CollectionSpec:
    return CollectionSpec(type=kind, name=name, **extra)
