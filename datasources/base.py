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
    """

    #: The config's ``type`` this class implements.
    type: ClassVar[str]

    def __init__(self, config: ConfigT, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime

    @property
    def name(self) -> str:
        return str(getattr(self.config, "name"))  # noqa: B009 - every config has a name

    @abstractmethod
    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        """The items of this source for the run ``ctx``."""
