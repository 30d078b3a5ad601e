"""A no-op dramatiq actor: the baseline of bench/dispatch.py. It counts its calls in
Redis so the benchmark can tell when a batch is done."""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker


def setup() -> RedisBroker:
    url = os.environ["BENCH_REDIS_URL"]
    broker = RedisBroker(url=url)  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    counter = redis.Redis.from_url(url)

    def noop(payload: object) -> None:
        counter.incr("bench:noop:done")

    dramatiq.Actor(
        noop, broker=broker, actor_name="noop", queue_name="noop", priority=0, options={}
    )
    return broker
