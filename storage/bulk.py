"""Bulk helpers shared by strategies: streamed copies and keyed upserts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DocumentTooLarge

from storage.store import Doc

__all__ = [
    "BATCH_SIZE",
    "Upserts",
    "batched",
    "copy_collection",
    "insert_ignoring_duplicates",
    "read_chunks",
    "run_chunks",
    "stage_chunks",
    "upsert_by_id",
]

#: Records per bulk operation: large enough to amortise round trips, small enough
#: to keep memory flat.
BATCH_SIZE = 1000
_DUPLICATE_KEY = 11000


def batched(items: Iterable[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    """Lists of up to ``size`` consecutive items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_collection(source: Collection[Doc], target: Collection[Doc]) -> int:
    """Copy every document (``_id`` included) as raw BSON; return how many."""
    raw = source.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))
    copied = 0
    for batch in batched(raw.find(batch_size=BATCH_SIZE)):
        target.insert_many(batch, ordered=False)
        copied += len(batch)
    return copied


def insert_ignoring_duplicates(target: Collection[Doc], docs: list[Any]) -> list[int]:
    """Insert ``docs``; those whose ``_id`` exists already are skipped. Returns the
    indexes (into ``docs``) of the skipped ones."""
    try:
        target.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise
        return [int(error["index"]) for error in errors]
    return []


class Upserts(NamedTuple):
    """What ``upsert_by_id`` did: new ids, replaced documents whose content changed,
    and replaced documents that were already identical (the server reports those as
    matched but not modified: it compares the stored document with the replacement)."""

    inserted: int
    updated: int
    unchanged: int


def upsert_by_id(
    target: Collection[Doc], docs: list[Doc], expect_existing: bool = False
) -> Upserts:
    """Replace-or-insert each doc by ``_id`` (ids unique within ``docs``). Idempotent.

    ``expect_existing`` (the target holds data, so most keys likely exist): one bulk
    of upserting replaces, one round trip. Otherwise every doc is first inserted
    (cheaper than an upsert where most are new; a duplicate ``_id`` costs only a
    rejected write) and the ones whose ``_id`` existed are then replaced.
    """
    if not docs:
        return Upserts(0, 0, 0)
    if expect_existing:
        result = target.bulk_write(
            [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs], ordered=False
        )
        return Upserts(
            result.upserted_count,
            result.modified_count,
            result.matched_count - result.modified_count,
        )
    existing = insert_ignoring_duplicates(target, docs)
    if not existing:
        return Upserts(len(docs), 0, 0)
    result = target.bulk_write(
        [ReplaceOne({"_id": docs[i]["_id"]}, docs[i], upsert=True) for i in existing],
        ordered=False,
    )
    replaced = len(existing) - result.upserted_count  # an id deleted in between: inserted
    return Upserts(len(docs) - replaced, result.modified_count, replaced - result.modified_count)


def run_chunks(run_id: str) -> Doc:
    """The filter selecting the staged chunks of ``run_id`` (an ``_id`` range scan)."""
    return {"_id": {"$gte": f"{run_id}:", "$lt": f"{run_id};"}}


def stage_chunks(target: Collection[Doc], run_id: str, first: int, records: list[Doc]) -> None:
    """Store ``records`` as one staging document ``{_id: "<run_id>:<first>", records}``
    (one shared staging collection serves every run; no collection is created per
    run), split in halves while it exceeds MongoDB's document size limit."""
    try:
        target.insert_one({"_id": f"{run_id}:{first:012d}", "first": first, "records": records})
    except DocumentTooLarge:
        if len(records) == 1:
            raise
        half = len(records) // 2
        stage_chunks(target, run_id, first, records[:half])
        stage_chunks(target, run_id, first + half, records[half:])


def read_chunks(source: Collection[Doc], run_id: str) -> Iterator[tuple[int, list[Doc]]]:
    """The staged chunks of ``run_id`` in position order, as ``(first, records)``."""
    for chunk in source.find(run_chunks(run_id), sort=[("_id", 1)], batch_size=8):
        yield chunk["first"], chunk["records"]
