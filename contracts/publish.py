"""Publish a ``RunJob`` to slurp's workers with plain Redis commands (no dramatiq import).

This module is a public API: other services use it, or re-implement the same few
Redis commands in any language. The format is Dramatiq 2.x's own RedisBroker format
(``dramatiq/brokers/redis.py`` ``enqueue`` and ``redis/dispatch.lua`` ``enqueue``), so
a worker cannot tell a message published here from one sent by ``actor.send``.

Wire format, for queue ``Q`` (default ``slurp``) and key namespace ``N`` (default
``dramatiq``, the RedisBroker's ``namespace``):

1. Pick two fresh UUID4 strings: ``MID`` (the Dramatiq message id) and ``RID`` (the
   Redis message id; Dramatiq gives every enqueue its own, so a retried message never
   collides with its previous copy).
2. Build the message, a JSON object with exactly these fields::

       {"queue_name": Q,
        "actor_name": "run_job",
        "args": [<the RunJob as a JSON object>],
        "kwargs": {},
        "options": {"redis_message_id": RID},
        "message_id": MID,
        "message_timestamp": <Unix time in integer milliseconds>}

   The ``RunJob`` object is ``run.model_dump(mode="json")`` (its JSON Schema is
   ``contracts/schemas/run_job.schema.json``). Dramatiq writes compact JSON (no
   spaces); any valid UTF-8 JSON decodes the same.
3. Atomically (``MULTI``/``EXEC``)::

       HSET  N:Q.msgs  RID  <message JSON>
       RPUSH N:Q       RID

A worker pops ``RID`` from the list ``N:Q``, reads the message from the hash
``N:Q.msgs`` and calls the ``run_job`` actor with the ``RunJob``. ``run_id`` is the
idempotency key: publishing the same ``RunJob`` twice runs it at most once.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass

import redis

from contracts.messages import RunJob

__all__ = [
    "ACTOR_NAME",
    "DEFAULT_NAMESPACE",
    "DEFAULT_QUEUE",
    "EncodedMessage",
    "QueueKeys",
    "encode_run_job",
    "publish_run_job",
    "queue_keys",
]

#: The Dramatiq actor that runs a ``RunJob``.
ACTOR_NAME = "run_job"
#: The queue slurp's workers consume unless configured otherwise (``SLURP_QUEUE_NAME``).
DEFAULT_QUEUE = "slurp"
#: Dramatiq RedisBroker's default key prefix.
DEFAULT_NAMESPACE = "dramatiq"

# Dramatiq's own rule for queue names (dramatiq/actor.py), minus its internal suffixes.
_QUEUE_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")
_INTERNAL_SUFFIXES = (".DQ", ".XQ")


@dataclass(frozen=True)
class QueueKeys:
    """The Redis keys of one Dramatiq queue: the id list and the message hash."""

    queue: str  # list of Redis message ids, FIFO (RPUSH here, the worker pops the left)
    messages: str  # hash: Redis message id -> message JSON


@dataclass(frozen=True)
class EncodedMessage:
    """A message ready to be written: ``data`` goes into the hash under ``redis_message_id``."""

    message_id: str
    redis_message_id: str
    data: str


_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def _new_id() -> str:
    """A random UUID4 string; from ``random`` rather than ``os.urandom`` (ids must be
    unique, not secret), which is several times cheaper."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def queue_keys(queue_name: str = DEFAULT_QUEUE, namespace: str = DEFAULT_NAMESPACE) -> QueueKeys:
    """The keys of queue ``queue_name``; raises ``ValueError`` for a name Dramatiq refuses."""
    if not _QUEUE_NAME_RE.match(queue_name) or queue_name.endswith(_INTERNAL_SUFFIXES):
        raise ValueError(
            f"invalid queue name {queue_name!r}: use letters, digits, '_', '.', '-', "
            "starting with a letter or '_', not ending in .DQ or .XQ"
        )
    if not namespace or ":" in namespace:
        raise ValueError(f"invalid Redis namespace {namespace!r}: non-empty, without ':'")
    full = f"{namespace}:{queue_name}"
    return QueueKeys(queue=full, messages=f"{full}.msgs")


def encode_run_job(
    run: RunJob,
    queue_name: str = DEFAULT_QUEUE,
    *,
    message_id: str | None = None,
    redis_message_id: str | None = None,
    timestamp_ms: int | None = None,
) -> EncodedMessage:
    """The Dramatiq message JSON asking the ``run_job`` actor to run ``run``.

    Ids default to fresh UUID4s and the timestamp to now; pass them to get a fixed
    encoding (tests, or a publisher that must reproduce its message).
    """
    queue_keys(queue_name)  # validates the name
    rid = redis_message_id or _new_id()
    mid = message_id or _new_id()
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    # Exactly dramatiq's JSONEncoder layout (compact, these keys in this order), built
    # directly: the ticker encodes one message per slot and this is its hot path. Only
    # the RunJob needs a JSON encoder (pydantic's); the queue name is checked above to
    # hold no character JSON would escape, and the ids are ours.
    if not (_SAFE_ID_RE.match(rid) and _SAFE_ID_RE.match(mid)):
        raise ValueError("message ids may hold letters, digits, '-', '_', '.', ':' only")
    data = (
        f'{{"queue_name":"{queue_name}","actor_name":"{ACTOR_NAME}",'
        f'"args":[{run.model_dump_json()}],"kwargs":{{}},'
        f'"options":{{"redis_message_id":"{rid}"}},"message_id":"{mid}",'
        f'"message_timestamp":{int(stamp)}}}'
    )
    return EncodedMessage(message_id=mid, redis_message_id=rid, data=data)


def publish_run_job(
    redis_client: redis.Redis,
    run: RunJob,
    queue_name: str = DEFAULT_QUEUE,
    namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """Enqueue ``run`` for slurp's workers; return the Dramatiq message id.

    One ``MULTI``/``HSET``/``RPUSH``/``EXEC`` round trip: the message is either fully
    enqueued or not at all. Redis errors (``redis.RedisError``) propagate unchanged.
    """
    keys = queue_keys(queue_name, namespace)
    message = encode_run_job(run, queue_name)
    with redis_client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.messages, message.redis_message_id, message.data)
        pipe.rpush(keys.queue, message.redis_message_id)
        pipe.execute()
    return message.message_id
