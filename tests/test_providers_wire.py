"""Wire-level pieces: SigV4 signatures equal botocore's, event-stream framing round-trips
through botocore's parser, SSE parsing survives any chunking, status mapping."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quality_gates.errors import (
    AuthError,
    BadRequest,
    Overloaded,
    ProviderTimeout,
    RateLimited,
    ServerError,
)
from quality_gates.providers._eventstream import (
    EventStreamDecoder,
    EventStreamError,
    encode_event,
    encode_exception,
)
from quality_gates.providers._http import retry_after_seconds
from quality_gates.providers._openai import ChunkReader
from quality_gates.providers._sigv4 import AwsCredentials, SigV4Signer
from quality_gates.providers._sse import ServerSentEvent, SseDecoder, encode_sse
from quality_gates.providers._status import class_for_status

URL = "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH"])
def test_sigv4_signature_equals_botocores(token: str | None) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    headers = {"content-type": "application/json"}
    reference = AWSRequest(method="POST", url=URL, data=body, headers=dict(headers))
    SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "bedrock", "eu-west-1"
    ).add_auth(reference)
    moment = datetime.datetime.strptime(reference.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    ours = SigV4Signer("bedrock", "eu-west-1").sign(
        "POST",
        URL,
        headers,
        body,
        AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token),
        now=moment,
    )
    assert ours["authorization"] == reference.headers["Authorization"]
    if token:
        assert ours["x-amz-security-token"] == token


def test_event_stream_frames_parse_with_botocore() -> None:
    from botocore.eventstream import EventStreamBuffer

    frames = encode_event("contentBlockDelta", b'{"delta":{"text":"Hi"}}') + encode_exception(
        "throttlingException", b'{"message":"slow down"}'
    )
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    messages = list(buffer)
    assert messages[0].headers[":event-type"] == "contentBlockDelta"
    assert messages[0].payload == b'{"delta":{"text":"Hi"}}'
    assert messages[1].headers[":exception-type"] == "throttlingException"


def test_event_stream_decoder_reassembles_frames_split_anywhere() -> None:
    data = b"".join(encode_event("e", f'{{"n":{i}}}'.encode()) for i in range(20))
    decoder = EventStreamDecoder()
    stream = io.BytesIO(data)
    seen = []
    while chunk := stream.read(7):
        seen.extend(decoder.feed(chunk))
    assert [m.payload for m in seen] == [f'{{"n":{i}}}'.encode() for i in range(20)]
    assert decoder.pending == 0


def test_event_stream_decoder_rejects_a_corrupt_prelude() -> None:
    frame = bytearray(encode_event("e", b"{}"))
    frame[2] ^= 0x01
    with pytest.raises(EventStreamError, match="prelude"):
        list(EventStreamDecoder().feed(bytes(frame)))


def test_sse_decoder_handles_any_chunking_and_line_ending() -> None:
    raw = (
        encode_sse('{"a":1}', "message_start")
        + b": a comment\r\n"
        + b"event: delta\r\ndata: line one\r\ndata: line two\r\n\r\n"
        + encode_sse("[DONE]")
    )
    for size in (1, 2, 3, 5, 64):
        decoder = SseDecoder()
        events = []
        for start in range(0, len(raw), size):
            events.extend(decoder.feed(raw[start : start + size]))
        events.extend(decoder.flush())
        assert [(e.event, e.data) for e in events] == [
            ("message_start", '{"a":1}'),
            ("delta", "line one\nline two"),
            ("", "[DONE]"),
        ]


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\r\n")), max_size=4))
def test_whole_data_events_read_the_same_on_the_fast_path_and_byte_by_byte(
    datas: list[str],
) -> None:
    raw = [b"data: " + data.encode("utf-8", "surrogatepass") + b"\n\n" for data in datas]
    whole = [e for chunk in raw for e in SseDecoder().feed(chunk)]
    slow = SseDecoder()
    byte_by_byte = [
        e for chunk in raw for i in range(len(chunk)) for e in slow.feed(chunk[i : i + 1])
    ]
    assert whole == byte_by_byte


def _chunk(choice: object = None, **more: object) -> bytes:
    body: dict[str, object] = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    if choice is not None:
        body["choices"] = [choice]
    return json.dumps({**body, **more}).encode()


PLAIN = {"index": 0, "delta": {"content": "tok "}, "finish_reason": None}
# Chunk data a stream may carry: plain text deltas, which the relay's fast lane reads, and
# every near miss, which it must leave to `read`.
CHUNK_DATAS = [
    _chunk(PLAIN),
    _chunk(PLAIN, usage=None, system_fingerprint="fp", service_tier="default"),
    _chunk({"delta": {"content": "no index"}}),
    _chunk({**PLAIN, "logprobs": None, "delta": {"role": "assistant", "content": "hi"}}),
    _chunk({"index": 0, "delta": {"content": '\u00e9\u2713\n"q"'}}),
    _chunk({**PLAIN, "finish_reason": "stop"}),
    _chunk(PLAIN, usage={"prompt_tokens": 3, "completion_tokens": 2}),
    _chunk({"index": 1, "delta": {"content": "second choice"}}),
    _chunk({"index": 0, "delta": {"content": ""}}),
    _chunk({"index": 0, "delta": {"content": None}}),
    _chunk({"index": 0, "delta": {"content": "x", "tool_calls": [{"index": 0, "id": "a"}]}}),
    _chunk({"index": 0, "delta": {}}),
    _chunk({"index": 0}),
    _chunk(PLAIN, error={"message": "overloaded", "type": "server_error"}),
    json.dumps({"choices": [PLAIN, {**PLAIN, "index": 1}]}).encode(),
    json.dumps({"choices": []}).encode(),
    b"[DONE]",
    b"",
    b'{"choices": [{"index": 0, "delta": {"content": "\xff"}}]}',
    b"{not json",
    b'{"choices": [{"index": 0, "delta": {"content": "a"}}]} trailing',
]


@pytest.mark.parametrize("data", CHUNK_DATAS)
def test_the_relays_fast_lane_reads_a_chunk_as_read_does_or_leaves_it_to_read(
    data: bytes,
) -> None:
    fast, full = ChunkReader("p"), ChunkReader("p")
    text = fast.plain_text(data)
    event = ServerSentEvent("", data.decode("utf-8", "replace"))
    try:
        items: list[object] = list(full.read(event))
    except Exception:
        assert text is None, "a chunk read raises on must be left to read"
        return
    if text is not None:
        assert items == [text]
        # Nothing else read: the stream's state is what it was.
        assert (full.done, full.finish, full.usage) == (False, None, None)
    assert (fast.done, fast.finish, fast.usage) == (False, None, None)


def _read_items(data: bytes) -> list[object] | None:
    try:
        return list(ChunkReader("p").read(ServerSentEvent("", data.decode("utf-8", "replace"))))
    except Exception:
        return None


@given(
    st.lists(st.text(), min_size=1, max_size=6),
    st.booleans(),
    st.sampled_from(["", " "]),
)
def test_after_a_plain_chunk_the_fast_lane_reads_the_next_ones_as_read_does(
    texts: list[str], ascii_only: bool, space: str
) -> None:
    """Once a plain chunk taught the reader the bytes around its text, chunks with the same
    bytes around another string read as `read` reads them, whatever the string holds."""

    def chunk(text: object, finish: object = None) -> bytes:
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        }
        separators = ("," + space, ":" + space)
        return json.dumps(body, ensure_ascii=ascii_only, separators=separators).encode()

    reader = ChunkReader("p")
    assert reader.plain_text(chunk("first")) == "first"
    assert reader.shape is not None
    head, tail = reader.shape
    for text in texts:
        data = chunk(text)
        assert _read_items(data) == ([text] if text else [])
        assert reader.plain_text(data) == (text or None)
        # The relay's lane: the same bytes around the string are the chunk with that text.
        assert data.startswith(head)
        assert data.endswith(tail)
        assert json.loads(data[len(head) : len(data) - len(tail)]) == text
    # "ab" is as long as null: the bytes after the text differ, not their length.
    near_misses = (chunk("x", "stop"), chunk("x", "ab"), chunk(None), chunk(7), chunk(["a"]))
    for near_miss in near_misses:
        assert reader.plain_text(near_miss) is None
    assert (reader.done, reader.finish, reader.usage) == (False, None, None)


def test_the_fast_lane_learns_no_shape_it_cannot_prove() -> None:
    """A key that merely ends in `content` before the delta's own, written with a space,
    does not become the text's place."""
    data = (
        b'{"x\\"content":"tok","choices":[{"index":0,"delta":{"content" :"tok"},'
        b'"finish_reason":null}]}'
    )
    reader = ChunkReader("p")
    assert reader.plain_text(data) == "tok"
    assert reader.shape is None
    swapped = data.replace(b'"content":"tok"', b'"content":"bad"')
    assert _read_items(swapped) == ["tok"]
    assert reader.plain_text(swapped) == "tok"


def test_the_relays_fast_lane_takes_the_plain_text_delta() -> None:
    assert ChunkReader("p").plain_text(_chunk(PLAIN)) == "tok "
    assert SseDecoder().whole_data(b"data: " + _chunk(PLAIN) + b"\n\n") == _chunk(PLAIN)
    decoder = SseDecoder()
    list(decoder.feed(b"data: {"))  # half an event pending: not one whole event
    assert decoder.whole_data(b"data: " + _chunk(PLAIN) + b"\n\n") is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequest),
        (401, AuthError),
        (403, AuthError),
        (404, BadRequest),
        (408, ProviderTimeout),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, Overloaded),
        (504, ProviderTimeout),
        (529, Overloaded),
    ],
)
def test_status_codes_map_to_the_taxonomy(status: int, expected: type) -> None:
    assert class_for_status(status) is expected


def test_retry_after_reads_milliseconds_seconds_and_dates() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert (
        retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, now=1445412500.0)
        == 10.0
    )
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
