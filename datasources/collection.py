"""``collection``: the records of another slurp collection, so jobs can chain.

Reads the live data, or ``version`` N of a versioned collection, through
``storage.reader.CollectionReader`` (one consistent state, streamed with a cursor,
without ``_id``). A collection that does not exist (yet) is a retryable ``FetchError``:
the job producing it may not have run; a version that does not exist (never made, or
pruned) is permanent.
"""

from __future__ import annotations

from collections.abc import Iterator

from contracts.datasources import CollectionSource
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ConfigError, FetchError
from datasources.progress import SourceProgress
from storage.errors import CollectionNotFoundError, VersionNotFoundError

__all__ = ["CollectionItems"]

#: Records per progress page (the cursor's own batches are pymongo's business).
PAGE_ITEMS = 1000


class CollectionItems(Source[CollectionSource]):
    type = "collection"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        reader = self.runtime.collections
        if reader is None:
            raise ConfigError(
                "collection sources need a database: build the Runtime with "
                "collections=CollectionReader(store)"
            )
        try:
            cursor = reader.find(self.config.collection, version=self.config.version)
        except CollectionNotFoundError as exc:
            raise FetchError(f"{exc} (has the job that fills it run yet?)") from None
        except VersionNotFoundError as exc:
            raise FetchError(str(exc), retryable=False) from None
        count = 0
        try:
            for record in cursor:
                if count % PAGE_ITEMS == 0:
                    progress.page()
                count += 1
                yield record
        finally:
            close = getattr(cursor, "close", None)
            if close is not None:
                close()
