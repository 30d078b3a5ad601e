"""The baseline of bench/dispatch.py: a dramatiq actor doing the useful work of a tiny
run and nothing else, on the same Redis and MongoDB as slurp: read the job document,
insert the record, write one history document (three database round trips)."""

from __future__ import annotations

import os
import uuid

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from pymongo import MongoClient

#: The queue and actor of the baseline.
QUEUE = "baseline"
ACTOR = "three_ops"


def setup() -> RedisBroker:
    broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    db = MongoClient(os.environ["BENCH_MONGO_URL"])[os.environ["BENCH_MONGO_DB"]]

    def three_ops(payload: dict[str, str]) -> None:
        job = db["slurp_jobs"].find_one({"_id": payload["job"]})
        assert job is not None
        db["baseline_records"].insert_one({"_id": str(uuid.uuid4()), "v": 1})
        db["baseline_history"].update_one(
            {"_id": payload["run_id"]}, {"$set": {"status": "succeeded"}}, upsert=True
        )

    dramatiq.Actor(
        three_ops, broker=broker, actor_name=ACTOR, queue_name=QUEUE, priority=0, options={}
    )
    return broker
