"""A plain in-memory model of the six collection types (DESIGN.md §3), used as the
oracle the storage strategies are compared with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts.jobs import CollectionSpec, CollectionType

Record = dict[str, Any]


def _key(record: Record, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value[part]
    return value


@dataclass
class Model:
    spec: CollectionSpec
    live: list[Record] = field(default_factory=list)
    versions: dict[int, list[Record]] = field(default_factory=dict)
    last_version: int = 0

    def run(self, out: list[Record]) -> None:
        """Apply one successful run's output."""
        kind = self.spec.type
        if kind in (CollectionType.NORMAL, CollectionType.VERSIONED):
            new = list(out)
        elif kind in (CollectionType.ACCUMULATIVE, CollectionType.ACCUMULATIVE_VERSIONED):
            new = self.live + list(out)
        else:
            assert self.spec.upsert_key is not None
            merged = {_key(r, self.spec.upsert_key): r for r in self.live}
            for record in out:  # the last duplicate wins
                merged[_key(record, self.spec.upsert_key)] = record
            new = list(merged.values())
        self.live = new
        if kind.versioned:
            self.last_version += 1
            self.versions[self.last_version] = new
            keep = self.spec.keep_versions or 1
            for number in list(self.versions):
                if number <= self.last_version - keep:
                    del self.versions[number]


def canonical(records: list[Record]) -> list[str]:
    """Order-insensitive comparable form of a list of records."""
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def spec_for(kind: CollectionType, name: str, key: str = "id", keep: int = 2) -> CollectionSpec:
    return CollectionSpec(
        type=kind,
        name=name,
        upsert_key=key if kind.upserts else None,
        keep_versions=keep if kind.versioned else None,
    )
