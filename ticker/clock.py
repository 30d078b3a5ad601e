"""A clock that runs faster than real time, for tests of real ticker processes.

``slurp ticker`` uses it only when the test-only variables below are set (the
reserved ``SLURP_TEST_*`` prefix, which the settings ignore). Production never sets
them. Several processes given the same values read the same simulated time, because
the clock is a pure function of the real (wall-clock) time::

    simulated = START + (real - ANCHOR) * SPEED

``SLURP_TEST_CLOCK_START``   ISO-8601 instant with offset: the simulated time at ANCHOR
``SLURP_TEST_CLOCK_SPEED``   simulated seconds per real second (default 1)
``SLURP_TEST_CLOCK_ANCHOR``  real Unix time at which the clock reads START
                             (default: when the process builds the clock)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

__all__ = ["ENV_ANCHOR", "ENV_SPEED", "ENV_START", "ScaledClock"]

ENV_START = "SLURP_TEST_CLOCK_START"
ENV_SPEED = "SLURP_TEST_CLOCK_SPEED"
ENV_ANCHOR = "SLURP_TEST_CLOCK_ANCHOR"


class ScaledClock:
    """``start + (time.time() - anchor) * speed``, as an aware UTC datetime."""

    def __init__(self, start: datetime, speed: float = 1.0, anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.start = start.astimezone(UTC)
        self.speed = float(speed)
        self.anchor = time.time() if anchor is None else float(anchor)

    def __call__(self) -> datetime:
        return self.at(time.time())

    def at(self, real: float) -> datetime:
        """The simulated time at real Unix time ``real``."""
        return self.start + timedelta(seconds=(real - self.anchor) * self.speed)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ScaledClock | None:
        """The clock the ``SLURP_TEST_CLOCK_*`` variables describe; None if START is unset.

        Raises ``ValueError`` naming the variable that does not parse.
        """
        raw_start = environ.get(ENV_START)
        if not raw_start:
            if environ.get(ENV_SPEED) or environ.get(ENV_ANCHOR):
                raise ValueError(f"{ENV_SPEED} and {ENV_ANCHOR} need {ENV_START}")
            return None
        try:
            start = datetime.fromisoformat(raw_start.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{ENV_START}: not an ISO-8601 instant: {raw_start!r}") from None
        if start.tzinfo is None:
            raise ValueError(f"{ENV_START}: needs an offset (e.g. Z): {raw_start!r}")
        try:
            speed = float(environ.get(ENV_SPEED) or 1.0)
            anchor = float(environ[ENV_ANCHOR]) if environ.get(ENV_ANCHOR) else None
        except ValueError as exc:
            raise ValueError(f"{ENV_SPEED}/{ENV_ANCHOR}: not a number: {exc}") from None
        return cls(start, speed, anchor)
