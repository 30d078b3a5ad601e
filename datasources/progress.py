"""Progress of a run's fetching: items and pages per datasource, so far.

The worker creates one ``Progress`` per run with an ``on_update`` callback (publish to
Redis, print in the CLI, ...). Datasources get a ``SourceProgress`` and call
``page()`` once per page (HTTP page, SQL batch); items are counted for them by
``datasources.registry.fetch`` as they stream past. ``on_update`` receives a snapshot
at most every ``interval_s`` seconds, and always when a source finishes. A failing
callback is logged and ignored: an observer never breaks a run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

__all__ = ["DEFAULT_PROGRESS_INTERVAL_S", "Progress", "SourceCounts", "SourceProgress"]

log = logging.getLogger(__name__)

#: Least time between two ``on_update`` calls (finishing a source always reports).
DEFAULT_PROGRESS_INTERVAL_S = 0.5
#: Items between two looks at the clock (keeps per-item cost at an increment).
_CHECK_EVERY_ITEMS = 256


@dataclass(frozen=True)
class SourceCounts:
    """What one datasource fetched so far."""

    items: int = 0
    pages: int = 0
    done: bool = False


Snapshot = Mapping[str, SourceCounts]


class Progress:
    """Counts per datasource name; ``snapshot()`` is a consistent copy."""

    def __init__(
        self,
        on_update: Callable[[Snapshot], None] | None = None,
        interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_update = on_update
        self.interval_s = interval_s
        self._clock = clock
        self._counts: dict[str, SourceCounts] = {}
        self._last_report = clock()

    def source(self, name: str) -> SourceProgress:
        """The counter of datasource ``name`` (registered with zero counts)."""
        self._counts.setdefault(name, SourceCounts())
        return SourceProgress(self, name)

    def snapshot(self) -> dict[str, SourceCounts]:
        return dict(self._counts)

    @property
    def items(self) -> int:
        return sum(c.items for c in self._counts.values())

    @property
    def pages(self) -> int:
        return sum(c.pages for c in self._counts.values())

    def _add(self, name: str, items: int = 0, pages: int = 0, done: bool = False) -> None:
        old = self._counts.get(name, SourceCounts())
        self._counts[name] = replace(
            old, items=old.items + items, pages=old.pages + pages, done=old.done or done
        )
        if done or pages:
            self._maybe_report(force=done)

    def _maybe_report(self, force: bool = False) -> None:
        if self.on_update is None:
            return
        now = self._clock()
        if not force and now - self._last_report < self.interval_s:
            return
        self._last_report = now
        try:
            self.on_update(self.snapshot())
        except Exception:
            log.exception("progress callback failed (ignored)")


class SourceProgress:
    """The counter one datasource reports to."""

    def __init__(self, progress: Progress, name: str) -> None:
        self._progress = progress
        self.name = name
        self._pending = 0

    def page(self) -> None:
        """One more page (HTTP page, SQL batch) was fetched."""
        self.flush()
        self._progress._add(self.name, pages=1)

    def item(self) -> None:
        """One more item; cheap enough to call per item."""
        self._pending += 1
        if self._pending >= _CHECK_EVERY_ITEMS:
            self.flush()
            self._progress._maybe_report()

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, 0
            self._progress._add(self.name, items=pending)

    def done(self) -> None:
        """The source finished; reports at once."""
        self.flush()
        self._progress._add(self.name, done=True)

    @property
    def counts(self) -> SourceCounts:
        self.flush()
        return self._progress.snapshot()[self.name]
