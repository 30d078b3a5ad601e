"""The failed-login limits of ``api.auth``: sliding windows of failures per key.

``LoginRateLimiter`` counts failures per key (a username, an IP, a pair, or nothing)
within a sliding ``window_s`` and refuses (``RateLimited``, with the seconds until the
oldest failure leaves the window) once ``max_failures`` are in it; it forgets the
least recently used keys beyond ``max_keys``. ``LoginLimits`` checks and counts the
four limits of the API settings together, under one lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from api.config import ApiConfig
from api.errors import RateLimited

__all__ = ["MAX_LIMITER_KEYS", "Key", "LoginLimits", "LoginRateLimiter"]

#: How many keys (usernames, IPs) a limiter remembers at most (oldest forgotten first).
MAX_LIMITER_KEYS = 100_000

Key = tuple[str, ...]


class LoginRateLimiter:
    """At most ``max_failures`` failed logins per key within a sliding ``window_s``.

    Not thread-safe on its own: ``LoginLimits`` serialises its limiters; used alone,
    ``attempt`` and ``succeeded`` take the limiter's own lock.
    """

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_LIMITER_KEYS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, key: Key) -> None:
        """Count an attempt as a failure up front; ``RateLimited`` if over the limit.

        Call ``succeeded(key)`` when the credentials turn out right.
        """
        now = self._clock()
        with self._lock:
            self.check(key, now)
            self.count(key, now)

    def succeeded(self, key: Key) -> None:
        """Forget the key's failures (a successful login)."""
        with self._lock:
            self.forget(key)

    def forget(self, key: Key) -> None:
        """Drop every failure of ``key``."""
        self._failures.pop(key, None)

    def check(self, key: Key, now: float) -> None:
        """``RateLimited`` if ``key`` has ``max_failures`` failures in the window."""
        times = self._failures.pop(key, None) or deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        self._failures[key] = times  # (re)inserted last: most recently used
        if len(times) >= self.max_failures:
            raise RateLimited(times[0] + self.window_s - now)

    def count(self, key: Key, now: float) -> None:
        """Record a failure of ``key`` at ``now`` (after ``check``)."""
        self._failures.setdefault(key, deque()).append(now)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def uncount(self, key: Key, at: float) -> None:
        """Take back the failure counted at ``at`` (the attempt succeeded)."""
        times = self._failures.get(key)
        if times is not None and at in times:
            times.remove(at)


class LoginLimits:
    """The four login limits, checked and counted together under one lock: per
    (username, IP), per IP, per username, and in total."""

    def __init__(self, config: ApiConfig, clock: Callable[[], float] = time.monotonic) -> None:
        window = config.login_window_s
        self.pair = LoginRateLimiter(config.login_max_failures, window, clock)
        self.per_ip = LoginRateLimiter(config.login_max_failures_per_ip, window, clock)
        self.per_user = LoginRateLimiter(config.login_max_failures_per_user, window, clock)
        self.total = LoginRateLimiter(config.login_max_failures_total, window, clock)
        self._clock = clock
        self._lock = threading.Lock()

    def _keys(self, username: str, ip: str) -> list[tuple[LoginRateLimiter, Key]]:
        user = username.casefold()
        return [
            (self.pair, (user, ip)),
            (self.per_ip, (ip,)),
            (self.per_user, (user,)),
            (self.total, ()),
        ]

    def attempt(self, username: str, ip: str) -> float:
        """Count a login attempt as a failure in every limit; ``RateLimited`` (and
        nothing counted) if one is full. Returns the attempt's time for ``succeeded``."""
        now = self._clock()
        keys = self._keys(username, ip)
        with self._lock:
            for limiter, key in keys:
                limiter.check(key, now)
            for limiter, key in keys:
                limiter.count(key, now)
        return now

    def succeeded(self, username: str, ip: str, attempt: float) -> None:
        """The attempt made at ``attempt`` had the right credentials: the (username, IP)
        failures are forgotten, and the attempt no longer counts in the other limits."""
        pair, *others = self._keys(username, ip)
        with self._lock:
            pair[0].forget(pair[1])
            for limiter, key in others:
                limiter.uncount(key, attempt)
