"""``TotalRedisConsumer`` polling on a real redis-server: an acknowledgement ends the
consumer's back-off, so the next message is fetched as soon as a worker thread is
free, not after the rest of a back-off that grew while the run executed."""

from __future__ import annotations

import threading
import uuid

import dramatiq

from workers.consumer import TotalRedisBroker, TotalRedisConsumer
from workers.decoding import MessageDecoder

ACTOR = "consumer_test_actor"


def _broker(redis_url: str) -> TotalRedisBroker:
    broker = TotalRedisBroker(url=redis_url, namespace=f"t{uuid.uuid4().hex[:8]}")  # type: ignore[no-untyped-call]
    broker.decoder = MessageDecoder(ACTOR, (ACTOR,))
    broker.declare_queue("q")
    return broker


def _enqueue(broker: TotalRedisBroker) -> None:
    broker.enqueue(
        dramatiq.Message(queue_name="q", actor_name=ACTOR, args=(), kwargs={}, options={})
    )


def _next_in_thread(consumer: TotalRedisConsumer) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(next(consumer)), daemon=True)
    thread.start()
    return thread, out


def test_an_ack_ends_the_back_off_and_resets_it(redis_url: str) -> None:
    broker = _broker(redis_url)
    consumer = broker.consume("q", prefetch=2, timeout=120_000)
    try:
        _enqueue(broker)
        message = next(consumer)
        assert message is not None
        consumer.misses = 40  # the next empty fetch backs off 60-120 s
        waiting, out = _next_in_thread(consumer)
        waiting.join(0.2)
        assert waiting.is_alive(), "an empty fetch backs off"
        consumer.ack(message)  # a worker thread finished the run
        waiting.join(30)
        assert not waiting.is_alive(), "the ack did not end the back-off"
        assert out == [None] and consumer.misses == 0
        # The next message is fetched at once, with no back-off left over.
        _enqueue(broker)
        assert next(consumer) is not None
    finally:
        consumer.close()
        broker.close()


def test_a_nack_also_ends_the_back_off(redis_url: str) -> None:
    broker = _broker(redis_url)
    consumer = broker.consume("q", prefetch=2, timeout=120_000)
    try:
        _enqueue(broker)
        message = next(consumer)
        assert message is not None
        consumer.misses = 40
        waiting, out = _next_in_thread(consumer)
        message.fail()
        consumer.nack(message)
        waiting.join(30)
        assert not waiting.is_alive() and out == [None]
    finally:
        consumer.close()
        broker.close()
