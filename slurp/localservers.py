"""Local server processes on loopback: a private ``redis-server`` and a SecantusDB
(MongoDB wire protocol) server. Used by the test suite, the benchmarks and the
embedded default. SecantusDB is started as a separate program (``secantusd-py``),
never imported, so production code paths do not depend on it.

``RedisServer`` can also require a password, speak only TLS (``TlsFiles``: a
certificate, its key and the CA that signed it) and replicate another server;
``SentinelServer`` is ``redis-server --sentinel`` watching a master. Together they
build the production shapes (TLS, Sentinel failover) on loopback for the tests.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

__all__ = [
    "LocalServer",
    "RedisServer",
    "SecantusServer",
    "SentinelServer",
    "ServerStartError",
    "TlsFiles",
    "free_port",
]

#: How long a server may take to accept connections after it was started.
DEFAULT_START_TIMEOUT_S = 30.0
#: How long a server may take to exit after SIGTERM before it is killed.
DEFAULT_STOP_TIMEOUT_S = 10.0


class ServerStartError(RuntimeError):
    """A local server could not be started; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def find_program(name: str) -> str | None:
    """``name`` next to the running interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


class LocalServer:
    """A child server process listening on 127.0.0.1:``port``; restartable."""

    program = ""

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"slurp-{self.program}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.program}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The argv starting the server on ``self.port``."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> Self:
        """Start the process and wait until it accepts connections."""
        argv = self.command()
        if find_program(argv[0]) is None:
            raise ServerStartError(f"{argv[0]} is not installed (see scripts/bootstrap)")
        argv[0] = str(find_program(argv[0]))
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"{self.program} exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if _port_open(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"{self.program} did not listen within {timeout_s}s:\n{self.log_tail()}"
        )

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Terminate the process (kill it if it lingers); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS endpoint: its certificate, the certificate's key, and the CA
    certificate peers are verified against."""

    cert: Path
    key: Path
    ca: Path


class RedisServer(LocalServer):
    """``redis-server`` on loopback; ``persistent`` keeps data across restarts (AOF,
    fsync on every write, as production should run it).

    ``password``: clients must AUTH (``requirepass``). ``tls``: the port speaks TLS
    only (``rediss://``); ``tls_client_certs`` also requires client certificates
    signed by ``tls.ca``. ``replica_of``: replicate the server on that port (with the
    same password and TLS settings).
    """

    program = "redis-server"

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        persistent: bool = False,
        password: str | None = None,
        tls: TlsFiles | None = None,
        tls_client_certs: bool = False,
        replica_of: int | None = None,
    ) -> None:
        super().__init__(port, workdir)
        self.persistent = persistent
        self.password = password
        self.tls = tls
        self.tls_client_certs = tls_client_certs
        self.replica_of = replica_of

    def command(self) -> list[str]:
        aof = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ports = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-replication", "yes",
                "--tls-auth-clients", "yes" if self.tls_client_certs else "no",
            ]  # fmt: skip
        auth = (
            ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        )
        replica = ["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []
        return [
            "redis-server", *ports, "--bind", "127.0.0.1",
            "--save", "", *aof, "--dir", str(self.workdir), *auth, *replica,
        ]  # fmt: skip

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls.ca))}"


class SentinelServer(LocalServer):
    """``redis-server --sentinel`` on loopback watching the master ``master_port`` as
    service ``service``. It declares the master down after ``down_after_ms`` without
    an answer and fails over to a replica (``quorum`` sentinels must agree)."""

    program = "redis-server"

    def __init__(
        self,
        master_port: int,
        service: str = "slurp",
        port: int | None = None,
        workdir: Path | None = None,
        quorum: int = 1,
        down_after_ms: int = 1000,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(port, workdir)
        self.master_port = master_port
        self.service = service
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.password = password
        self.tls = tls
        self.config_path = self.workdir / "sentinel.conf"

    def command(self) -> list[str]:
        lines = [
            "bind 127.0.0.1",
            f"dir {self.workdir}",
            f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {max(3 * self.down_after_ms, 3000)}",
            f"sentinel parallel-syncs {self.service} 1",
        ]
        if self.tls is None:
            lines.insert(0, f"port {self.port}")
        else:
            lines[:0] = [
                "port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}", f"tls-ca-cert-file {self.tls.ca}",
                "tls-replication yes", "tls-auth-clients no",
            ]  # fmt: skip
        if self.password:
            lines.append(f"sentinel auth-pass {self.service} {self.password}")
        # Sentinel rewrites its configuration file (the state it learnt): a fresh one
        # at every start.
        self.config_path.write_text("\n".join(lines) + "\n")
        return ["redis-server", str(self.config_path), "--sentinel"]

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"


class SecantusServer(LocalServer):
    """SecantusDB (MongoDB wire protocol on WiredTiger): in memory, or on ``data_dir``."""

    program = "secantusd-py"

    def __init__(
        self, port: int | None = None, workdir: Path | None = None, data_dir: Path | None = None
    ) -> None:
        super().__init__(port, workdir)
        self.data_dir = data_dir

    def command(self) -> list[str]:
        storage = str(self.data_dir) if self.data_dir is not None else ":memory:"
        return [
            "secantusd-py", "--host", "127.0.0.1", "--port", str(self.port),
            "--storage-path", storage, "--log-level", "WARNING",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
