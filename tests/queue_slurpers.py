"""Slurpers for the queue tests (allowed with ``slurper_modules=["tests.queue_slurpers"]``),
importable by the worker processes the tests start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


def slow_passthrough(ctx: Any, data_map: dict[str, list[Any]]) -> Iterator[Any]:
    """Every item of every source, one per ``params.delay_s`` seconds."""
    delay_s = float(ctx.params.get("delay_s", 0.0))
    for items in data_map.values():
        for item in items:
            if delay_s:
                time.sleep(delay_s)  # a slow transformation, so a test can kill the worker
            yield item


def fails(ctx: Any, data_map: dict[str, list[Any]]) -> Iterator[Any]:
    """Fails after seeing the data (its sources have consumed their messages)."""
    counts = {name: len(items) for name, items in data_map.items()}
    raise RuntimeError(f"the slurper fails on purpose (it saw {counts})")
    yield  # a generator
