"""A job's guards applied to one run: checks of its output before the commit.

``RunGuards(guards)`` is handed to ``storage.runs.store_run``, which calls

- ``inspect(records, first)`` with every checked batch before it is stored: the
  record checks (``required_fields``, ``json_schema``, ``unique``) and an early
  ``max_records``; violations are collected with their positions, and the run stops
  as soon as one guard has ``max_violations`` of them;
- ``check(written, before, after)`` once, after the slurp and before the commit:
  the collected violations (first guard in the order above), then ``min_records``,
  ``max_records``, ``max_drop_pct`` and ``max_growth_pct`` (``before``/``after``: the
  records live before the run and after its commit; ``after`` None where that is
  unknown before the commit).

Any failure raises ``storage.errors.GuardFailed``; the strategy's abort then leaves
the stored data untouched, as for any failed run.

Costs: nothing when no guard is set. ``required_fields``: a dict lookup per path and
record. ``json_schema``: one validation per record (``jsonschema``; formats are not
checked). ``unique``: one hash per record and a dict of ``hash -> first position``
(about 100 bytes per record of the run; two records whose values differ but whose
64-bit hashes collide, about n²/2⁶⁵, would be reported as duplicates). Missing fields
count as null, as in a MongoDB unique index: two records both lacking the field are
duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from contracts.jobs import Guards
from storage.errors import GuardFailed
from storage.records import MISSING, Record, get_path

__all__ = ["RECORD_GUARDS", "RunGuards"]

#: The guards that look at each record, in the order their violations are reported.
RECORD_GUARDS = ("required_fields", "json_schema", "unique")
#: Longest problem text kept per violation.
MAX_PROBLEM_CHARS = 300


class RunGuards:
    """The guards of one run (not thread-safe; one per run)."""

    def __init__(self, guards: Guards) -> None:
        self.guards = guards
        self.violations: dict[str, list[tuple[int, str]]] = {name: [] for name in RECORD_GUARDS}
        self.checked = 0
        self._seen: dict[int, int] = {}
        self._validator: Any = None
        if guards.json_schema is not None:
            from jsonschema import validators

            schema = guards.json_schema
            self._validator = validators.validator_for(schema)(schema)

    # -- per batch ---------------------------------------------------------------------

    def inspect(self, records: Sequence[Record], first: int) -> None:
        """Check one batch of checked records; ``first`` is the position of its first."""
        guards = self.guards
        if guards.max_records is not None and first + len(records) > guards.max_records:
            raise GuardFailed(
                "max_records",
                f"the run wrote more than {guards.max_records} records (stopped at "
                f"{first + len(records)})",
                {"records_at_least": first + len(records), "max_records": guards.max_records},
            )
        for offset, record in enumerate(records):
            position = first + offset
            if guards.required_fields:
                self._required(record, position)
            if self._validator is not None:
                self._schema(record, position)
            if guards.unique:
                self._unique(record, position)
        self.checked = first + len(records)

    def _required(self, record: Record, position: int) -> None:
        for path in self.guards.required_fields:
            value = get_path(record, path)
            if value is MISSING:
                self._violation("required_fields", position, f"field {path!r} is missing")
            elif value is None:
                self._violation("required_fields", position, f"field {path!r} is null")

    def _schema(self, record: Record, position: int) -> None:
        error = next(iter(self._validator.iter_errors(record)), None)
        if error is not None:
            where = error.json_path if error.path else "the record"
            self._violation("json_schema", position, f"at {where}: {error.message}")

    def _unique(self, record: Record, position: int) -> None:
        values = tuple(_frozen(get_path(record, path)) for path in self.guards.unique)
        key = hash(values)
        earlier = self._seen.setdefault(key, position)
        if earlier != position:
            shown = ", ".join(
                f"{path}={_shown(get_path(record, path))}" for path in self.guards.unique
            )
            self._violation(
                "unique", position, f"repeats {shown} of the record at position {earlier}"
            )

    def _violation(self, guard: str, position: int, problem: str) -> None:
        found = self.violations[guard]
        found.append((position, problem[:MAX_PROBLEM_CHARS]))
        if len(found) >= self.guards.max_violations:
            raise self._record_failure(guard, stopped=True)

    def _record_failure(self, guard: str, stopped: bool) -> GuardFailed:
        found = self.violations[guard]
        count = f"{len(found)}{' or more' if stopped else ''}"
        listed = "; ".join(f"position {p}: {problem}" for p, problem in found[:3])
        more = f"; ... ({len(found) - 3} more in the history)" if len(found) > 3 else ""
        return GuardFailed(
            guard,
            f"{count} record(s) violate it: {listed}{more}",
            {"violations": len(found), "stopped_early": stopped, "records_checked": self.checked},
            found,
        )

    # -- before the commit ---------------------------------------------------------------

    def check(self, written: int, before: int, after: int | None) -> None:
        """Every guard on the complete output; raises the first that fails."""
        for guard in RECORD_GUARDS:
            if self.violations[guard]:
                raise self._record_failure(guard, stopped=False)
        guards = self.guards
        if guards.min_records is not None and written < guards.min_records:
            raise GuardFailed(
                "min_records",
                f"the run wrote {written} records, fewer than min_records {guards.min_records}",
                {"records": written, "min_records": guards.min_records},
            )
        if guards.max_records is not None and written > guards.max_records:
            raise GuardFailed(
                "max_records",
                f"the run wrote {written} records, more than max_records {guards.max_records}",
                {"records": written, "max_records": guards.max_records},
            )
        if after is None or before == 0:
            return  # unknown, or from an empty collection: any size passes
        change_pct = (after - before) * 100.0 / before
        figures: dict[str, bool | int | float | str | None] = {
            "previous": before,
            "new": after,
            "change_pct": round(change_pct, 3),
        }
        limit = guards.max_drop_pct
        if limit is not None and -change_pct > limit:
            raise GuardFailed(
                "max_drop_pct",
                f"the records would drop from {before} to {after} ({-change_pct:.1f} %), "
                f"more than max_drop_pct {limit:g} %",
                {**figures, "max_drop_pct": limit},
            )
        limit = guards.max_growth_pct
        if limit is not None and change_pct > limit:
            raise GuardFailed(
                "max_growth_pct",
                f"the records would grow from {before} to {after} (+{change_pct:.1f} %), "
                f"more than max_growth_pct {limit:g} %",
                {**figures, "max_growth_pct": limit},
            )


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a record value: scalars as they are (booleans tagged, so
    ``true`` is not ``1``), objects and lists as canonical JSON, missing as null."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str | int | float):
        return value
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))


def _shown(value: Any) -> str:
    text = "null" if value is MISSING else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
