"""Starting dramatiq worker processes for slurp (used by `slurp worker` and tests).

``worker_command`` is the exact ``dramatiq`` command line; ``worker_env`` the
environment: the settings as ``SLURP_*`` variables plus dramatiq's Prometheus
variables (a fresh multiprocess folder per worker group, the metrics port). A setting
given as a file (``SLURP_REDIS_URL_FILE``, ``slurp.secretfiles``) stays a file: its
value is never copied into the workers' environment.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from slurp.secretfiles import FILE_SUFFIX
from slurp.settings import Settings
from workers.events import events_queue

__all__ = ["worker_command", "worker_env"]


def worker_command(settings: Settings, processes: int | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.app:setup",
        "--processes",
        str(processes or settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
        "--queues",
        settings.queue_name,
        events_queue(settings.queue_name),
    ]


def worker_env(
    settings: Settings, base: dict[str, str] | None = None, metrics_dir: Path | None = None
) -> dict[str, str]:
    """Environment of a worker group. Metrics are on unless ``metrics_port`` is 0."""
    env = dict(os.environ if base is None else base)
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        key = f"SLURP_{name.upper()}"
        if key + FILE_SUFFIX in env:  # a secret from a file: the workers read the same file
            continue
        env[key] = ",".join(value) if isinstance(value, list) else str(value)
    if settings.metrics_port:
        folder = metrics_dir or Path(tempfile.mkdtemp(prefix="slurp-metrics-"))
        shutil.rmtree(folder, ignore_errors=True)  # stale samples of dead processes
        folder.mkdir(parents=True)
        env["dramatiq_prom_db"] = str(folder)
        # prometheus-client picks multiprocess mode when it is first imported.
        env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        env["dramatiq_prom_port"] = str(settings.metrics_port)
        env["dramatiq_prom_host"] = settings.metrics_host
    return env
