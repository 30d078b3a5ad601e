"""Errors raised by the storage package.

    StorageError
     ├── BadRecordError           a record cannot be stored (the run fails, nothing is written)
     ├── GuardFailed              a job's guard refused the run's output (nothing is written)
     ├── CollectionTypeMismatch   the collection exists with another type or key
     ├── CommitConflictError      another run changed the collection since this one began
     ├── RunAlreadyCommitted      this run id was committed before (it must not apply twice)
     ├── CollectionNotFoundError  no collection of that name
     ├── VersionNotFoundError     no such version of a versioned collection
     ├── JobNotFoundError         no job of that name in the registry
     ├── InvalidJobRecordError    a stored job document no longer validates
     └── UserExistsError          an API user of that name exists already

Errors of the database driver (``pymongo.errors.PyMongoError``) pass through
unchanged: they are transient (the server is unreachable) far more often than not.
"""

from __future__ import annotations

__all__ = [
    "BadRecordError",
    "CollectionNotFoundError",
    "CollectionTypeMismatch",
    "CommitConflictError",
    "GuardFailed",
    "InvalidJobRecordError",
    "JobNotFoundError",
    "RunAlreadyCommitted",
    "StorageError",
    "UserExistsError",
    "VersionNotFoundError",
]


class StorageError(Exception):
    """Base class of every error this package raises on purpose."""


class BadRecordError(StorageError, ValueError):
    """A record the run produced cannot be stored. Permanent: retrying won't help.

    ``position`` is the record's 0-based position in the run's output.
    """

    def __init__(self, position: int, problem: str) -> None:
        self.position = position
        self.problem = problem
        super().__init__(f"record at position {position}: {problem}")


class GuardFailed(StorageError):
    """A guard of the job (``contracts.jobs.Guards``) refused the run's output before
    the commit. Permanent unless the job's ``guards.retry`` says otherwise.

    ``guard`` names it (``min_records``, ``unique``, ...); ``figures`` are the numbers
    it compared; ``violations`` the first offending records as (position, problem).
    """

    def __init__(
        self,
        guard: str,
        problem: str,
        figures: dict[str, bool | int | float | str | None] | None = None,
        violations: list[tuple[int, str]] | None = None,
    ) -> None:
        self.guard = guard
        self.problem = problem
        self.figures = dict(figures or {})
        self.violations = list(violations or [])
        super().__init__(f"guard {guard} failed: {problem}")


class CollectionTypeMismatch(StorageError):
    """The job's collection spec disagrees with how the collection was created."""


class CommitConflictError(StorageError):
    """The collection changed under this run (two runs of one job overlapped)."""


class RunAlreadyCommitted(StorageError):
    """The run id was committed to the collection before; running it again would
    apply its records twice (e.g. append them twice to an accumulative collection)."""


class CollectionNotFoundError(StorageError, LookupError):
    """No collection of that name exists."""


class VersionNotFoundError(StorageError, LookupError):
    """The requested version does not exist (never created, or pruned)."""


class JobNotFoundError(StorageError, LookupError):
    """No job of that name is registered."""


class InvalidJobRecordError(StorageError, ValueError):
    """A stored job document is not a valid ``JobDefinition`` (edited by hand, or written
    by another slurp version). ``name`` is the job; ``problem`` says what is wrong."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"stored job {name!r} is invalid: {problem}")


class UserExistsError(StorageError, ValueError):
    """An API user of that name is in the database already."""
