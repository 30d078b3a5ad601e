"""Collection strategies, one module per collection type, behind ``CollectionStrategy``."""

from __future__ import annotations

from contracts.jobs import CollectionSpec, CollectionType
from storage.store import Store
from storage.strategies.accumulative import AccumulativeStrategy
from storage.strategies.accumulative_versioned import AccumulativeVersionedStrategy
from storage.strategies.base import (
    DEFAULT_RETIRE_GRACE_S,
    CollectionStrategy,
    CommitResult,
    RunWriter,
)
from storage.strategies.normal import NormalStrategy
from storage.strategies.upserted import UpsertedStrategy
from storage.strategies.upserted_versioned import UpsertedVersionedStrategy
from storage.strategies.versioned import VersionedStrategy

__all__ = [
    "DEFAULT_RETIRE_GRACE_S",
    "STRATEGIES",
    "CollectionStrategy",
    "CommitResult",
    "RunWriter",
    "strategy_for",
]

STRATEGIES: dict[CollectionType, type[CollectionStrategy]] = {
    strategy.kind: strategy
    for strategy in (
        NormalStrategy,
        UpsertedStrategy,
        AccumulativeStrategy,
        VersionedStrategy,
        UpsertedVersionedStrategy,
        AccumulativeVersionedStrategy,
    )
}


def strategy_for(
    store: Store, spec: CollectionSpec, retire_grace_s: float = DEFAULT_RETIRE_GRACE_S
) -> CollectionStrategy:
    """The strategy implementing ``spec.type`` on ``store``."""
    return STRATEGIES[spec.type](store, spec, retire_grace_s=retire_grace_s)
