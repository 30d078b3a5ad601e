"""Property-based: each strategy against the in-memory model over random run sequences.

A sequence mixes successful runs and runs that fail part-way (a slurper raising after
some records); after every step the live data and the kept versions must equal the
model's, and no staging may remain.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.jobs import CollectionType
from storage.reader import CollectionReader
from storage.runs import store_run
from storage.store import Store
from storage.strategies import strategy_for
from tests.storage_model import Model, canonical, spec_for

_names = itertools.count()

records = st.lists(
    st.fixed_dictionaries(
        {"id": st.integers(0, 6), "v": st.one_of(st.integers(-3, 3), st.text(max_size=3))}
    ),
    max_size=6,
)
# (output, fail_after): fail_after=None is a successful run.
runs = st.lists(st.tuples(records, st.one_of(st.none(), st.integers(0, 5))), max_size=5)


def _failing(out: list[dict[str, Any]], after: int) -> Iterator[dict[str, Any]]:
    yield from out[:after]
    raise RuntimeError("slurper failed")


@pytest.mark.parametrize("kind", list(CollectionType))
def test_strategy_matches_model(store: Store, kind: CollectionType) -> None:
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(runs=runs, keep=st.integers(1, 3))
    def check(runs: list[tuple[list[dict[str, Any]], int | None]], keep: int) -> None:
        spec = spec_for(kind, f"m{next(_names)}", keep=keep)
        model = Model(spec)
        reader = CollectionReader(store)
        for number, (out, fail_after) in enumerate(runs):
            strategy = strategy_for(store, spec, retire_grace_s=0)
            if fail_after is None:
                store_run(strategy, f"run-{number}", out, batch_size=2)
                model.run(out)
            else:
                with pytest.raises(RuntimeError):
                    store_run(strategy, f"run-{number}", _failing(out, fail_after), batch_size=2)
            if not model.live and reader.catalog.get(spec.name) is None:
                continue
            assert canonical(list(reader.find(spec.name))) == canonical(model.live)
            assert reader.count(spec.name) == len(model.live)
            entry = reader.entry(spec.name)
            assert entry.records == len(model.live)
            assert not entry.runs
            if kind.versioned:
                assert [v.number for v in entry.versions] == sorted(model.versions)
                for number_, expected in model.versions.items():
                    got = list(reader.find(spec.name, version=number_))
                    assert canonical(got) == canonical(expected)

    check()
