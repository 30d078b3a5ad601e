"""Change statistics of the types without a key (normal, versioned): which records of
a run's output were already stored with the same content, and which stored ones are
gone.

A record has no identity there but its content, so the new data and the previous
data are compared as multisets of content hashes:

- ``unchanged``: records of the output whose exact content (BSON bytes, field order
  included) the previous data held as often (a multiset intersection);
- ``inserted``: the other records of the output; ``removed``: the other records of
  the previous data; ``updated`` is always 0 (no key relates an old record to a new
  one).

Costs: the output is hashed as it is written (``bson.encode`` of each record, which
the write encodes again), the previous data is read **once**, as raw BSON without
``_id``, at commit. Memory: one 64-bit hash per record of both data sets (16 bytes
per record pair, in ``array`` buckets, not Python objects), plus a sort of one
bucket (1/256 of the records) at a time. Python's ``hash`` of bytes is 64-bit and
seeded per process; both sides are hashed in the same process, during one commit.
A collision (two different records with one hash, about n²/2⁶⁵) would count a
changed record as unchanged.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.collection import Collection

from storage.records import Record
from storage.store import Doc

__all__ = ["ContentDigests", "Diff", "diff_against"]

_BUCKETS = 256
_RAW = CodecOptions(document_class=RawBSONDocument)
#: Documents per batch when the previous data is read.
READ_BATCH = 1000


class ContentDigests:
    """A multiset of record content hashes, bucketed by their low 8 bits."""

    def __init__(self) -> None:
        self._buckets = [array("q") for _ in range(_BUCKETS)]
        self.count = 0

    def add_records(self, docs: Iterable[Record]) -> None:
        """Hash records about to be stored (before anything adds an ``_id``)."""
        for doc in docs:
            self._add(hash(bson.encode(doc)))

    def add_raw(self, raw: bytes | memoryview) -> None:
        """Hash a stored document read as raw BSON without ``_id``."""
        self._add(hash(raw))

    def _add(self, value: int) -> None:
        self._buckets[value & (_BUCKETS - 1)].append(value)
        self.count += 1

    def common(self, other: ContentDigests) -> int:
        """Size of the multiset intersection with ``other``."""
        shared = 0
        for mine, theirs in zip(self._buckets, other._buckets, strict=True):
            if not mine or not theirs:
                continue
            a, b = sorted(mine), sorted(theirs)
            i = j = 0
            while i < len(a) and j < len(b):
                if a[i] == b[j]:
                    shared += 1
                    i += 1
                    j += 1
                elif a[i] < b[j]:
                    i += 1
                else:
                    j += 1
        return shared


@dataclass(frozen=True)
class Diff:
    inserted: int
    unchanged: int
    removed: int


def digest_collection(source: Collection[Doc]) -> ContentDigests:
    """The content hashes of every document of ``source`` (one read, raw BSON)."""
    digests = ContentDigests()
    raw = source.with_options(codec_options=_RAW)
    for doc in raw.find({}, {"_id": 0}, batch_size=READ_BATCH):
        digests.add_raw(doc.raw)
    return digests


def diff_against(new: ContentDigests, previous: Collection[Doc] | None) -> Diff:
    """Compare the output hashed in ``new`` with the documents of ``previous`` (the
    data it replaces; None: there was none)."""
    if previous is None:
        return Diff(inserted=new.count, unchanged=0, removed=0)
    old = digest_collection(previous)
    unchanged = new.common(old)
    return Diff(inserted=new.count - unchanged, unchanged=unchanged, removed=old.count - unchanged)
