"""Errors raised by the storage package.

    StorageError
     ├── BadRecordError           a record cannot be stored (the run fails, nothing is written)
     ├── CollectionTypeMismatch   the collection exists with another type or key
     ├── CommitConflictError      another run changed the collection since this one began
     ├── RunAlreadyCommitted      this run id was committed before (it must not apply twice)
     ├── CollectionNotFoundError  no collection of that name
     ├── VersionNotFoundError     no such version of a versioned collection
     ├── JobNotFoundError         no job of that name in the registry
     └── InvalidJobRecordError    a stored job document no longer validates

Errors of the database driver (``pymongo.errors.PyMongoError``) pass through
unchanged: they are transient (the server is unreachable) far more often than not.
"""

from __future__ import annotations

__all__ = [
    "BadRecordError",
    "CollectionNotFoundError",
    "CollectionTypeMismatch",
    "CommitConflictError",
    "InvalidJobRecordError",
    "JobNotFoundError",
    "RunAlreadyCommitted",
    "StorageError",
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
