"""Total decoding of queue messages: every input becomes a message a worker can finish.

Dramatiq's Redis consumer decodes each fetched message before any actor sees it, and
trusts the message for its own bookkeeping: the Redis id it acknowledges comes from
``options.redis_message_id``, the consumer it hands the message back to from
``queue_name``, and the actor is called with ``args``/``kwargs`` as sent. A message
that breaks any of these (not JSON, nested 100,000 levels deep, no or a forged Redis
id, another queue's name) used to restart the consumer or leave its id in the ack set
forever. ``MessageDecoder.decode`` never raises and never trusts those fields:

- the input is bounded *before* it is parsed: at most ``max_bytes`` bytes and
  ``max_depth`` levels of nesting (checked by a scan that skips strings);
- ``queue_name`` and ``options.redis_message_id`` are set from where the consumer
  actually read the message (``consumer.TotalRedisConsumer`` fetches ids with data);
- ``options`` keep only what dramatiq's own middleware writes (``retries``,
  ``traceback``, ``requeue_timestamp``, and ``eta`` on delay queues), with checked
  types: a publisher cannot set time limits, retry counts or pipeline targets;
- anything else wrong becomes a *rejection*: a message for ``reject_actor`` whose one
  argument is ``{MALFORMED_KEY: reason}``; the actor records it (``JobRejected``)
  and the message is acknowledged like any other.

Actors still check their own arguments (``workers.app``): the decoder only knows the
envelope.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Collection
from typing import Any

import dramatiq

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MALFORMED_KEY",
    "MessageDecoder",
    "exceeds_depth",
]

logger = logging.getLogger(__name__)

#: Key of the body the rejecting actor receives for a message that cannot run.
MALFORMED_KEY = "__malformed__"
#: Largest message accepted, in bytes (a RunJob is a few hundred bytes; params fit).
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
#: Deepest nesting of JSON arrays/objects accepted (the envelope itself uses 3).
DEFAULT_MAX_DEPTH = 64
#: How much of a rejected message is quoted in its reason.
EXCERPT_BYTES = 200

_REQUIRED: dict[str, type] = {
    "queue_name": str,
    "actor_name": str,
    "args": list,
    "kwargs": dict,
    "options": dict,
    "message_id": str,
}
_OPTIONAL: dict[str, type] = {"message_timestamp": int}
_MAX_MESSAGE_ID_CHARS = 128
#: JSON strings (skipped whole, escapes included) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def exceeds_depth(data: bytes, max_depth: int) -> bool:
    """Does ``data`` nest JSON arrays/objects deeper than ``max_depth``?

    Linear in ``len(data)``, in C except one step per bracket or string; brackets
    inside strings do not count. Meant for data that is not yet known to be JSON:
    unbalanced input is judged by its deepest prefix."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    depth = 0
    for token in _TOKENS.finditer(data):
        char = token.group()[0]
        if char in b"[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in b"]}":
            depth -= 1
    return False


