"""workers.timers: the process's scheduler of the runs' timed chores (lease renewal,
cancel polls, held-back start events)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest

from workers.timers import Timers, process_timers

DEADLINE_S = 10


def test_after_calls_once_and_a_cancelled_timer_never() -> None:
    timers = Timers()
    fired, never = threading.Event(), threading.Event()
    calls: list[str] = []

    def once() -> None:
        calls.append("once")
        fired.set()

    cancelled = timers.after(0.05, never.set)
    timers.after(0.1, once)
    cancelled.cancel()
    assert fired.wait(DEADLINE_S)
    later = threading.Event()
    timers.after(0.1, later.set)  # due after both of the above
    assert later.wait(DEADLINE_S)
    assert calls == ["once"] and not never.is_set()


def test_every_repeats_without_overlap_until_the_callback_says_false() -> None:
    timers = Timers()
    done = threading.Event()
    state = {"calls": 0, "inside": 0, "most_inside": 0}

    def chore() -> bool:
        state["inside"] += 1
        state["most_inside"] = max(state["most_inside"], state["inside"])
        time.sleep(0.02)  # slower than the interval: calls must still not overlap
        state["inside"] -= 1
        state["calls"] += 1
        if state["calls"] == 5:
            done.set()
            return False
        return True

    timer = timers.every(0.005, chore)
    assert done.wait(DEADLINE_S)
    assert state == {"calls": 5, "inside": 0, "most_inside": 1}
    assert timer.cancelled


def test_a_slow_callback_holds_up_no_other_timer() -> None:
    timers = Timers()
    release, quick = threading.Event(), threading.Event()
    timers.after(0, lambda: release.wait(DEADLINE_S))  # blocks one pool thread
    timers.after(0.01, quick.set)
    assert quick.wait(DEADLINE_S)
    release.set()


def test_cancel_with_wait_returns_after_the_call_in_progress() -> None:
    timers = Timers()
    entered, finished = threading.Event(), threading.Event()

    def slow() -> None:
        entered.set()
        time.sleep(0.1)
        finished.set()

    timer = timers.after(0, slow)
    assert entered.wait(DEADLINE_S)
    timer.cancel(wait=True)
    assert finished.is_set()


def test_a_failing_callback_is_logged_and_its_timer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timers = Timers()
    calls: list[int] = []
    third = threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 3:
            third.set()
        raise RuntimeError("redis away")

    with caplog.at_level(logging.ERROR, logger="workers.timers"):
        timer = timers.every(0.01, flaky)
        assert third.wait(DEADLINE_S)
        timer.cancel(wait=True)
    assert "timed callback" in caplog.text and "redis away" in caplog.text


def _child_fires(answer: multiprocessing.queues.Queue[bool]) -> None:
    fired = threading.Event()
    process_timers().after(0.01, fired.set)
    answer.put(fired.wait(DEADLINE_S))


def test_timers_work_in_a_process_forked_after_they_started() -> None:
    """dramatiq forks its worker processes: the scheduler thread of the parent is not
    in the child, which starts its own."""
    started = threading.Event()
    process_timers().after(0, started.set)
    assert started.wait(DEADLINE_S)
    context = multiprocessing.get_context("fork")
    answer: multiprocessing.queues.Queue[bool] = context.Queue()
    child = context.Process(target=_child_fires, args=(answer,))
    child.start()
    assert answer.get(timeout=DEADLINE_S) is True
    child.join(DEADLINE_S)
    assert child.exitcode == 0
