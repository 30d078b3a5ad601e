"""``slurp users add/list/remove/set-password/set-role/set-collections`` against a real
MongoDB-wire server, and what the API makes of the users they manage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from api_harness import PASSWORDS, bearer, client_for, running_api, users

from storage.store import connect
from storage.users import UserStore

Cli = Callable[..., subprocess.CompletedProcess[str]]
SECRET_PASSWORD = "correct-horse-battery"


@pytest.fixture
def cli(mongo_url: str, mongo_db_name: str, tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURP_")}
    bootstrap = [u.model_dump(mode="json") for u in users() if u.username == "admin"]
    bootstrap[0]["password_hash"] = users()[0].password_hash.get_secret_value()
    env.update(
        SLURP_MONGO_URL=mongo_url,
        SLURP_MONGO_DB=mongo_db_name,
        SLURP_LOG_LEVEL="WARNING",
        SLURP_API_USERS=json.dumps(bootstrap),
    )

    def run(
        *args: str, ok: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "slurp", *args], env=env, cwd=tmp_path, input=stdin,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        assert SECRET_PASSWORD not in proc.stdout + proc.stderr
        return proc

    return run


def listed(cli: Cli) -> dict[str, dict[str, object]]:
    return {row["username"]: row for row in json.loads(cli("users", "list", "--json").stdout)}


def test_users_lifecycle(cli: Cli, mongo_url: str, mongo_db_name: str) -> None:
    added = cli("users", "add", "bi", "-c", "users", "-c", "orders", "--password-stdin",
                stdin=SECRET_PASSWORD + "\n")  # fmt: skip
    assert "bi: added (reader)" in added.stdout
    assert listed(cli) == {
        "admin": {"username": "admin", "role": "admin", "collections": ["*"], "source": "settings"},
        "bi": {"username": "bi", "role": "reader", "collections": ["users", "orders"],
               "source": "database"},
    }  # fmt: skip
    store = connect(mongo_url, mongo_db_name)
    try:
        stored = UserStore(store).get("bi")
        assert stored is not None and stored.password_hash.startswith("$argon2id$v=19$")
        epoch = stored.token_epoch
        cli("users", "set-role", "bi", "admin")
        cli("users", "set-collections", "bi", "*")
        assert listed(cli)["bi"]["role"] == "admin" and listed(cli)["bi"]["collections"] == ["*"]
        cli("users", "set-password", "bi", "--password-stdin", stdin="another-long-password\n")
        changed = UserStore(store).get("bi")
        assert changed is not None and changed.token_epoch != epoch  # tokens revoked
        assert changed.password_hash != stored.password_hash
        assert "bi: removed" in cli("users", "remove", "bi").stdout
        assert UserStore(store).get("bi") is None
        assert set(listed(cli)) == {"admin"}
    finally:
        store.close()


def test_password_from_a_prompt_asked_twice(cli: Cli) -> None:
    cli("users", "add", "ops", "--role", "admin", stdin=f"{SECRET_PASSWORD}\n{SECRET_PASSWORD}\n")
    assert listed(cli)["ops"]["role"] == "admin"
    differ = cli("users", "add", "ops2", stdin=f"{SECRET_PASSWORD}\nsomething-else\n", ok=False)
    assert "ops2" not in listed(cli)
    assert "Error" in differ.stdout + differ.stderr


def test_errors_are_one_clear_line(cli: Cli) -> None:
    cli("users", "add", "bi", "--password-stdin", stdin=SECRET_PASSWORD)
    cases = [
        (("users", "add", "bi", "--password-stdin"), SECRET_PASSWORD, "exists already"),
        (("users", "add", "admin", "--password-stdin"), SECRET_PASSWORD,
         "'admin' is a bootstrap user of SLURP_API_USERS: read-only here"),
        (("users", "remove", "admin"), None, "bootstrap user"),
        (("users", "set-password", "admin", "--password-stdin"), SECRET_PASSWORD,
         "bootstrap user"),
        (("users", "remove", "ghost"), None, "no user named 'ghost' in the database"),
        (("users", "set-role", "ghost", "admin"), None, "no user named 'ghost'"),
        (("users", "set-role", "bi", "root"), None, "role: one of admin, reader"),
        (("users", "add", "new", "--password-stdin"), "short", "8 to 1024 characters"),
        (("users", "add", "bad name!", "--password-stdin"), SECRET_PASSWORD, "username"),
        (("users", "add", "new", "--role", "root", "--password-stdin"), SECRET_PASSWORD, "role"),
    ]  # fmt: skip
    for args, stdin, message in cases:
        proc = cli(*args, stdin=stdin, ok=False)
        assert message in proc.stderr, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_the_api_serves_the_users_the_cli_manages(
    cli: Cli, mongo_url: str, mongo_db_name: str
) -> None:
    cli("users", "add", "svc", "--role", "admin", "--password-stdin", stdin=SECRET_PASSWORD)
    store = connect(mongo_url, mongo_db_name)
    try:
        with running_api(store) as server, client_for(server) as client:
            body = {"username": "svc", "password": SECRET_PASSWORD}
            tokens = client.post("/api/token/", json=body).json()
            assert client.get("/api/jobs", headers=bearer(tokens["access"])).status_code == 200
            cli("users", "set-role", "svc", "reader")
            assert client.put("/api/jobs/x", headers=bearer(tokens["access"]), json={}
                              ).status_code == 403  # fmt: skip
            assert client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]}
                               ).status_code == 401  # fmt: skip
            fresh = client.post("/api/token/", json=body).json()
            cli("users", "remove", "svc")
            for response in (
                client.get("/api/jobs", headers=bearer(fresh["access"])),
                client.post("/api/token/refresh/", json={"refresh": fresh["refresh"]}),
            ):
                assert response.status_code == 401
            assert client.post("/api/token/", json=body).status_code == 401
            assert client.post(
                "/api/token/", json={"username": "admin", "password": PASSWORDS["admin"]}
            ).status_code == 200  # fmt: skip
    finally:
        store.close()
