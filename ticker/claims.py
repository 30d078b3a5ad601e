"""Exactly one ``RunJob`` per (job, slot), however many tickers run: claim + publish atomically.

One Lua script (Redis runs a script atomically: no other command interleaves) does::

    SET slurp:claim:<job>:<slot> <ticker id> NX EX <ttl_s>
    if that set the key:  HSET dramatiq:<queue>.msgs <rid> <message>
                          RPUSH dramatiq:<queue> <rid>

so a slot is either claimed *and* its message enqueued, or neither. A ticker that
dies mid-step cannot leave a claimed slot without its message, and two tickers
racing for a slot get one winner. ``<slot>`` is the slot in UTC as
``YYYY-MM-DDTHH:MM:SSZ``; job names cannot contain ``:``, so keys are unambiguous.

The claim key lives ``DEFAULT_CLAIM_TTL_S`` (7 days). A claim only has to outlive the
time during which some ticker may still consider the slot due: one poll interval
for a running replica, plus clock skew between replicas, plus the downtime of a ticker
that crashed after publishing but before recording the slot in the registry (on
restart it sees the slot again, and the claim stops it). Seven days covers any
realistic outage; 10k claims of an every-minute job take about 1 MB of Redis memory.
Even past the TTL a duplicate would be harmless: the scheduled ``run_id`` is derived
from (job, slot) and workers run each run id at most once.

All keys of one call must be on one Redis node (no Redis Cluster across slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import redis

from contracts.messages import RunJob
from contracts.publish import DEFAULT_NAMESPACE, DEFAULT_QUEUE, encode_run_job, queue_keys
from ticker.errors import ClaimError

__all__ = ["CLAIM_PREFIX", "DEFAULT_CLAIM_TTL_S", "Claimer", "SlotClaimer", "claim_key"]

#: Prefix of claim keys.
CLAIM_PREFIX = "slurp:claim"
#: How long a claim key lives, in seconds (see the module docstring).
DEFAULT_CLAIM_TTL_S = 7 * 24 * 3600

# KEYS: claim key, queue list, queue message hash.
# ARGV: holder (ticker id), ttl in seconds, redis message id, message JSON.
_CLAIM_AND_PUBLISH = """
if redis.call("SET", KEYS[1], ARGV[1], "NX", "EX", ARGV[2]) then
    redis.call("HSET", KEYS[3], ARGV[3], ARGV[4])
    redis.call("RPUSH", KEYS[2], ARGV[3])
    return 1
end
return 0
"""


class Claimer(Protocol):
    """What the ticker needs to send a slot: ``SlotClaimer``, or a stand-in (``slurp
    dev`` sends through an in-process broker). ``claim_and_publish_many``, if the
    claimer has it, sends a batch in one go; else the ticker calls this per run."""

    def claim_and_publish(self, run: RunJob) -> str | None:
        """Send ``run`` unless its slot was claimed; the message id, or None."""


def claim_key(job: str, slot: datetime, prefix: str = CLAIM_PREFIX) -> str:
    """``<prefix>:<job>:<slot as UTC YYYY-MM-DDTHH:MM:SSZ>``."""
    if slot.tzinfo is None:
        raise ValueError("slot must be timezone-aware")
    return f"{prefix}:{job}:{slot.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


class SlotClaimer:
    """Claims slots for ticker ``holder`` and enqueues their ``RunJob`` on ``queue_name``."""

    def __init__(
        self,
        redis_client: redis.Redis,
        holder: str,
        queue_name: str = DEFAULT_QUEUE,
        namespace: str = DEFAULT_NAMESPACE,
        ttl_s: int = DEFAULT_CLAIM_TTL_S,
        prefix: str = CLAIM_PREFIX,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1 second, got {ttl_s}")
        self.redis = redis_client
        self.holder = holder
        self.queue_name = queue_name
        self.keys = queue_keys(queue_name, namespace)
        self.ttl_s = int(ttl_s)
        self.prefix = prefix
        self._script = redis_client.register_script(_CLAIM_AND_PUBLISH)

    def claim_and_publish(self, run: RunJob) -> str | None:
        """Enqueue scheduled ``run`` if nobody claimed its slot yet.

        Returns the Dramatiq message id if this call won the slot, None if the slot was
        already claimed (by any ticker, this one included). Redis errors propagate; the
        slot is then neither claimed nor published and can be tried again.
        """
        if run.scheduled_for is None:
            raise ValueError(f"run {run.run_id} of job {run.job!r} has no scheduled_for slot")
        message = encode_run_job(run, self.queue_name)
        answer = self._script(
            keys=[
                claim_key(run.job, run.scheduled_for, self.prefix),
                self.keys.queue,
                self.keys.messages,
            ],
            args=[self.holder, self.ttl_s, message.redis_message_id, message.data],
        )
        if answer == 1:
            return message.message_id
        if answer == 0:
            return None
        raise ClaimError(f"claim script answered {answer!r}; expected 0 or 1")

    def claim_and_publish_many(self, runs: Sequence[RunJob]) -> list[str | None]:
        """``claim_and_publish`` for each of ``runs``, in one pipelined round trip.

        Each slot is claimed atomically on its own (the pipeline is not a transaction):
        the answer lists, per run, the message id or None. If Redis fails part-way, the
        error propagates and some runs may have been claimed and enqueued anyway; the
        caller treats all of them as not done, and on the retry those find their claim
        taken (counted as lost claims, never sent twice).
        """
        if not runs:
            return []
        messages = []
        with self.redis.pipeline(transaction=False) as pipe:
            for run in runs:
                if run.scheduled_for is None:
                    raise ValueError(
                        f"run {run.run_id} of job {run.job!r} has no scheduled_for slot"
                    )
                message = encode_run_job(run, self.queue_name)
                messages.append(message)
                self._script(
                    keys=[
                        claim_key(run.job, run.scheduled_for, self.prefix),
                        self.keys.queue,
                        self.keys.messages,
                    ],
                    args=[self.holder, self.ttl_s, message.redis_message_id, message.data],
                    client=pipe,
                )
            answers = pipe.execute()
        results: list[str | None] = []
        for message, answer in zip(messages, answers, strict=True):
            if answer not in (0, 1):
                raise ClaimError(f"claim script answered {answer!r}; expected 0 or 1")
            results.append(message.message_id if answer == 1 else None)
        return results

    def holder_of(self, job: str, slot: datetime) -> str | None:
        """The ticker id that claimed (job, slot), or None (unclaimed, or the claim expired)."""
        value = self.redis.get(claim_key(job, slot, self.prefix))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
