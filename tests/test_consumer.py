"""``TotalRedisConsumer`` waiting on a real redis-server: an empty consumer blocks in
Redis until a message is published (no polling back-off), and one holding its full
prefetch fetches again as soon as one of its messages is acknowledged."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from dramatiq.broker import MessageProxy

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


def test_a_message_published_to_an_idle_consumer_is_fetched_at_once(redis_url: str) -> None:
    """The empty consumer blocks in Redis until a message comes (dramatiq's polling
    would sleep up to the 120 s timeout after enough misses), and the message is
    left in the queue, in order, for the fetch."""
    broker = _broker(redis_url)
    consumer = broker.consume("q", prefetch=3, timeout=120_000)
    try:
        consumer.misses = 40  # what an idle hour of polling would have reached
        waiting, out = _next_in_thread(consumer)
        waiting.join(0.2)
        assert waiting.is_alive(), "an empty queue is waited on"
        ids = []
        for _ in range(3):
            message = dramatiq.Message(
                queue_name="q", actor_name=ACTOR, args=(), kwargs={}, options={}
            )
            broker.enqueue(message)
            ids.append(message.message_id)
        waiting.join(30)
        assert not waiting.is_alive(), "the published message did not end the wait"
        assert out == [None]
        fetched = [next(consumer) for _ in range(3)]
        assert [m.message_id for m in fetched if m is not None] == ids
    finally:
        consumer.close()
        broker.close()


@contextmanager
def _holding_one_message(redis_url: str) -> Iterator[tuple[TotalRedisConsumer, MessageProxy]]:
    """A consumer with prefetch 1 that holds one message (no room to fetch more)."""
    broker = _broker(redis_url)
    consumer = broker.consume("q", prefetch=1, timeout=120_000)
    try:
        _enqueue(broker)
        message = next(consumer)
        assert message is not None
        yield consumer, message
    finally:
        consumer.close()
        broker.close()


def test_with_its_prefetch_full_an_ack_lets_the_consumer_fetch_again(redis_url: str) -> None:
    with _holding_one_message(redis_url) as (consumer, message):
        _enqueue(consumer.broker)  # waiting, but the consumer may hold only one message
        waiting, out = _next_in_thread(consumer)
        waiting.join(0.2)
        assert waiting.is_alive(), "a full prefetch waits for a free worker thread"
        consumer.ack(message)  # a worker thread finished the run
        waiting.join(30)
        assert not waiting.is_alive(), "the ack did not end the wait"
        assert out == [None]
        assert next(consumer) is not None  # fetched at once


def test_a_nack_also_frees_the_prefetch(redis_url: str) -> None:
    with _holding_one_message(redis_url) as (consumer, message):
        waiting, out = _next_in_thread(consumer)
        message.fail()
        consumer.nack(message)
        waiting.join(30)
        assert not waiting.is_alive() and out == [None]
