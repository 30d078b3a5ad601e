"""The interface of a collection strategy: open a run, feed batches, commit or abort.

    strategy = strategy_for(store, spec)
    run = strategy.begin(run_id)          # also cleans up after crashed runs
    try:
        for batch in batches:
            run.write(batch)              # checks and stages the records
        result = run.commit()             # the new data becomes visible, all at once
    except BaseException:
        run.abort()                       # nothing of this run stays behind
        raise

Contract of every implementation:
- ``write`` checks each record (``storage.records``) and raises ``BadRecordError``
  naming its position; memory use does not grow with the number of records (change
  statistics of the normal and versioned types excepted: 8 bytes per record, see
  ``storage.changes``); ``write(batch, inspect)`` shows each checked batch to
  ``inspect`` (the job's guards) before storing it.
- ``pending_total()`` is the number of records the commit would make live (None
  where it is only known after the commit: upserted).
- Until ``commit`` returns, readers see exactly the data as it was before the run.
- ``abort`` (or a crash followed by the next ``begin``) removes everything the run wrote.
- ``commit`` raises ``CommitConflictError`` if another run committed in between, and
  leaves the data as that other run made it. Its ``CommitResult`` carries the change
  statistics where the type has them (see ``CommitResult``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from contracts.jobs import CollectionSpec, CollectionType
from storage.catalog import Catalog, CatalogEntry
from storage.errors import RunAlreadyCommitted, StorageError
from storage.records import Record, normalise
from storage.store import Store

__all__ = [
    "DEFAULT_RETIRE_GRACE_S",
    "CollectionStrategy",
    "CommitResult",
    "Inspect",
    "RunWriter",
]

#: How long replaced live data is kept so readers that started before a commit can
#: finish; dropped by a later commit after that.
DEFAULT_RETIRE_GRACE_S = 300.0


#: Sees each checked batch before it is stored: ``(records, position of the first)``;
#: raises to fail the run.
Inspect = Callable[[Sequence[Record], int], None]


@dataclass(frozen=True)
class CommitResult:
    """What a committed run did. Change statistics, against the data before the run:

    - ``inserted``: records of the output that are new (keyed types: a new key;
      normal/versioned: content the previous data did not hold; accumulative: all);
    - ``updated``: keyed records whose stored content changed (0 for the other types);
    - ``unchanged``: records of the output stored already with the same content
      (None: not computed, ``change_stats: false``);
    - ``removed``: records of the previous data absent now (normal/versioned; 0 for
      the types that never remove; None: not computed);
    - ``records_total``: records live after the commit.
    """

    records_written: int
    inserted: int
    updated: int
    records_total: int
    version: int | None = None
    unchanged: int | None = None
    removed: int | None = None


class RunWriter(ABC):
    """One run's writes into one collection. Not thread-safe; one per run."""

    def __init__(self, strategy: CollectionStrategy, entry: CatalogEntry, run_id: str) -> None:
        self.strategy = strategy
        self.store = strategy.store
        self.catalog = strategy.catalog
        self.entry = entry
        self.run_id = run_id
        self.position = 0
        self.state = "open"

    def write(self, records: Iterable[object], inspect: Inspect | None = None) -> int:
        """Check and stage one batch; return how many records it held. ``inspect``
        sees the checked records first (and may raise to fail the run)."""
        self._expect_open()
        docs = [normalise(record, self.position + i) for i, record in enumerate(records)]
        if docs:
            if inspect is not None:
                inspect(docs, self.position)
            self._write(docs)
            self.position += len(docs)
        return len(docs)

    def pending_total(self) -> int | None:
        """Records live after the commit, as far as known before it (None: unknown)."""
        return None

    def commit(self) -> CommitResult:
        self._expect_open()
        try:
            result = self._commit()
        except BaseException:
            self.abort()
            raise
        self.state = "committed"
        if not self.strategy.in_place:  # in-place types never retire data
            self.catalog.drop_retired(self.entry.name, self.strategy.retire_grace_s)
        return result

    def abort(self) -> None:
        """Remove what this run wrote; safe to call in any state."""
        if self.state != "open":
            return
        self.state = "aborted"
        self._abort()

    def _expect_open(self) -> None:
        if self.state != "open":
            raise StorageError(f"run {self.run_id} is already {self.state}")

    @abstractmethod
    def _write(self, docs: list[Record]) -> None: ...

    @abstractmethod
    def _commit(self) -> CommitResult: ...

    @abstractmethod
    def _abort(self) -> None: ...


class CollectionStrategy(ABC):
    """One collection type's semantics; ``begin`` opens a run on it."""

    kind: ClassVar[CollectionType]
    #: The live data is one fixed physical collection written in place at commit
    #: (upserted, accumulative) rather than a new one per run.
    in_place: ClassVar[bool] = False

    def __init__(
        self, store: Store, spec: CollectionSpec, retire_grace_s: float = DEFAULT_RETIRE_GRACE_S
    ) -> None:
        if spec.type != self.kind:
            raise ValueError(f"{type(self).__name__} handles '{self.kind}', not '{spec.type}'")
        self.store = store
        self.spec = spec
        self.catalog = Catalog(store)
        self.retire_grace_s = retire_grace_s

    def begin(self, run_id: str, known: CatalogEntry | None = None) -> RunWriter:
        """Open a run. Leftovers of crashed runs are cleaned up first (``recover``).

        ``known``: the collection's catalog entry as just read (e.g. together with the
        job): used as it is when it needs neither creating, changing nor recovering,
        which saves a round trip. Raises ``RunAlreadyCommitted`` if ``run_id`` was
        committed before (a redelivered message). The caller must hold the job's
        lease: of two runs of one collection at once, at most one commits
        (``CommitConflictError``).
        """
        entry = known if known is not None and self._current(known) else self.recover()
        if run_id in entry.committed:
            raise RunAlreadyCommitted(
                f"run {run_id} was already committed to collection {entry.name!r}; "
                "a run is applied at most once"
            )
        return self._begin(entry, run_id)

    def _current(self, entry: CatalogEntry) -> bool:
        """Is ``entry`` what ``recover`` would return (nothing to create, change or
        recover)?"""
        return (
            entry.name == self.spec.name
            and entry.type == self.spec.type
            and entry.upsert_key == self.spec.upsert_key
            and entry.keep_versions == self.spec.keep_versions
            and (entry.live is not None or not self.in_place)
            and not entry.runs
        )

    def recover(self) -> CatalogEntry:
        """Finish or undo what crashed runs left; return the fresh catalog entry."""
        entry = self.ensure()
        for run in entry.runs:
            self._recover_run(entry, run.physical, run.state)
        return self.ensure() if entry.runs else entry

    def ensure(self) -> CatalogEntry:
        """The catalog entry, created on first use."""
        live = self.store.physical_name(self.spec.name, "live") if self.in_place else None
        return self.catalog.ensure(self.spec, live=live)

    def _recover_run(self, entry: CatalogEntry, physical: str, state: str) -> None:
        """Default: a crashed run's staging is simply dropped."""
        self.store.db.drop_collection(physical)
        self.catalog.end_run(entry.name, physical)

    @abstractmethod
    def _begin(self, entry: CatalogEntry, run_id: str) -> RunWriter: ...
