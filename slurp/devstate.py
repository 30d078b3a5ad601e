"""How other commands find a running ``slurp dev``: ``<data_dir>/dev.json``.

Without a Redis broker, ``slurp dev`` runs jobs on its in-process broker, which only
its own process can reach. So it writes where its API listens, the database it works
on and its dev admin's login to ``dev.json`` (mode 0600, beside the embedded
database's own files), and ``slurp run`` hands manual runs to it through
``POST /api/jobs/{name}/runs`` instead of running them in its own process. The file
is removed when ``slurp dev`` stops; a stale one (dead process, closed port) is
ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from contracts.messages import RunJob
from slurp.errors import SlurpError
from slurp.localservers import _port_open

__all__ = [
    "DEV_STATE_FILE",
    "DevState",
    "cancel_on_dev",
    "hand_over_run",
    "read_dev_state",
    "write_dev_state",
]

DEV_STATE_FILE = "dev.json"
#: Timeout of one request to the dev server.
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DevState:
    pid: int
    api_url: str
    port: int
    database: str  # "<mongo url or 'embedded'>/<database name>": whose runs it takes
    username: str
    password: str


def database_id(mongo_url: str | None, mongo_db: str) -> str:
    """Which database a process works on, for comparing two processes' settings."""
    return f"{mongo_url or 'embedded'}/{mongo_db}"


def write_dev_state(data_dir: Path, state: DevState) -> Path:
    """Write ``state`` readable by the owner only; return the file's path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_STATE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(state), out)
    return path


def remove_dev_state(data_dir: Path, pid: int) -> None:
    """Remove the file if it is ``pid``'s (a newer ``slurp dev`` may have replaced it)."""
    state = _read(data_dir)
    if state is not None and state.pid == pid:
        with contextlib.suppress(OSError):
            (data_dir / DEV_STATE_FILE).unlink()


def _read(data_dir: Path) -> DevState | None:
    try:
        raw = json.loads((data_dir / DEV_STATE_FILE).read_text())
        return DevState(**{key: raw[key] for key in DevState.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_dev_state(data_dir: Path, database: str) -> DevState | None:
    """The running ``slurp dev`` of ``data_dir`` working on ``database``, if any."""
    state = _read(data_dir)
    if state is None or state.database != database:
        return None
    try:
        os.kill(state.pid, 0)
    except OSError:
        return None
    return state if _port_open(state.port) else None


def hand_over_run(state: DevState, run: RunJob) -> str:
    """Queue ``run`` on the ``slurp dev`` of ``state`` (as its dev admin); its run id.
    ``SlurpError`` when the dev server refuses or cannot be reached."""
    try:
        with httpx.Client(base_url=state.api_url, timeout=REQUEST_TIMEOUT_S) as client:
            login = client.post(
                "/api/token/", json={"username": state.username, "password": state.password}
            )
            login.raise_for_status()
            answer = client.post(
                f"/api/jobs/{run.job}/runs",
                json={"params": run.params, "run_id": run.run_id, "force": run.force},
                headers={"Authorization": f"Bearer {login.json()['access']}"},
            )
            answer.raise_for_status()
            return str(answer.json()["run_id"])
    except httpx.HTTPStatusError as exc:
        detail = exc.response.text[:300]
        raise SlurpError(f"slurp dev at {state.api_url} refused the run: {detail}") from None
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise SlurpError(f"cannot reach slurp dev at {state.api_url}: {exc}") from None


def cancel_on_dev(state: DevState, run_id: str) -> str:
    """Cancel ``run_id`` on the ``slurp dev`` of ``state`` (``POST /api/runs/{id}/cancel``):
    ``requested``, or ``committing``/``done`` when refused. ``SlurpError`` otherwise."""
    try:
        with httpx.Client(base_url=state.api_url, timeout=REQUEST_TIMEOUT_S) as client:
            login = client.post(
                "/api/token/", json={"username": state.username, "password": state.password}
            )
            login.raise_for_status()
            answer = client.post(
                f"/api/runs/{quote(run_id, safe='')}/cancel",
                headers={"Authorization": f"Bearer {login.json()['access']}"},
            )
            if answer.status_code == 409:
                detail = str(answer.json().get("detail", ""))
                return "committing" if "committing" in detail else "done"
            answer.raise_for_status()
            return "requested"
    except httpx.HTTPStatusError as exc:
        detail = exc.response.text[:300]
        raise SlurpError(f"slurp dev at {state.api_url} refused the cancel: {detail}") from None
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise SlurpError(f"cannot reach slurp dev at {state.api_url}: {exc}") from None
