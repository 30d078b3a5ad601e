"""Production-shaped Redis on loopback for tests: TLS certificates made with the
``openssl`` CLI, and a Sentinel setup (master, replica, sentinel) that can fail over.

Everything is a real ``redis-server`` (Debian's package; ``redis-server --sentinel``
is Redis Sentinel, the program Debian's ``redis-sentinel`` package links to) on free
127.0.0.1 ports, in a private folder. ``scripts/bootstrap`` installs ``redis-server``
and ``openssl``; without them these tests skip locally and fail in CI.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from slurp.localservers import RedisServer, SentinelServer, TlsFiles

__all__ = ["Certificates", "SentinelSetup", "make_certificates", "sentinel_setup"]

#: Days the test certificates are valid.
_DAYS = "2"


@dataclass(frozen=True)
class Certificates:
    """A private CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, all signed by the CA; plus an unrelated CA (verification must fail)."""

    server: TlsFiles
    client: TlsFiles
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    program = shutil.which("openssl")
    if program is None:
        raise FileNotFoundError("openssl is not installed (see scripts/bootstrap)")
    subprocess.run(
        [program, *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    )


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=folder)  # fmt: skip
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", _DAYS, "-sha256",
             "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip


def make_certificates(folder: Path) -> Certificates:
    """Create the CA, server and client key pairs in ``folder`` (a few hundred ms)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.crt", "-days", _DAYS, "-subj", f"/CN=slurp test {name}",
                 cwd=folder)  # fmt: skip
    server_ext = (
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _signed(folder, "server", "/CN=127.0.0.1", server_ext)
    _signed(folder, "client", "/CN=slurp", "extendedKeyUsage=clientAuth\n")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    ca = folder / "ca.crt"
    return Certificates(
        server=TlsFiles(cert=folder / "server.crt", key=folder / "server.key", ca=ca),
        client=TlsFiles(cert=folder / "client.crt", key=folder / "client.key", ca=ca),
        other_ca=folder / "other-ca.crt",
    )


@dataclass
class SentinelSetup:
    """A master, its replica and one sentinel (quorum 1) watching them."""

    master: RedisServer
    replica: RedisServer
    sentinel: SentinelServer
    service: str
    password: str

    def sentinel_client(self) -> redis.Redis:
        """A plain client of the sentinel itself (to ask it and command it)."""
        tls = self.sentinel.tls
        if tls is None:
            return redis.Redis(host="127.0.0.1", port=self.sentinel.port)
        return redis.Redis(host="127.0.0.1", port=self.sentinel.port, ssl=True,
                           ssl_ca_certs=str(tls.ca))  # fmt: skip

    def master_port(self) -> int:
        with self.sentinel_client() as client:
            _host, port = client.sentinel_get_master_addr_by_name(self.service)
        return int(port)

    def wait_until_master_is(self, port: int, timeout_s: float = 60) -> None:
        """Poll the sentinel until it names ``port`` the master (a failover's end)."""
        deadline = time.monotonic() + timeout_s
        while self.master_port() != port:
            if time.monotonic() > deadline:
                raise AssertionError(f"the sentinel did not promote :{port} in {timeout_s}s")
            time.sleep(0.1)  # polling interval of a deadline-bounded poll

    def wait_until_demoted(self, server: RedisServer, timeout_s: float = 60) -> None:
        """Poll ``server`` (a former master) until it is a replica: the sentinels have
        reconfigured it, and closed its clients' connections, ending the failover."""
        client = redis.Redis(host="127.0.0.1", port=server.port, password=self.password)
        deadline = time.monotonic() + timeout_s
        with client:
            while client.info("replication")["role"] != "slave":
                if time.monotonic() > deadline:
                    raise AssertionError(f":{server.port} was not demoted in {timeout_s}s")
                time.sleep(0.1)  # polling interval of a deadline-bounded poll

    def wait_until_replicated(self, timeout_s: float = 30) -> None:
        """Poll until the replica is in sync and the sentinel knows it (a failover
        needs a replica it can promote)."""
        deadline = time.monotonic() + timeout_s
        with self.sentinel_client() as sentinel:
            while True:
                replicas = sentinel.sentinel_slaves(self.service)
                if any(
                    int(r["port"]) == self.replica.port
                    and r.get("master-link-status") == "ok"
                    and not r.get("is_disconnected")
                    for r in replicas
                ):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"replica not in sync after {timeout_s}s: {replicas}")
                time.sleep(0.1)  # polling interval of a deadline-bounded poll


@contextmanager
def sentinel_setup(
    folder: Path, service: str = "slurp", password: str = "s3cret", tls: TlsFiles | None = None
) -> Iterator[SentinelSetup]:
    """Start master, replica and sentinel in ``folder``; stop them all at the end."""
    with ExitStack() as stack:
        master = RedisServer(workdir=folder / "master", password=password, tls=tls)
        stack.callback(master.close)
        master.start()
        replica = RedisServer(
            workdir=folder / "replica", password=password, tls=tls, replica_of=master.port
        )
        stack.callback(replica.close)
        replica.start()
        sentinel = SentinelServer(
            master.port, service, workdir=folder / "sentinel", password=password, tls=tls
        )
        stack.callback(sentinel.close)
        sentinel.start()
        setup = SentinelSetup(master, replica, sentinel, service, password)
        setup.wait_until_replicated()
        yield setup
