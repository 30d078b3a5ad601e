"""A real ``slurp dev`` process for tests: started with the ``slurp`` console script
(as a newcomer starts it), on the session's MongoDB-wire server, with its output in a
log file the tests read (the console URL and the one-time admin login).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from api.passwords import scrypt_hash
from tests.worker_harness import free_port, wait_for

__all__ = ["DevProcess", "dev_env", "slurp_command", "user_json"]

#: What ``slurp dev`` prints once the console answers.
LOGIN_RE = re.compile(r"log in as (\S+) / (\S+)")
URL_RE = re.compile(r"console: (http://\S+?)/\s")


def slurp_command() -> list[str]:
    """The installed ``slurp`` console script (its ``sys.path`` does not hold the
    working directory, unlike ``python -m slurp``)."""
    script = Path(sys.executable).parent / "slurp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "slurp"]


def dev_env(mongo_url: str, db: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a test's slurp processes: no inherited ``SLURP_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURP_")}
    env.update(
        SLURP_MONGO_URL=mongo_url,
        SLURP_MONGO_DB=db,
        SLURP_DATA_DIR=str(data_dir),
        SLURP_METRICS_PORT="0",
        SLURP_LOG_LEVEL="INFO",
        SLURP_TICKER_POLL_S="0.2",
    )
    env.update(extra)
    return env


def user_json(username: str, password: str, role: str, collections: list[str]) -> dict[str, Any]:
    """One ``SLURP_API_USERS`` entry (a cheap hash: fast tests)."""
    return {
        "username": username,
        "password_hash": scrypt_hash(password, n=2**10),
        "role": role,
        "collections": collections,
    }


class DevProcess:
    """``slurp dev [FILE] --port N`` in ``cwd`` until ``stop``."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.cwd = cwd
        self.env = env
        self.args = args
        self.port = free_port()
        self.log_path = cwd / f"slurp-dev-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.username = ""
        self.password = ""

    def start(self, timeout_s: float = 90.0) -> DevProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*slurp_command(), "dev", *self.args, "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = self.proc

        def ready() -> re.Match[str] | None:
            if proc.poll() is not None:
                raise AssertionError(f"slurp dev exited with {proc.returncode}:\n{self.log()}")
            return LOGIN_RE.search(self.log())

        login = wait_for(ready, timeout_s, "slurp dev to print its login")
        self.username, self.password = login.group(1), login.group(2)
        found = URL_RE.search(self.log())
        assert found is not None, self.log()
        self.url = found.group(1)
        assert self.url == f"http://127.0.0.1:{self.port}", self.log()
        return self

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)

    def token(self, username: str | None = None, password: str | None = None) -> str:
        with self.client() as client:
            answer = client.post(
                "/api/token/",
                json={"username": username or self.username, "password": password or self.password},
            )
            assert answer.status_code == 200, answer.text
            return str(answer.json()["access"])

    def stop(self, timeout_s: float = 30.0) -> int:
        """Ctrl-C, as a person stops it; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout_s)
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
