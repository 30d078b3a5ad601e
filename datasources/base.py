"""``Source``: the interface every datasource type implements.

One implementation per module, registered by ``type`` in ``datasources.registry``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from datasources.context import RunContext
from datasources.progress import SourceProgress
from datasources.runtime import Runtime

__all__ = ["Item", "Source"]

#: One item of a datasource: a JSON value, normally an object (a ``dict``).
Item = Any

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Source(ABC, Generic[ConfigT]):
    """A datasource of one job, built from its (validated) config.

    Contract of implementations:

    - ``__init__`` does no I/O; secrets are read from ``runtime.environ`` in ``open``;
    - ``open`` returns a *lazy* iterator of items, in the source's order, holding a
      bounded amount of data in memory (a page, a batch, a row) unless the module's
      docstring says otherwise; closing the iterator early releases every resource
      (connections, files, cursors);
    - it calls ``progress.page()`` once per page or batch fetched (items are counted
      by the caller) and never ``progress.done()``;
    - it raises only ``DatasourceError`` subclasses for problems of the data or its
      location (never a bare ``httpx``/``OSError``/driver exception), with messages
      that contain no secret; ``retryable`` tells whether a later run may succeed.

    Sources with a commit (queues: what they consume must be acknowledged only once
    the run's records are safely stored) also implement the transaction hooks. The
    runner calls them through ``datasources.session.SourceSession``:

    - ``commit()`` once, after the storage commit of the run succeeded: acknowledge
      what ``open`` consumed. The data is already in, so a failure here must not fail
      the run: it is logged, and the source must make a redelivery of what it could
      not acknowledge harmless (e.g. by remembering applied message ids *before* the
      storage commit, as ``datasources.rabbitmq`` does);
    - ``abort()`` once, instead of ``commit``, when the run failed, was refused or its
      records were not stored: give everything consumed back (requeue);
    - either may be called when ``open`` was never called or never iterated: then it
      does nothing. Until one of them is called, a transactional source keeps its
      connection open after its iterator is exhausted (that is where its
      acknowledgements travel). The defaults do nothing: most sources only read.
    """

    #: The config's ``type`` this class implements.
    type: ClassVar[str]

    def __init__(self, config: ConfigT, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime

    @property
    def name(self) -> str:
        return str(getattr(self.config, "name"))  # noqa: B009 - every config has a name

    #: Whether ``commit``/``abort`` do anything (queues); informative.
    transactional: ClassVar[bool] = False

    @abstractmethod
    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        """The items of this source for the run ``ctx``."""

    def commit(self) -> None:
        """The run's records are committed to storage: acknowledge what was consumed."""

    def abort(self) -> None:
        """The run failed or its records were not stored: give back what was consumed."""
