"""``inline``: the ``records`` written in the job file, as they are."""

from __future__ import annotations

import copy
from collections.abc import Iterator

from contracts.datasources import InlineSource
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.progress import SourceProgress

__all__ = ["InlineItems"]


class InlineItems(Source[InlineSource]):
    """Yields a deep copy of each record (a slurper may change its items freely)."""

    type = "inline"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        progress.page()
        for record in self.config.records:
            yield copy.deepcopy(record)
