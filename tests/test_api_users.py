"""Users in the database next to the bootstrap users of the settings; argon2id hashes;
refresh tokens rotated and revocable (logout, reuse, user removal and changes)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from api_harness import (
    SECRET,
    bearer,
    client_for,
    fresh_store,
    login,
    running_api,
    users,
)

from api.console.sessions import SESSIONS_COLLECTION
from api.passwords import parse_hash, scrypt_hash, verify_password
from api.server import ApiServer
from api.users import UserDirectory, UserError
from storage.refresh_tokens import REFRESH_TOKENS_COLLECTION, RefreshTokenStore
from storage.store import Store
from storage.users import CONSOLE_SESSIONS_COLLECTION, UserStore

BAD_TOKEN = {"detail": "Given token not valid for any token type"}
BAD_LOGIN = {"detail": "No active account found with the given credentials"}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}


@pytest.fixture(scope="module")
def store(mongo_url: str) -> Iterator[Store]:
    with fresh_store(mongo_url) as shared:
        yield shared


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[ApiServer]:
    with running_api(store) as api:
        yield api


@pytest.fixture
def directory(store: Store) -> UserDirectory:
    """The users of the module's database, with the harness users as bootstrap users."""
    return UserDirectory(users(), store)


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with client_for(server) as plain:
        yield plain


_names = iter(range(1_000_000))


def new_user(directory: UserDirectory, role: str = "reader", **kwargs: Any) -> tuple[str, str]:
    """A fresh database user; (username, password)."""
    name, password = f"user{next(_names)}", f"pw-{next(_names)}-long"
    directory.add(name, password, role, **kwargs)
    return name, password


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/token/refresh/", json={"refresh": token})


def test_database_users_log_in_with_argon2id_hashes(
    directory: UserDirectory, store: Store, client: httpx.Client
) -> None:
    name, password = new_user(directory, collections=["users"])
    stored = UserStore(store).get(name)
    assert stored is not None and stored.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert password not in str(store.db["slurp_users"].find_one({"_id": name}))
    tokens = login(client, name, password)
    assert jwt.decode(tokens["access"], SECRET, algorithms=["HS256"])["user_id"] == name
    assert client.get("/api/collections", headers=bearer(tokens["access"])).status_code == 200
    elsewhere = client.get("/api/collections/orders", headers=bearer(tokens["access"]))
    assert (elsewhere.status_code, elsewhere.json()) == (403, FORBIDDEN)  # the ACL
    wrong = client.post("/api/token/", json={"username": name, "password": password + "x"})
    assert (wrong.status_code, wrong.json()) == (401, BAD_LOGIN)


def test_bootstrap_users_win_and_are_read_only(
    directory: UserDirectory, store: Store, client: httpx.Client
) -> None:
    # A database document with a bootstrap user's name (written behind slurp's back).
    UserStore(store).add("reader", scrypt_hash("db-password", n=2**10), "admin", ["*"])
    assert client.post(
        "/api/token/", json={"username": "reader", "password": "db-password"}
    ).json() == BAD_LOGIN  # fmt: skip
    tokens = login(client, "reader")  # the settings' (scrypt) password still verifies
    assert client.put("/api/jobs/x", headers=bearer(tokens["access"]), json={}).json() == FORBIDDEN
    assert directory.shadowed() == ["reader"]
    assert [u.source for u in directory.all() if u.username == "reader"] == ["settings"]
    for change in (
        lambda: directory.add("admin", "long-enough-pw", "reader"),
        lambda: directory.remove("admin"),
        lambda: directory.set_password("admin", "long-enough-pw"),
        lambda: directory.set_role("admin", "reader"),
        lambda: directory.set_collections("admin", ["users"]),
    ):
        with pytest.raises(UserError, match="bootstrap user of SLURP_API_USERS"):
            change()
    UserStore(store).remove("reader")