class MessageDecoder:
    """Turns the bytes fetched from one queue into a ``dramatiq.Message``, always.

    ``actors`` are the actor names this worker declares; ``reject_actor`` (one of
    them) receives the rejections."""

    def __init__(
        self,
        reject_actor: str,
        actors: Collection[str],
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.reject_actor = reject_actor
        self.actors = frozenset(actors) | {reject_actor}
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    def decode(
        self, data: bytes | None, queue_name: str, redis_id: str | bytes
    ) -> dramatiq.Message[Any]:
        """The message stored under ``redis_id`` on ``queue_name`` (data None: the id
        had no data). Never raises."""
        try:
            fields, problem = self._fields(data, queue_name, redis_id)
        except Exception as exc:  # a bug here must still not stall the consumer
            logger.exception("decoding message %s failed", redis_id)
            fields, problem = None, f"undecodable: {type(exc).__name__}: {exc}"
        if fields is not None:
            return dramatiq.Message(**fields)
        excerpt = (data or b"")[:EXCERPT_BYTES].decode("utf-8", "replace")
        reason = f"{problem}; data starts {excerpt!r}"
        logger.warning("rejecting message %s on queue %r: %s", redis_id, queue_name, reason)
        return self.rejection(queue_name, redis_id, reason)

    def rejection(
        self, queue_name: str, redis_id: str | bytes, reason: str
    ) -> dramatiq.Message[Any]:
        """A message asking ``reject_actor`` to record ``reason``."""
        return dramatiq.Message(
            queue_name=queue_name,
            actor_name=self.reject_actor,
            args=({MALFORMED_KEY: reason},),
            kwargs={},
            options={"redis_message_id": redis_id},
            message_id=str(uuid.uuid4()),
            message_timestamp=0,
        )

    def _fields(
        self, data: bytes | None, queue_name: str, redis_id: str | bytes
    ) -> tuple[dict[str, Any] | None, str]:
        if data is None:
            return None, "no message data stored under this id"
        if len(data) > self.max_bytes:
            return None, f"message of {len(data)} bytes exceeds the limit of {self.max_bytes}"
        if exceeds_depth(data, self.max_depth):
            return None, f"JSON nested deeper than {self.max_depth} levels"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:  # json.loads would guess UTF-16/32 from bytes
            return None, f"not JSON: not UTF-8: {exc}"
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return None, f"not JSON: {exc}"
        if not isinstance(message, dict):
            return None, f"not a dramatiq message: a JSON {type(message).__name__}, not an object"
        missing = [key for key in _REQUIRED if key not in message]
        if missing:
            return None, f"not a dramatiq message: missing {', '.join(missing)}"
        unknown = sorted(set(message) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            return None, f"not a dramatiq message: unknown fields {', '.join(unknown)}"
        for key, kind in (_REQUIRED | _OPTIONAL).items():
            value = message.get(key)
            if key in message and (not isinstance(value, kind) or isinstance(value, bool)):
                return None, f"not a dramatiq message: {key} must be a JSON {kind.__name__}"
        if message["actor_name"] not in self.actors:
            return None, f"unknown actor {message['actor_name']!r}"
        message_id = message["message_id"]
        if not 0 < len(message_id) <= _MAX_MESSAGE_ID_CHARS:
            message_id = str(uuid.uuid4())
        if message.get("queue_name") != queue_name:
            logger.info(
                "message %s names queue %r but was read from %r; treating it as %r's",
                redis_id, message["queue_name"], queue_name, queue_name,
            )  # fmt: skip
        options, problem = _options(message["options"], queue_name)
        if options is None:
            return None, problem
        options["redis_message_id"] = redis_id
        return {
            "queue_name": queue_name,
            "actor_name": message["actor_name"],
            "args": tuple(message["args"]),
            "kwargs": message["kwargs"],
            "options": options,
            "message_id": message_id,
            "message_timestamp": message.get("message_timestamp", 0),
        }, ""


def _options(sent: dict[str, Any], queue_name: str) -> tuple[dict[str, Any] | None, str]:
    """The options a worker honours, or (None, why) if one has the wrong type."""
    options: dict[str, Any] = {}
    retries = sent.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        return None, "options.retries must be a non-negative integer"
    if retries:
        options["retries"] = retries
    if isinstance(sent.get("traceback"), str):
        options["traceback"] = sent["traceback"][:10_000]
    stamp = sent.get("requeue_timestamp")
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        options["requeue_timestamp"] = stamp
    # Only delay queues hold messages with an eta (dramatiq's enqueue(delay=...)).
    if queue_name.endswith(".DQ") and "eta" in sent:
        eta = sent["eta"]
        if not isinstance(eta, int | float) or isinstance(eta, bool):
            return None, "options.eta must be a number (Unix milliseconds)"
        options["eta"] = eta
    return options, ""
