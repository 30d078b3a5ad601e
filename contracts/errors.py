"""Errors raised by the contracts package.

ContractError
 └── JobFileError        a job file cannot be read, parsed or validated
"""

from __future__ import annotations

__all__ = ["ContractError", "JobFileError"]


class ContractError(Exception):
    """Base class of every error this package raises on purpose."""


class JobFileError(ContractError):
    """A job file is unreadable or invalid.

    ``problems`` holds one human-readable line per problem, each naming the file,
    the line where known, the job and the field, and what is allowed.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(problems))
