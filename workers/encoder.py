"""A JSON encoder for dramatiq that turns undecodable messages into rejections.

Dramatiq's consumer decodes each message before any actor sees it; a message that
is not JSON (or not a dramatiq message) makes the consumer raise and the message
stays un-acked, to come back after every worker restart. This encoder decodes such
data into a message for ``run_job`` whose body says it is malformed, so the runner
records a ``JobRejected`` with the reason and the message is acknowledged. The
message's Redis id is recovered by looking the raw data up in the queue's hash.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from typing import Any

import dramatiq
import redis

__all__ = ["MALFORMED_KEY", "TolerantJSONEncoder"]

logger = logging.getLogger(__name__)

#: Key of the body the runner receives for a message that could not be decoded.
MALFORMED_KEY = "__malformed__"
_TYPES: dict[str, type | tuple[type, ...]] = {
    "queue_name": str,
    "actor_name": str,
    "args": list,
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}
_REQUIRED = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id")


def _envelope_problem(message: object, actors: tuple[str, ...]) -> str | None:
    """Why ``message`` is not a dramatiq message for one of ``actors`` (None if it is)."""
    if not isinstance(message, dict):
        return f"not a dramatiq message: a JSON {type(message).__name__}, not an object"
    missing = [key for key in _REQUIRED if key not in message]
    if missing:
        return f"not a dramatiq message: missing {', '.join(missing)}"
    unknown = sorted(set(message) - set(_TYPES))
    if unknown:
        return f"not a dramatiq message: unknown fields {', '.join(unknown)}"
    for key, kind in _TYPES.items():
        if key in message and (
            not isinstance(message[key], kind) or isinstance(message[key], bool)
        ):
            return f"not a dramatiq message: {key} must be a JSON {kind.__name__}"  # type: ignore[union-attr]
    if message["actor_name"] not in actors:
        return f"unknown actor {message['actor_name']!r}"
    return None


class TolerantJSONEncoder(dramatiq.JSONEncoder):
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        queue_name: str,
        actor: str,
        known_actors: tuple[str, ...] = (),
        other_queues: tuple[str, ...] = (),
        broker_id: str = "",
    ) -> None:
        self.client = client
        queues = (queue_name, *other_queues)
        self.hash_keys = [f"{namespace}:{q}.msgs" for q in queues]
        # Messages fetched by this broker sit in these sets until acknowledged.
        self.ack_keys = [f"{namespace}:__acks__.{broker_id}.{q}" for q in queues]
        self._assigned: deque[str] = deque(maxlen=10_000)
        self._lock = threading.Lock()
        self.queue_name = queue_name
        self.actor = actor
        self.actors = (actor, *known_actors)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            problem: str | None = f"not JSON: {exc}"
        else:
            problem = _envelope_problem(message, self.actors)
            if problem is None:
                return message  # type: ignore[no-any-return]
        excerpt = data[:200].decode("utf-8", "replace")
        logger.warning("malformed message on queue %r: %s: %r", self.queue_name, problem, excerpt)
        return {
            "queue_name": self.queue_name,
            "actor_name": self.actor,
            "args": [{MALFORMED_KEY: f"{problem}; data starts {excerpt!r}"}],
            "kwargs": {},
            "options": {"redis_message_id": self._redis_id(data)},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 0,
        }

    def _redis_id(self, data: bytes) -> str:
        """The hash field holding ``data`` (to acknowledge it); rare, so a scan is fine.

        Identical junk may sit under several ids: prefer one this broker fetched (in
        its ack sets) and that no earlier decode of this process was given."""
        with self._lock:
            try:
                candidates = [
                    field.decode() if isinstance(field, bytes) else str(field)
                    for hash_key in self.hash_keys
                    for field, value in self.client.hscan_iter(hash_key, count=1000)
                    if value == data
                ]
                fresh = [c for c in candidates if c not in self._assigned]
                ours = [c for c in fresh if any(self.client.sismember(k, c) for k in self.ack_keys)]
                pool = ours or fresh or candidates
                chosen: str | None = pool[0] if pool else None
            except redis.RedisError:
                logger.exception("looking up the malformed message's id failed")
                chosen = None  # acknowledged never; redelivered after a restart
            if chosen is None:
                return f"unknown-{uuid.uuid4()}"
            self._assigned.append(chosen)
            return chosen