def test_user_values_are_checked(directory: UserDirectory) -> None:
    for args, message in [
        (("bad name!", "long-enough-pw", "reader"), "username"),
        (("okname", "short", "reader"), "8 to 1024 characters"),
        (("okname", "long-enough-pw", "root"), "role"),
    ]:
        with pytest.raises(UserError, match=message) as raised:
            directory.add(*args)
        assert "long-enough-pw" not in str(raised.value)
    name, _ = new_user(directory)
    with pytest.raises(UserError, match="exists already"):
        directory.add(name, "long-enough-pw", "reader")
    with pytest.raises(UserError, match="role: one of admin, reader"):
        directory.set_role(name, "root")
    with pytest.raises(UserError, match="no user named 'ghost'"):
        directory.remove("ghost")


def test_refresh_rotates_and_a_reused_token_revokes_its_login(
    directory: UserDirectory, client: httpx.Client
) -> None:
    name, password = new_user(directory)
    first = login(client, name, password)
    other_login = login(client, name, password)
    rotated = refresh(client, first["refresh"])
    assert rotated.status_code == 200 and set(rotated.json()) == {"access", "refresh"}
    second = rotated.json()
    assert second["refresh"] != first["refresh"]
    assert client.get("/api/jobs", headers=bearer(second["access"])).status_code == 200
    third = refresh(client, second["refresh"]).json()  # the new one works once
    # The first token again: someone else holds a copy. Every token of that login ends.
    assert (refresh(client, first["refresh"]).status_code, refresh(client, first["refresh"]).json()
            ) == (401, BAD_TOKEN)  # fmt: skip
    assert refresh(client, third["refresh"]).json() == BAD_TOKEN
    # ... but not the tokens of the user's other logins.
    assert refresh(client, other_login["refresh"]).status_code == 200


def test_concurrent_refreshes_of_one_token_yield_one_pair(
    directory: UserDirectory, server: ApiServer
) -> None:
    name, password = new_user(directory)
    with client_for(server) as client:
        token = login(client, name, password)["refresh"]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def use() -> None:
        with client_for(server) as client:
            start.wait()
            status = refresh(client, token).status_code
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == {200: 1, 401: 7}


def test_logout_revokes_the_login(directory: UserDirectory, client: httpx.Client) -> None:
    name, password = new_user(directory)
    tokens = login(client, name, password)
    current = refresh(client, tokens["refresh"]).json()
    assert client.post("/api/token/verify/", json={"token": current["refresh"]}).json() == {}
    out = client.post("/api/token/blacklist/", json={"refresh": current["refresh"]})
    assert (out.status_code, out.json()) == (200, {})
    assert refresh(client, current["refresh"]).json() == BAD_TOKEN
    assert client.post("/api/token/verify/", json={"token": current["refresh"]}).status_code == 401
    again = client.post("/api/token/blacklist/", json={"refresh": current["refresh"]})
    assert (again.status_code, again.json()) == (401, BAD_TOKEN)
    # the logout/ alias, with a form body
    other = login(client, name, password)
    assert client.post("/api/token/logout/", data={"refresh": other["refresh"]}).json() == {}
    assert refresh(client, other["refresh"]).json() == BAD_TOKEN


def test_verify(directory: UserDirectory, client: httpx.Client) -> None:
    name, password = new_user(directory)
    tokens = login(client, name, password)
    for token in (tokens["access"], tokens["refresh"]):
        answer = client.post("/api/token/verify/", json={"token": token})
        assert (answer.status_code, answer.json()) == (200, {})
    refresh(client, tokens["refresh"])  # used: no longer valid
    for token in (tokens["refresh"], "garbage", tokens["access"] + "x"):
        answer = client.post("/api/token/verify/", json={"token": token})
        assert (answer.status_code, answer.json()) == (401, BAD_TOKEN)
    directory.remove(name)
    assert client.post("/api/token/verify/", json={"token": tokens["access"]}).status_code == 401


@pytest.mark.parametrize("change", ["remove", "set_password", "set_role"])
def test_user_changes_revoke_refresh_tokens(
    directory: UserDirectory, client: httpx.Client, change: str
) -> None:
    name, password = new_user(directory, role="admin")
    tokens = login(client, name, password)
    if change == "remove":
        directory.remove(name)
    elif change == "set_password":
        directory.set_password(name, "a-new-password")
    else:
        directory.set_role(name, "reader")
    assert refresh(client, tokens["refresh"]).json() == BAD_TOKEN
    access = client.put("/api/jobs/x", headers=bearer(tokens["access"]), json={})
    expected = {"remove": (401, BAD_TOKEN), "set_role": (403, FORBIDDEN)}.get(change)
    if expected is not None:  # a removal or a role change applies to the next request
        assert (access.status_code, access.json()) == expected
    if change == "set_password":
        assert client.post(
            "/api/token/", json={"username": name, "password": password}
        ).json() == BAD_LOGIN  # fmt: skip
        assert login(client, name, "a-new-password")


