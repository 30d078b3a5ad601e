"""A TCP proxy in front of the test database whose answers can be held back.

``GatedProxy(mongo_url)`` listens on 127.0.0.1:<free port> and forwards every
connection to the database. Requests always pass at once; while the gate is closed
(``close()``), the database's answers wait in the proxy until ``open()``. So every
query issued meanwhile is slow for exactly as long as the test wants, without
loading the CPU: requests stay in progress, deterministically.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

from pymongo.uri_parser import parse_uri

__all__ = ["GatedProxy"]

_CHUNK = 64 * 1024


class GatedProxy:
    def __init__(self, mongo_url: str) -> None:
        host, port = parse_uri(mongo_url)["nodelist"][0]
        self._target = (str(host), int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def close(self) -> None:
        """Hold back the database's answers from now on."""
        self._open.clear()

    def open(self) -> None:
        """Let the held answers, and all later ones, through."""
        self._open.set()

    def start(self) -> Self:
        threading.Thread(target=self._accept, name="db-gate", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._open.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for source, target, gated in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, target, gated), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, gated: bool) -> None:
        try:
            while data := source.recv(_CHUNK):
                if gated:
                    self._open.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
