"""``AttemptReport``: a short attempt records start and end in one batch; a longer
one shows its start on its own first. (A pure unit: the sink here is a list; the
worker tests record through the real event log.)"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from contracts.events import Event, JobStarted, JobSucceeded
from workers.report import AttemptReport


class Batches:
    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail_first = fail_first
        self.published = threading.Event()

    def publish(self, event: Event, collection_type: str = "") -> None:
        self.publish_many([event], collection_type)

    def publish_many(self, events: Sequence[Event], collection_type: str = "") -> None:
        if self.fail_first:
            self.fail_first = False
            self.published.set()
            raise ConnectionError("database down")
        self.batches.append([e.kind for e in events])
        self.published.set()


def test_a_short_attempt_records_start_and_end_together() -> None:
    sink = Batches()
    report = AttemptReport(sink, "normal", delay_s=60)
    report.start(JobStarted(run_id="r", job="j"))
    report.end(JobSucceeded(run_id="r", job="j"))
    assert sink.batches == [["started", "succeeded"]]
    assert not report.visible.is_set()


def test_a_longer_attempt_shows_its_start_first() -> None:
    sink = Batches()
    report = AttemptReport(sink, "normal", delay_s=0.01)
    report.start(JobStarted(run_id="r", job="j"))
    assert report.visible.wait(10)
    report.end(JobSucceeded(run_id="r", job="j"))
    assert sink.batches == [["started"], ["succeeded"]]


def test_a_start_that_failed_to_record_is_recorded_with_the_end() -> None:
    sink = Batches(fail_first=True)
    report = AttemptReport(sink, "normal", delay_s=0.01)
    report.start(JobStarted(run_id="r", job="j"))
    assert sink.published.wait(10)
    report.end(JobSucceeded(run_id="r", job="j"))
    assert sink.batches == [["started", "succeeded"]]
