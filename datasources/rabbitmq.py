"""``rabbitmq``: messages consumed from a queue, acknowledged only after the commit.

A source with a commit (``Source.commit``/``abort``, called through
``datasources.session.SourceSession``):

- **open** connects (pika, ``amqp://`` or ``amqps://``), checks the queue (or declares it,
  durable, with ``declare``), makes the ``bind`` bindings, and consumes. It stops at
  ``max_messages``, after ``max_wait_s`` without a message, or, with
  ``stop_when_empty``, as soon as the queue has no ready message; messages the broker
  had already sent beyond that are handed back at once. Nothing is acknowledged yet:
  the connection stays open, idle, until the run ends.
- **commit** (the run's records are stored) acknowledges every message consumed, in
  one ``basic.ack`` (``multiple``), then closes the connection.
- **abort** (the run failed, or its records were not stored) rejects them all back
  to the queue (``basic.nack``, ``requeue``), in their order. A worker that dies
  instead closes its connection with its process, and the broker requeues them too.
  A failed run loses no message.
- **Prefetch**: the broker may send ``prefetch`` messages ahead of the one being read
  (a channel ``basic.qos`` window moved forward as messages are read, since all stay
  unacknowledged until the commit). AMQP limits a window to 65,535 messages: beyond
  that many unacknowledged messages the limit is lifted and TCP flow control alone
  bounds what waits in the client (a socket buffer).
- **Redelivery after a committed run**: messages whose run committed but whose
  acknowledgement never arrived (the worker died in between) come back. Each consumed
  message's key (``message_id``, or a hash of its body with ``dedupe: content`` or when
  it has no id) is recorded *before* the storage commit and counts once the run is
  committed (``datasources.applied``): such messages are skipped and acknowledged,
  so an accumulative collection gets no duplicates. ``dedupe: none`` turns this off.
- **Bodies**: ``decode: json`` (the item is the body's JSON value), ``text``
  (``{"body": text}``) or ``bytes`` (``{"body": base64}``); with ``with_metadata`` the
  item is ``{body, message_id, routing_key, exchange, headers, timestamp,
  redelivered, content_type}``. A body that does not decode fails the run (it goes
  back to the queue: move it away, or give the queue a dead-letter policy).
- **Heartbeats are off** on this connection: it waits idle while the rest of the run
  goes on (other sources, the slurper, storage). A run whose messages stay
  unacknowledged longer than the broker's ``consumer_timeout`` (RabbitMQ: 30 minutes
  by default) has its channel closed by the broker: its messages come back and are
  skipped as applied by the next run.

The broker host is reached as written (it is not HTTP egress); the password comes from
an environment variable (``amqp://user:${env.NAME}@host/vhost`` or ``password_env``).

``SLURP_TEST_RABBITMQ_EXIT_BEFORE_ACK``: test-only. When set (to anything non-empty)
in the worker's environment, ``commit`` ends the process with ``os._exit`` right
before acknowledging: the crash between the storage commit and the acknowledgement
that the tests provoke. Never set it in production.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from contracts.datasources import RabbitMqSource
from datasources.applied import AppliedMarks
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ConfigError, DatasourceError, FetchError, ResponseFormatError
from datasources.progress import SourceProgress
from datasources.rows import jsonable
from datasources.runtime import Runtime
from datasources.sql import split_password

__all__ = [
    "AMQP_MAX_PREFETCH",
    "CONNECT_TIMEOUT_S",
    "EXIT_BEFORE_ACK_ENV",
    "MARK_BATCH",
    "POLL_S",
    "RabbitMqItems",
    "message_key",
]

log = logging.getLogger(__name__)

#: How long connecting (TCP, TLS, AMQP handshake) may take.
CONNECT_TIMEOUT_S = 10.0
#: How often an idle consumer wakes up (stop rules, cancellation).
POLL_S = 0.1
#: Messages per batch: marks are checked and written once per batch, and a batch is
#: what the source holds in memory.
MARK_BATCH = 500
#: The largest ``basic.qos`` prefetch count AMQP 0-9-1 can carry (a short).
AMQP_MAX_PREFETCH = 65_535
#: Test-only: exit the process right before acknowledging (see the module docstring).
EXIT_BEFORE_ACK_ENV = "SLURP_TEST_RABBITMQ_EXIT_BEFORE_ACK"


def message_key(body: bytes, message_id: str | None, dedupe: str) -> str:
    """The key that names a message for ``dedupe``: its id, else a hash of its body."""
    if dedupe == "message_id" and message_id:
        return f"id:{message_id}"
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass
class _Consumed:
    """What one run consumed and must acknowledge or give back."""

    connection: Any
    channel: Any
    last_tag: int = 0
    count: int = 0
    run_id: str = ""
    scope: str = ""
    skipped: list[str] = field(default_factory=list)


class RabbitMqItems(Source[RabbitMqSource]):
    type = "rabbitmq"
    transactional = True

    def __init__(self, config: RabbitMqSource, runtime: Runtime) -> None:
        super().__init__(config, runtime)
        self._consumed: _Consumed | None = None
        self._marks: AppliedMarks | None = None

    # -- the run -----------------------------------------------------------------------

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        redactor = self.runtime.redactor()
        url, variable = split_password(self.config.url, self.config.password_env)
        password = redactor.secret(variable, "broker password") if variable else None
        try:
            yield from self._consume(ctx, url, password, progress)
        except DatasourceError as error:
            error.redact(redactor)
            raise

    def _consume(
        self, ctx: RunContext, url: str, password: str | None, progress: SourceProgress
    ) -> Iterator[Item]:
        config = self.config
        committed: tuple[str, ...] = ()
        scope = ""
        if config.dedupe != "none":
            reader = self.runtime.collections
            if reader is None or ctx.collection is None:
                raise ConfigError(
                    "a rabbitmq source remembers applied messages in the database of the "
                    "run's collection: run it as a job (or set dedupe: none)"
                )
            self._marks = AppliedMarks(reader.store)
            entry = reader.catalog.get(ctx.collection)
            committed = entry.committed if entry is not None else ()
            scope = f"{ctx.collection}:{self.name}:{config.queue}"
            self._marks.prune(scope, committed)
        pika, exceptions = _pika()
        connection = _connect(pika, exceptions, url, password)
        consumed = _Consumed(connection, None, run_id=ctx.run_id, scope=scope)
        self._consumed = consumed
        try:
            channel = consumed.channel = connection.channel()
            self._queue(channel, exceptions)
            yield from self._read(ctx, channel, consumed, committed, progress, exceptions)
        except exceptions.AMQPError as error:
            self.abort()
            raise FetchError(f"RabbitMQ: {_describe(error)}") from None

    def _queue(self, channel: Any, exceptions: Any) -> None:
        config = self.config
        try:
            channel.queue_declare(config.queue, passive=not config.declare, durable=True)
            for binding in config.bind:
                channel.queue_bind(config.queue, binding.exchange, binding.routing_key)
        except exceptions.ChannelClosedByBroker as error:
            what = "bind" if config.bind and error.reply_code == 404 else "queue"
            raise FetchError(
                f"RabbitMQ refused the {what} of queue {config.queue!r}: "
                f"{error.reply_code} {error.reply_text}",
                retryable=error.reply_code == 404,  # it may exist by the next run
            ) from None

    def _read(
        self,
        ctx: RunContext,
        channel: Any,
        consumed: _Consumed,
        committed: tuple[str, ...],
        progress: SourceProgress,
        exceptions: Any,
    ) -> Iterator[Item]:
        config = self.config
        window = min(config.prefetch, config.max_messages)
        limit = window
        channel.basic_qos(prefetch_count=limit, global_qos=True)
        batch: list[tuple[Any, Any, bytes]] = []
        idle_since = time.monotonic()
        deliveries = channel.consume(config.queue, auto_ack=False, inactivity_timeout=POLL_S)
        try:
            for method, properties, body in deliveries:
                if ctx.cancel is not None:
                    ctx.cancel.check()
                if method is None:  # nothing for POLL_S
                    if batch:
                        yield from self._batch(batch, consumed, committed, progress)
                        batch = []
                    idle_s = time.monotonic() - idle_since
                    if idle_s >= config.max_wait_s or (
                        config.stop_when_empty and _ready(channel, config.queue) == 0
                    ):
                        return
                    continue
                idle_since = time.monotonic()
                batch.append((method, properties, body))
                received = consumed.count + len(batch)
                if received >= config.max_messages:
                    yield from self._batch(batch, consumed, committed, progress)
                    return
                if limit and limit < config.max_messages and limit - received < window // 2 + 1:
                    wanted = min(received + window, config.max_messages)
                    limit = wanted if wanted <= AMQP_MAX_PREFETCH else 0  # 0: no limit
                    channel.basic_qos(prefetch_count=limit, global_qos=True)
                if len(batch) >= MARK_BATCH:
                    yield from self._batch(batch, consumed, committed, progress)
                    batch = []
        finally:
            if channel.is_open:
                with contextlib.suppress(exceptions.AMQPError):
                    channel.cancel()  # messages sent ahead and not read go back at once

    def _batch(
        self,
        batch: list[tuple[Any, Any, bytes]],
        consumed: _Consumed,
        committed: tuple[str, ...],
        progress: SourceProgress,
    ) -> Iterator[Item]:
        """Check and record the batch's marks, then hand its items on."""
        config = self.config
        progress.page()
        keys = [
            message_key(body, getattr(properties, "message_id", None), config.dedupe)
            for _, properties, body in batch
        ]
        skip: set[str] = set()
        if self._marks is not None:
            skip = self._marks.applied(consumed.scope, keys, committed)
            self._marks.record(consumed.scope, consumed.run_id, (k for k in keys if k not in skip))
        items = []
        for (method, properties, body), key in zip(batch, keys, strict=True):
            if key in skip:
                consumed.skipped.append(key)
            else:
                items.append(self._item(method, properties, body, consumed.count))
            consumed.count += 1
            consumed.last_tag = method.delivery_tag
        if skip:
            log.warning(
                "datasource %r: skipped %d message(s) of queue %r already applied by a "
                "committed run (redelivered after a crash before their acknowledgement)",
                self.name, len(skip), config.queue,
            )  # fmt: skip
        yield from items

    def _item(self, method: Any, properties: Any, body: bytes, position: int) -> Item:
        config = self.config
        value: Any
        try:
            if config.decode == "json":
                value = json.loads(body.decode(config.encoding))
            elif config.decode == "text":
                value = body.decode(config.encoding)
            else:
                value = base64.b64encode(body).decode("ascii")
        except (UnicodeDecodeError, ValueError) as error:
            message_id = getattr(properties, "message_id", None)
            which = f"message_id {message_id!r}" if message_id else f"position {position}"
            raise ResponseFormatError(
                f"message at {which} of queue {config.queue!r} is not {config.decode} "
                f"({config.encoding}): {error}"
            ) from None
        if config.with_metadata:
            stamp = getattr(properties, "timestamp", None)
            return {
                "body": value,
                "message_id": getattr(properties, "message_id", None),
                "routing_key": method.routing_key,
                "exchange": method.exchange,
                "headers": jsonable(getattr(properties, "headers", None) or {}),
                "timestamp": datetime.fromtimestamp(stamp, UTC) if stamp else None,
                "redelivered": bool(method.redelivered),
                "content_type": getattr(properties, "content_type", None),
            }
        return value if config.decode == "json" else {"body": value}

    # -- the outcome -------------------------------------------------------------------

    def commit(self) -> None:
        """Acknowledge every message consumed (one ``basic.ack``, ``multiple``)."""
        consumed, self._consumed = self._consumed, None
        if consumed is None:
            return
        try:
            if consumed.last_tag:
                if os.environ.get(EXIT_BEFORE_ACK_ENV):
                    os._exit(86)  # test-only: die between the storage commit and the ack
                consumed.channel.basic_ack(delivery_tag=consumed.last_tag, multiple=True)
            _close(consumed.connection)  # waits for the broker: the ack has arrived
        except Exception as error:
            raise FetchError(
                f"acknowledging {consumed.count} message(s) of queue {self.config.queue!r} "
                f"failed ({_describe(error)}); they will be redelivered and skipped as applied"
            ) from None
        if self._marks is not None and consumed.scope:
            self._marks.forget(consumed.scope, consumed.run_id, consumed.skipped)

    def abort(self) -> None:
        """Give every message consumed back to the queue (``basic.nack``, requeue)."""
        consumed, self._consumed = self._consumed, None
        if consumed is None:
            return
        try:
            if consumed.channel is not None and consumed.channel.is_open and consumed.last_tag:
                consumed.channel.basic_nack(
                    delivery_tag=consumed.last_tag, multiple=True, requeue=True
                )
        finally:
            _close(consumed.connection)  # the broker requeues whatever is left unacked
        if self._marks is not None and consumed.scope:
            self._marks.forget(consumed.scope, consumed.run_id)