def test_acl_changes_apply_at_once_and_keep_the_tokens(
    directory: UserDirectory, client: httpx.Client
) -> None:
    name, password = new_user(directory)
    tokens = login(client, name, password)
    headers = bearer(tokens["access"])
    assert client.get("/api/collections/nowhere", headers=headers).status_code == 404
    directory.set_collections(name, ["users"])
    narrowed = client.get("/api/collections/nowhere", headers=headers)
    assert narrowed.status_code == 403
    assert refresh(client, tokens["refresh"]).status_code == 200


def test_a_refresh_racing_a_password_change_is_refused(
    directory: UserDirectory, store: Store, client: httpx.Client
) -> None:
    """A refresh that stored its new token just after a password change deleted the
    user's tokens: the token carries the old epoch and is refused."""
    name, password = new_user(directory)
    tokens = login(client, name, password)
    claims = jwt.decode(tokens["refresh"], SECRET, algorithms=["HS256"])
    before = RefreshTokenStore(store).get(claims["jti"])
    assert before is not None
    directory.set_password(name, "a-new-password")
    assert RefreshTokenStore(store).get(claims["jti"]) is None
    RefreshTokenStore(store).add(
        before.jti, before.family, name, before.epoch, before.expires_at
    )  # the late write of the racing refresh
    assert refresh(client, tokens["refresh"]).json() == BAD_TOKEN


def test_settings_users_lose_their_tokens_when_the_settings_change(
    store: Store, client: httpx.Client
) -> None:
    tokens = login(client, "narrow")
    changed = tuple(u.model_copy(update={"role": "admin"}) if u.username == "narrow" else u
                    for u in users())  # fmt: skip
    with running_api(store, users=changed) as other, client_for(other) as elsewhere:
        assert refresh(elsewhere, tokens["refresh"]).json() == BAD_TOKEN
    assert login(client, "narrow")  # (the module's server still has the old role)


def test_older_hashes_are_upgraded_on_login(
    directory: UserDirectory, store: Store, client: httpx.Client
) -> None:
    UserStore(store).add("legacy", scrypt_hash("legacy-password", n=2**10), "reader", ["*"])
    epoch = directory.get("legacy").epoch  # type: ignore[union-attr]
    tokens = login(client, "legacy", "legacy-password")
    stored = UserStore(store).get("legacy")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert verify_password("legacy-password", stored.password_hash)
    assert not parse_hash(stored.password_hash).needs_rehash()
    assert stored.token_epoch == epoch  # a rehash is not a password change:
    assert refresh(client, tokens["refresh"]).status_code == 200  # tokens stay valid


def test_refresh_tokens_are_stored_with_a_ttl_index(
    directory: UserDirectory, store: Store, client: httpx.Client
) -> None:
    name, password = new_user(directory)
    login(client, name, password)
    indexes = {i["name"]: i for i in store.db[REFRESH_TOKENS_COLLECTION].list_indexes()}
    assert indexes["expires_at_1"]["expireAfterSeconds"] == 0
    assert store.db[REFRESH_TOKENS_COLLECTION].count_documents({"username": name}) == 1


def test_the_console_signs_in_database_users_and_ends_their_sessions(
    directory: UserDirectory, server: ApiServer
) -> None:
    assert CONSOLE_SESSIONS_COLLECTION == SESSIONS_COLLECTION
    name, password = new_user(directory)
    with httpx.Client(base_url=server.url, timeout=30.0) as browser:
        form = browser.get("/login")
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed_in = browser.post(
            "/login", data={"csrf": csrf, "username": name, "password": password, "next": "/"}
        )
        assert signed_in.status_code == 303, signed_in.text
        assert browser.get("/").status_code == 200
        directory.set_password(name, "a-new-password")  # ends the console session too
        assert browser.get("/").status_code == 303
