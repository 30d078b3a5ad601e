"""``Timers``: delayed and repeating callbacks of every run in a worker process, on
one scheduler thread and a small pool of reused threads.

A run needs three timed chores: renewing its job lease every ttl/3, looking for a
cancel request every 0.2 s, and recording its start event once it has run half a
second. Each used to be a thread of its own, started and joined per run: three
thread starts cost about a third of a millisecond of CPU, a tenth of a tiny run's.
Here one scheduler thread (started on first use, again after a fork) keeps the due
times in a heap and hands each due callback to a thread pool, so a slow callback (a
Redis call during an outage, a database write) holds up neither the schedule nor
the others. A repeating callback is scheduled again only once its call returned:
calls of one timer never overlap or pile up.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["MAX_CALLBACK_THREADS", "Timer", "Timers", "process_timers"]

logger = logging.getLogger(__name__)

#: Callbacks of one process running at the same time, at most.
MAX_CALLBACK_THREADS = 16


class Timer:
    """One scheduled callback; ``cancel`` stops it."""

    def __init__(self, timers: Timers, callback: Callable[[], object], interval_s: float | None):
        self._timers = timers
        self._callback = callback
        self.interval_s = interval_s  # None: once
        self._cancelled = threading.Event()
        self._running = threading.Lock()  # held while the callback runs

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, wait: bool = False) -> None:
        """No further call; with ``wait``, also wait for a call in progress to return
        (never from inside the callback itself)."""
        self._cancelled.set()
        if wait:
            with self._running:
                pass

    def _fire(self) -> None:
        with self._running:
            if self._cancelled.is_set():
                return
            try:
                again = self._callback()
            except Exception:  # a chore's failure is its own to report; keep the timer
                logger.exception("timed callback %r failed", self._callback)
                again = True
        if self.interval_s is None or again is False:
            self._cancelled.set()
        elif not self._cancelled.is_set():
            self._timers._schedule(self, self.interval_s)


class Timers:
    """The scheduler: ``after(delay_s, fn)`` calls ``fn`` once, ``every(interval_s,
    fn)`` every ``interval_s`` until cancelled or ``fn`` returns False."""

    def __init__(self, max_threads: int = MAX_CALLBACK_THREADS) -> None:
        self.max_threads = max_threads
        self._lock = threading.Condition()
        self._start()

    def after(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(self, callback, None)
        self._schedule(timer, delay_s)
        return timer

    def every(self, interval_s: float, callback: Callable[[], object]) -> Timer:
        """First call after ``interval_s``."""
        timer = Timer(self, callback, interval_s)
        self._schedule(timer, interval_s)
        return timer

    def _start(self) -> None:
        self._pid = os.getpid()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="slurp-timer")
        self._thread: threading.Thread | None = None

    def _schedule(self, timer: Timer, delay_s: float) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the threads stayed in the parent
                self._start()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="slurp-timers", daemon=True)
                self._thread.start()
            due = time.monotonic() + delay_s
            heapq.heappush(self._heap, (due, next(self._seq), timer))
            if self._heap[0][2] is timer:  # sooner than what the loop waits for
                self._lock.notify()

    def _loop(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait()
                    continue
                due, _, timer = self._heap[0]
                wait_s = due - time.monotonic()
                if wait_s > 0:
                    self._lock.wait(wait_s)
                    continue
                heapq.heappop(self._heap)
                self._pool.submit(timer._fire)


_process_timers: Timers | None = None
_process_lock = threading.Lock()


def process_timers() -> Timers:
    """This process's ``Timers`` (made on first use)."""
    global _process_timers
    with _process_lock:
        if _process_timers is None:
            _process_timers = Timers()
        return _process_timers