def _pika() -> tuple[Any, Any]:
    try:
        import pika
        import pika.exceptions
    except ImportError as error:
        raise ConfigError(
            f"the RabbitMQ client pika is not installed on this worker ({error}): "
            "install slurp[rabbitmq] (pip install 'slurp[rabbitmq]')"
        ) from None
    return pika, pika.exceptions


def _connect(pika: Any, exceptions: Any, url: str, password: str | None) -> Any:
    scheme, _, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    try:  # pika's URL parser wants a password with a user: credentials are set apart
        parameters = pika.URLParameters(f"{scheme}://{host}{slash}{tail}")
    except (ValueError, TypeError) as error:
        raise ConfigError(f"url cannot be parsed: {error}") from None
    if at:
        user = unquote(userinfo.partition(":")[0])
        parameters.credentials = pika.PlainCredentials(user, password or "")
    parameters.heartbeat = 0  # idle until the run ends (see the module docstring)
    parameters.socket_timeout = CONNECT_TIMEOUT_S
    parameters.stack_timeout = CONNECT_TIMEOUT_S
    parameters.blocked_connection_timeout = 60
    parameters.connection_attempts = 1
    parameters.client_properties = {"connection_name": "slurp"}
    try:
        return pika.BlockingConnection(parameters)
    except exceptions.ProbableAuthenticationError as error:
        raise FetchError(
            f"RabbitMQ refused the login: {_describe(error)}", retryable=False
        ) from None
    except exceptions.ProbableAccessDeniedError as error:
        raise FetchError(f"RabbitMQ refused access: {_describe(error)}", retryable=False) from None
    except exceptions.AMQPError as error:
        raise FetchError(f"cannot connect to RabbitMQ: {_describe(error)}") from None


def _ready(channel: Any, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and unacknowledged)."""
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def _close(connection: Any) -> None:
    if connection is not None and connection.is_open:
        connection.close()


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
