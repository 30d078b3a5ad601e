"""Reading collections: live data, a version, the version list, counts.

A read resolves the catalog once, then reads one physical collection, so it sees one
consistent state. Results never contain ``_id`` unless ``with_id=True`` (for the
upserted types ``_id`` is the record's key).

``max_time_ms``: the server-side time limit (MongoDB's ``maxTimeMS``) of every query on
records (``find``, cumulative over the cursor's batches, and ``count``); past it the
server stops the query and pymongo raises ``ExecutionTimeout``. None: no limit.
Catalog reads are single-document lookups by ``_id`` and are not limited.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from contracts.jobs import CollectionType
from storage.catalog import Catalog, CatalogEntry, VersionInfo
from storage.errors import VersionNotFoundError
from storage.store import Doc, Store
from storage.strategies.accumulative import visible_filter

__all__ = ["CollectionReader"]


class CollectionReader:
    """Read-only access to user collections."""

    def __init__(self, store: Store, max_time_ms: int | None = None) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.max_time_ms = max_time_ms

    def names(self) -> list[str]:
        return self.catalog.names()

    def entry(self, name: str) -> CatalogEntry:
        """The catalog entry; ``CollectionNotFoundError`` if there is none."""
        return self.catalog.require(name)

    def versions(self, name: str) -> list[VersionInfo]:
        """The kept versions, oldest first (empty for non-versioned types)."""
        return list(self.entry(name).versions)

    def find(
        self,
        name: str,
        where: Mapping[str, Any] | None = None,
        version: int | None = None,
        skip: int = 0,
        limit: int = 0,
        with_id: bool = False,
    ) -> Iterator[Doc]:
        """Records of the live data (or of ``version``) matching ``where`` (equality
        on fields, dotted paths allowed), in storage order."""
        physical, query = self._source(name, version, where)
        if physical is None:
            return iter(())
        projection = None if with_id else {"_id": 0}
        cursor = self.store.physical(physical).find(
            query, projection, skip=skip, limit=limit, sort=[("_id", 1)]
        )
        if self.max_time_ms is not None:
            cursor = cursor.max_time_ms(self.max_time_ms)
        return iter(cursor)

    def count(
        self, name: str, where: Mapping[str, Any] | None = None, version: int | None = None
    ) -> int:
        physical, query = self._source(name, version, where)
        if physical is None:
            return 0
        options: dict[str, Any] = {}
        if self.max_time_ms is not None:
            options["maxTimeMS"] = self.max_time_ms
        return self.store.physical(physical).count_documents(query, **options)

    def _source(
        self, name: str, version: int | None, where: Mapping[str, Any] | None
    ) -> tuple[str | None, Doc]:
        entry = self.entry(name)
        query: Doc = dict(where or {})
        if version is not None:
            info = entry.version(version)
            if info is None:
                kept = ", ".join(str(v.number) for v in entry.versions) or "none"
                raise VersionNotFoundError(
                    f"collection {name!r} has no version {version}; kept versions: {kept}"
                )
            return info.physical, query
        if entry.type == CollectionType.ACCUMULATIVE:
            query = (
                {"$and": [query, visible_filter(entry.seq)]} if query else visible_filter(entry.seq)
            )
        return entry.live, query
