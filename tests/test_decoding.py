"""The total message decoder, byte by byte (no server needed: it is a pure function of
the bytes and the queue they were read from; the worker tests run it for real)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.decoding import MALFORMED_KEY, MessageDecoder, exceeds_depth

DECODER = MessageDecoder("run_job", ("run_job", "record_event"), max_bytes=10_000, max_depth=8)


def envelope(**overrides: object) -> bytes:
    message: dict[str, object] = {
        "queue_name": "slurp", "actor_name": "run_job", "args": [{"job": "x"}], "kwargs": {},
        "options": {"redis_message_id": "claimed"}, "message_id": "m", "message_timestamp": 1,
    }  # fmt: skip
    message.update(overrides)
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("data", "limit", "deeper"),
    [
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b'["[[[[[["]', 1, False),  # brackets inside strings do not count
        (b'["\\"[[[["]', 1, False),  # nor after an escaped quote
        (b"[{}, {}, {}, {}]", 2, False),  # many brackets, shallow
        (b"[" * 100_000, 64, True),
        (b'{"a": ' * 65, 64, True),  # unbalanced prefix is judged as it stands
        (b"\xff[[[", 2, True),
    ],
)
def test_depth_table(data: bytes, limit: int, deeper: bool) -> None:
    assert exceeds_depth(data, limit) is deeper


def reason(data: bytes | None, queue: str = "slurp") -> str:
    message = DECODER.decode(data, queue, "rid-1")
    assert message.actor_name == "run_job"
    assert message.options["redis_message_id"] == "rid-1"
    body = message.args[0]
    assert isinstance(body, dict) and MALFORMED_KEY in body, body
    return str(body[MALFORMED_KEY])


def test_rejections_name_the_problem() -> None:
    assert "no message data" in reason(None)
    assert "exceeds the limit of 10000" in reason(b"[" + b"0," * 6000 + b"0]")
    assert "nested deeper than 8" in reason(b"[" * 9_000)
    assert "not JSON" in reason(b"\xff\xfe")
    assert "a JSON list, not an object" in reason(b"[1]")
    assert "missing options" in reason(b'{"queue_name": "slurp", "actor_name": "run_job", '
                                       b'"args": [], "kwargs": {}, "message_id": "m"}')  # fmt: skip
    assert "unknown fields extra" in reason(envelope(extra=1))
    assert "args must be a JSON list" in reason(envelope(args={}))
    assert "message_timestamp must be a JSON int" in reason(envelope(message_timestamp=True))
    assert "unknown actor 'os_system'" in reason(envelope(actor_name="os_system"))
    assert "options.retries" in reason(envelope(options={"retries": -1}))
    assert "options.eta must be a number" in reason(envelope(options={"eta": "x"}), "slurp.DQ")


def test_envelope_fields_come_from_where_the_message_was_read() -> None:
    message = DECODER.decode(
        envelope(
            queue_name="elsewhere",
            options={
                "redis_message_id": "forged",
                "retries": 2,
                "eta": 5,
                "time_limit": 1,
                "throws": "Exception",
                "pipe_target": {},
            },
        ),
        "slurp",
        "rid-9",
    )
    assert message.queue_name == "slurp"
    assert message.options == {"redis_message_id": "rid-9", "retries": 2}  # eta: not a DQ
    assert message.args == ({"job": "x"},)
    delayed = DECODER.decode(envelope(queue_name="slurp.DQ", options={"eta": 5}), "slurp.DQ", "d")
    assert delayed.options == {"redis_message_id": "d", "eta": 5}


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_message(data: bytes) -> None:
    message = DECODER.decode(data, "slurp", b"\xff-id")
    assert message.options["redis_message_id"] == b"\xff-id"
    assert message.queue_name == "slurp"
