"""The embedded default: a SecantusDB server on the local data folder.

When ``SLURP_MONGO_URL`` is unset, every slurp command works on the database in
``SLURP_DATA_DIR`` (default ``.slurp``). One server at a time can own that folder:
``slurp db`` or ``slurp dev`` starts it and writes its address to ``db.json``; other
commands reuse a running one, or start their own for the length of the command.
SecantusDB is an optional, GPL-2.0 extra (``pip install 'slurp[embedded]'``); nothing
here imports it — it runs as a separate ``secantusd-py`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from slurp.errors import SlurpError
from slurp.localservers import SecantusServer, ServerStartError, _port_open, find_program
from slurp.settings import Settings
from storage.store import Store, connect

__all__ = ["EmbeddedDb", "mongo_url", "open_store"]


class EmbeddedDb:
    """The SecantusDB server of one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.state_path = data_dir / "db.json"
        self.server: SecantusServer | None = None

    def running_url(self) -> str | None:
        """The URL of a live server on this folder, if any."""
        try:
            state = json.loads(self.state_path.read_text())
            pid, port, url = int(state["pid"]), int(state["port"]), str(state["url"])
        except (OSError, ValueError, KeyError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return url if _port_open(port) else None

    def start(self) -> str:
        """Start a server on the folder (``SlurpError`` if SecantusDB is missing)."""
        if find_program("secantusd-py") is None:
            raise SlurpError(
                "SLURP_MONGO_URL is unset and the embedded database is not installed: "
                "pip install 'slurp[embedded]', or set SLURP_MONGO_URL"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = SecantusServer(workdir=self.data_dir / "run", data_dir=self.data_dir / "mongo")
        try:
            server.start()
        except ServerStartError as exc:
            raise SlurpError(f"cannot start the embedded database: {exc}") from exc
        self.server = server
        pid = server._process.pid if server._process else 0
        self.state_path.write_text(json.dumps({"pid": pid, "port": server.port, "url": server.url}))
        return server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            with contextlib.suppress(OSError):
                self.state_path.unlink()


@contextlib.contextmanager
def mongo_url(settings: Settings) -> Iterator[str]:
    """The MongoDB URL to use: the configured one, a running embedded server's, or a
    server started for the duration of the ``with`` block."""
    if settings.mongo_url:
        yield settings.mongo_url
        return
    db = EmbeddedDb(settings.data_dir)
    url = db.running_url()
    if url is not None:
        yield url
        return
    url = db.start()
    try:
        yield url
    finally:
        db.stop()


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    with mongo_url(settings) as url:
        store = connect(url, settings.mongo_db)
        try:
            yield store
        finally:
            store.close()
