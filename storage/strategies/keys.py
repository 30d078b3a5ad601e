"""Keyed documents for the upserted types: the upsert key becomes ``_id``."""

from __future__ import annotations

from collections.abc import Iterable

from storage.records import Record, key_of
from storage.store import Doc

__all__ = ["keyed_last_wins"]


def keyed_last_wins(docs: Iterable[tuple[int, Record]], key: str) -> list[Doc]:
    """``{_id: key, **record}`` per distinct key; a later record replaces an earlier one
    with the same key (the documented rule for duplicates within one run)."""
    by_key: dict[object, Doc] = {}
    for position, record in docs:
        value = key_of(record, key, position)
        by_key.pop(value, None)  # re-insert so dict order follows the last occurrence
        by_key[value] = {"_id": value, **record}
    return list(by_key.values())
