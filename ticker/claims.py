"""Exactly one ``RunJob`` per (job, slot), however many tickers run: claim + publish atomically.

A claim is the key ``slurp:claim:<job>:<slot>`` (``<slot>`` in UTC as
``YYYY-MM-DDTHH:MM:SSZ``; job names cannot contain ``:``, so keys are unambiguous),
set with ``NX``: whoever sets it owns the slot and sends its message. One Lua script
(Redis runs a script atomically: no other command interleaves) does it for a whole
batch of slots::

    for each slot i:   SET slurp:claim:<job i>:<slot i> <ticker id> NX EX <ttl_s>
    the slots it set:  HSET  dramatiq:<queue>.msgs <rid i> <message i> ...
                       RPUSH dramatiq:<queue> <rid i> ...
    answer:            one character per slot, "1" = claimed and sent, "0" = taken

so a slot is either claimed *and* its message enqueued, or neither. A ticker that
dies mid-step cannot leave a claimed slot without its message, and two tickers
racing for a slot get one winner. One script call per batch (up to
``MAX_SCRIPT_SLOTS``) instead of one per slot: at 40k slots in a burst this is the
difference between 40k script runs and 40. The keys are the same as with one call
per slot, so replicas of either kind exclude each other.

``claim_and_publish_slots`` streams: it sends batch k+1 on the connection before
reading the answer to batch k, so the ticker plans and encodes the next batch while
Redis runs the current one. Each call is one ``EVAL`` whose Redis protocol bytes are
built here in one piece (redis-py's generic packing costs more per argument than
building the message did); Redis caches the compiled script by its digest.

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

import itertools
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import redis

from contracts.base import utcnow
from contracts.messages import RunJob
from contracts.publish import (
    DEFAULT_NAMESPACE,
    DEFAULT_QUEUE,
    EncodedMessage,
    ScheduledMessage,
    ScheduledRunEncoder,
    encode_run_job,
    queue_keys,
)
from ticker.errors import ClaimError

__all__ = [
    "CLAIM_PREFIX",
    "DEFAULT_CLAIM_TTL_S",
    "MAX_SCRIPT_SLOTS",
    "Claimer",
    "SentRun",
    "SlotClaimer",
    "claim_key",
]

#: Prefix of claim keys.
CLAIM_PREFIX = "slurp:claim"
#: How long a claim key lives, in seconds (see the module docstring).
DEFAULT_CLAIM_TTL_S = 7 * 24 * 3600
#: Slots claimed by one script call at most (Lua's ``unpack`` takes ~8000 values).
MAX_SCRIPT_SLOTS = 1000

# KEYS: queue list, queue message hash, then one claim key per slot.
# ARGV: holder (ticker id), ttl in seconds, then per slot: redis message id, message JSON.
_CLAIM_AND_PUBLISH_BATCH = """
local won, fields, ids = {}, {}, {}
for i = 3, #KEYS do
    local arg = 2 * i - 3
    if redis.call("SET", KEYS[i], ARGV[1], "NX", "EX", ARGV[2]) then
        won[i - 2] = "1"
        fields[#fields + 1] = ARGV[arg]
        fields[#fields + 1] = ARGV[arg + 1]
        ids[#ids + 1] = ARGV[arg]
    else
        won[i - 2] = "0"
    end
end
if #ids > 0 then
    redis.call("HSET", KEYS[2], unpack(fields))
    redis.call("RPUSH", KEYS[1], unpack(ids))
end
return table.concat(won)
"""


class SentRun(NamedTuple):
    """A scheduled run this ticker claimed and enqueued."""

    run_id: str
    message_id: str
    requested_at: datetime
    enqueued_at: float  # time.monotonic() when Redis confirmed it


class Claimer(Protocol):
    """What the ticker needs to send a slot: ``SlotClaimer``, or a stand-in (``slurp
    dev`` sends through an in-process broker). If the claimer also has
    ``claim_and_publish_slots`` (as ``SlotClaimer``), the ticker sends batches of
    (job, slot) pairs through it; else ``claim_and_publish_many`` (a batch of
    ``RunJob``), else this method per run."""

    def claim_and_publish(self, run: RunJob) -> str | None:
        """Send ``run`` unless its slot was claimed; the message id, or None."""


def claim_key(job: str, slot: datetime, prefix: str = CLAIM_PREFIX) -> str:
    """``<prefix>:<job>:<slot as UTC YYYY-MM-DDTHH:MM:SSZ>``."""
    if slot.tzinfo is None:
        raise ValueError("slot must be timezone-aware")
    return f"{prefix}:{job}:{_stamp(slot)}"


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
        self._encoders: dict[str, ScheduledRunEncoder] = {}
        self._stamps: dict[datetime, str] = {}  # slot -> claim key suffix, for the last slots

    def claim_and_publish_slots(
        self,
        slots: Iterable[tuple[str, datetime]],
        requested_by: str = "ticker",
        batch_size: int = MAX_SCRIPT_SLOTS,
        into: list[SentRun | None] | None = None,
    ) -> list[SentRun | None]:
        """Claim each (job, slot) and enqueue ``RunJob.for_slot(job, slot, requested_by)``
        for the ones nobody claimed yet: one script call per ``batch_size`` slots (at
        most ``MAX_SCRIPT_SLOTS``), the next one sent before the answer to the last.

        ``slots`` is consumed one batch ahead (a generator may plan them lazily).
        Returns, per slot, the run sent, or None if the slot was already claimed (by
        any ticker, this one included), appended to ``into`` (if given) as each
        batch is answered. The messages are built by ``ScheduledRunEncoder`` (the
        same bytes as ``encode_run_job``), requested at the time their batch is
        built. Each script call is atomic. If Redis fails, the error propagates;
        ``into`` then holds the answers received before it, and the batch in flight
        may or may not have been sent: treat its slots as not done, and on the retry
        they find their claim taken if they were (counted as lost claims, never sent
        twice).
        """
        if not 1 <= batch_size <= MAX_SCRIPT_SLOTS:
            raise ValueError(f"batch_size must be 1..{MAX_SCRIPT_SLOTS}, got {batch_size}")
        encoder = self._encoders.get(requested_by)
        if encoder is None:
            encoder = self._encoders[requested_by] = ScheduledRunEncoder(
                self.queue_name, requested_by
            )
        results: list[SentRun | None] = [] if into is None else into
        pending = iter(slots)
        with _Channel(self.redis) as channel:
            in_flight: tuple[list[ScheduledMessage], datetime] | None = None
            while True:
                chunk = list(itertools.islice(pending, batch_size))
                if chunk:
                    requested_at = utcnow()
                    messages = encoder.encode_many(chunk, requested_at)
                    channel.send(self._command([self._key(j, s) for j, s in chunk], messages))
                if in_flight is not None:
                    answer = self._answer(channel.receive(), len(in_flight[0]))
                    done, at = time.monotonic(), in_flight[1]
                    results += [
                        SentRun(m.run_id, m.message_id, at, done) if won == "1" else None
                        for m, won in zip(in_flight[0], answer, strict=True)
                    ]
                if not chunk:
                    return results
                in_flight = (messages, requested_at)

    def claim_and_publish_many(self, runs: Sequence[RunJob]) -> list[str | None]:
        """Claim + enqueue scheduled ``runs`` as given (any ``RunJob``, encoded by
        ``encode_run_job``), one script call per ``MAX_SCRIPT_SLOTS`` runs: per run,
        the message id, or None if its slot was already claimed. Failures as in
        ``claim_and_publish_slots``."""
        results: list[str | None] = []
        for start in range(0, len(runs), MAX_SCRIPT_SLOTS):
            chunk = runs[start : start + MAX_SCRIPT_SLOTS]
            keys = []
            for run in chunk:
                if run.scheduled_for is None:
                    raise ValueError(
                        f"run {run.run_id} of job {run.job!r} has no scheduled_for slot"
                    )
                keys.append(self._key(run.job, run.scheduled_for))
            messages = [encode_run_job(run, self.queue_name) for run in chunk]
            with _Channel(self.redis) as channel:
                channel.send(self._command(keys, messages))
                answer = self._answer(channel.receive(), len(chunk))
            results += [
                message.message_id if won == "1" else None
                for message, won in zip(messages, answer, strict=True)
            ]
        return results

    def claim_and_publish(self, run: RunJob) -> str | None:
        """Enqueue scheduled ``run`` if nobody claimed its slot yet: the Dramatiq message
        id if this call won the slot, None if it was already claimed (by any ticker,
        this one included). Redis errors propagate; the slot is then neither claimed
        nor published and can be tried again."""
        return self.claim_and_publish_many([run])[0]

    def holder_of(self, job: str, slot: datetime) -> str | None:
        """The ticker id that claimed (job, slot), or None (unclaimed, or the claim expired)."""
        value = self.redis.get(claim_key(job, slot, self.prefix))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    # -- internals --------------------------------------------------------------------

    def _key(self, job: str, slot: datetime) -> str:
        stamp = self._stamps.get(slot)
        if stamp is None:
            if slot.tzinfo is None:
                raise ValueError("slot must be timezone-aware")
            if len(self._stamps) >= 4096:
                self._stamps.clear()
            stamp = self._stamps[slot] = _stamp(slot)
        return f"{self.prefix}:{job}:{stamp}"

    def _command(
        self, claim_keys: list[str], messages: Sequence[ScheduledMessage | EncodedMessage]
    ) -> bytes:
        """``EVAL <script> <n> <queue> <hash> <claim keys> <holder> <ttl> <rid data>...``
        in the Redis protocol (RESP): ``*<count>``, then ``$<bytes>`` and each value."""
        head = [
            "EVAL",
            _CLAIM_AND_PUBLISH_BATCH,
            str(2 + len(claim_keys)),
            self.keys.queue,
            self.keys.messages,
        ]
        count = len(head) + len(claim_keys) + 2 + 2 * len(messages)
        parts = [f"*{count}\r\n"]
        parts += [_bulk(value) for value in head]
        parts += [_bulk(key) for key in claim_keys]
        parts += [_bulk(self.holder), _bulk(str(self.ttl_s))]
        if all(m.data.isascii() for m in messages):  # lengths in bytes = in characters
            parts += [
                f"${len(m.redis_message_id)}\r\n{m.redis_message_id}\r\n"
                f"${len(m.data)}\r\n{m.data}\r\n"
                for m in messages
            ]
        else:
            parts += [f"{_bulk(m.redis_message_id)}{_bulk(m.data)}" for m in messages]
        return "".join(parts).encode()

    @staticmethod
    def _answer(answer: object, count: int) -> str:
        """The script's answer, checked: one "0"/"1" per slot."""
        if isinstance(answer, bytes):
            answer = answer.decode()
        if not isinstance(answer, str) or len(answer) != count or answer.strip("01"):
            raise ClaimError(f"claim script answered {answer!r}; expected one 0/1 per slot")
        return answer


class _Channel:
    """One pooled connection of ``client`` for commands sent ahead of their answers.

    Sends prebuilt protocol bytes and reads answers in order. The connection's
    health check (a PING on reuse, ``health_check_interval``) runs before the first
    command only: a PING between two commands in flight would read the wrong answer.
    Any error disconnects the connection (answers still in flight go with it) before
    it returns to the pool. Errors are redis-py's (``ConnectionError``,
    ``ResponseError``...), without retry: the caller's next pass is the retry.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection = self._pool.get_connection()
        self._checked = False

    def __enter__(self) -> _Channel:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if error is not None:
            self._connection.disconnect()  # type: ignore[no-untyped-call]
        self._pool.release(self._connection)

    def send(self, command: bytes) -> None:
        check, self._checked = not self._checked, True
        self._connection.send_packed_command([command], check_health=check)  # type: ignore[no-untyped-call]

    def receive(self) -> object:
        return self._connection.read_response()


def _bulk(value: str) -> str:
    """``value`` as a RESP bulk string (its length counted in UTF-8 bytes)."""
    size = len(value) if value.isascii() else len(value.encode())
    return f"${size}\r\n{value}\r\n"


def _stamp(slot: datetime) -> str:
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
