"""``TotalRedisBroker``: dramatiq's Redis broker with a consumer that cannot be stalled.

Dramatiq's ``_RedisConsumer`` fetches message *data* only (``dispatch.lua`` ``fetch``
pops ids and returns ``HMGET`` of their data), decodes it, and learns the Redis id to
acknowledge from inside the data. So a message whose data does not decode restarts
the consumer (every other message of the same fetch stays in the ack set until the
worker dies), and one whose data lacks or forges ``redis_message_id`` is never
acknowledged, or acknowledges another message.

``TotalRedisConsumer`` fetches ``(id, data)`` pairs with one Lua script of its own
(``FETCH_SCRIPT``: the same ``LPOP`` + ``SADD`` to the ack set + heartbeat as
dramatiq's, returning ids with the data), and decodes with ``MessageDecoder``, which
never raises and always yields a message carrying the id it was fetched under. The
message is then acknowledged by dramatiq's own ``ack``/``nack``, whatever it held.
Maintenance (requeueing dead workers' messages) still runs through dramatiq's
``dispatch.lua``, with the broker's ``maintenance_chance`` per fetch.

Waiting, instead of dramatiq's polling: when a fetch finds the queue empty, the
consumer blocks in Redis until a message is pushed (``BLMOVE queue queue RIGHT RIGHT``:
a no-op rotation of the list that returns as soon as it holds an element, and leaves
it in place for ``FETCH_SCRIPT`` to take), for at most the worker timeout. A message
published to an idle worker is thus picked up at once, where dramatiq's exponential
back-off waits up to the worker timeout (1 s by default); an idle consumer costs one
command per timeout. When the consumer holds its full prefetch, it waits instead for
one of its messages to be acknowledged or rejected (a worker thread became free),
then fetches at once.

Wire format and key layout are unchanged: publishers and dramatiq's ``enqueue`` are
untouched, and a worker with this broker interoperates with plain dramatiq workers.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import deque
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

from workers.decoding import MessageDecoder

__all__ = ["FETCH_SCRIPT", "TotalRedisBroker", "TotalRedisConsumer"]

#: KEYS: queue list, queue hash, this worker's ack set for the queue, heartbeats.
#: ARGV: how many to fetch, now (ms), worker id. Returns id1, data1, id2, data2, ...
#: (data false when the hash has no entry for the id).
FETCH_SCRIPT = """
redis.call("zadd", KEYS[4], ARGV[2], ARGV[3])
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local id = redis.call("lpop", KEYS[1])
  if not id then break end
  redis.call("sadd", KEYS[3], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call("hget", KEYS[2], id)
end
return out
"""


class TotalRedisBroker(RedisBroker):
    """A ``RedisBroker`` whose consumers decode with ``decoder`` (set it before the
    worker starts consuming; ``workers.app.setup`` does)."""

    decoder: MessageDecoder | None = None

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if self.decoder is None:
            raise RuntimeError("TotalRedisBroker.decoder must be set before consuming")
        return TotalRedisConsumer(self, queue_name, prefetch, timeout, self.decoder)


class TotalRedisConsumer(_RedisConsumer):
    """Consumes one queue; ``__next__`` returns a message for every fetched id."""

    def __init__(
        self,
        broker: TotalRedisBroker,
        queue_name: str,
        prefetch: int,
        timeout: int,
        decoder: MessageDecoder,
    ) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.decoder = decoder
        self.fetched: deque[tuple[str | bytes, bytes | None]] = deque()
        namespace = broker.namespace
        self.keys = [
            f"{namespace}:{queue_name}",
            f"{namespace}:{queue_name}.msgs",
            f"{namespace}:__acks__.{broker.broker_id}.{queue_name}",
            f"{namespace}:__heartbeats__",
        ]
        self.fetch_script = broker.client.register_script(FETCH_SCRIPT)
        #: Set by ``ack``/``nack`` (worker threads): ends the wait of a full prefetch.
        self.freed = threading.Event()

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.fetched)

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.fetched:
                    redis_id, data = self.fetched.popleft()
                    self.misses = 0
                    message = self.decoder.decode(data, self.queue_name, redis_id)
                    if message.message_id in self.queued_message_ids:  # a duplicated id
                        message = message.copy(message_id=str(uuid.uuid4()))
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if self.outstanding_message_count < self.prefetch:
                    fetched = self._fetch(self.prefetch - self.outstanding_message_count)
                    if fetched:
                        self.fetched.extend(fetched)
                        continue
                    self._await_message()
                elif self.freed.wait(self.timeout / 1000):
                    self.freed.clear()
                return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _await_message(self) -> None:
        """Block until the queue holds a message (or the worker timeout passes)."""
        queue = self.keys[0]
        # A socket_timeout shorter than the wait ends it early: look again.
        with contextlib.suppress(redis.TimeoutError):
            self.broker.client.blmove(queue, queue, self.timeout / 1000, "RIGHT", "RIGHT")

    def ack(self, message: MessageProxy) -> None:
        try:
            super().ack(message)  # type: ignore[no-untyped-call]
        finally:
            self.freed.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)  # type: ignore[no-untyped-call]
        finally:
            self.freed.set()

    def _fetch(self, count: int) -> list[tuple[str | bytes, bytes | None]]:
        broker = self.broker
        if broker._should_do_maintenance("fetch"):
            # dramatiq's dispatch with no ids to requeue: heartbeat plus maintenance.
            broker.scripts["dispatch"](
                keys=[broker.namespace],
                args=[
                    "requeue", current_millis(), self.queue_name, broker.broker_id,
                    broker.heartbeat_timeout, broker.dead_message_ttl, 1,
                    broker._max_unpack_size(),
                ],
            )  # fmt: skip
        flat = self.fetch_script(keys=self.keys, args=[count, current_millis(), broker.broker_id])
        pairs: list[tuple[str | bytes, bytes | None]] = []
        for index in range(0, len(flat), 2):
            raw_id = flat[index]
            try:
                redis_id: str | bytes = raw_id.decode()
            except UnicodeDecodeError:  # junk pushed by hand: acknowledge it as bytes
                redis_id = raw_id
            pairs.append((redis_id, flat[index + 1]))
        return pairs
