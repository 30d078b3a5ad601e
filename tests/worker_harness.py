"""Real dramatiq worker processes for tests (``dramatiq workers.app:setup``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from slurp.settings import Settings
from workers.launch import worker_command, worker_env

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout_s: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)  # polling interval of a deadline-bounded poll, not a sync sleep


class WorkerGroup:
    """One ``dramatiq`` worker command (a parent plus ``processes`` children)."""

    def __init__(self, settings: Settings, log_path: Path, processes: int = 1) -> None:
        self.settings = settings
        self.log_path = log_path
        self.processes = processes
        self.command = worker_command(settings, processes)
        self.env = worker_env(settings, metrics_dir=log_path.parent / f"{log_path.stem}-prom")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerGroup:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{self.log()}")
            return self.log().count("Worker process is ready for action.") >= self.processes

        wait_for(ready, 60, "the worker processes to boot")
        return self

    def kill(self) -> None:
        """SIGKILL the whole group at once, like a host dying."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def settings_for(redis_url: str, mongo_url: str, db: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "mongo_url": mongo_url,
        "mongo_db": db,
        "queue_name": f"q{db[-8:]}",
        "metrics_port": 0,
        "worker_threads": 2,
        "worker_heartbeat_timeout_s": 3,
        "lease_ttl_s": 3,
    }
    values.update(extra)
    return Settings.model_validate(values)
