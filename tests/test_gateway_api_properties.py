"""Property-based tests of the HTTP API: whatever a client sends, a bad request gets a 4xx
with a clear message in the OpenAI error shape, never a 5xx."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.gateway_support import fakes, gateway_workspace, running_gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A gateway with in-test providers, served from a thread for the whole module."""
    ws = gateway_workspace(Path(tmp_path_factory.mktemp("api")) / "ws")
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with running_gateway(ws, fakes()) as (url, _):
            box["port"] = int(url.rsplit(":", 1)[1])
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "the gateway did not start"
    yield box["port"]
    stop.set()
    thread.join(30)
    ws.database.close_shared()


def post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", "/v1/chat/completions", body=body, headers={"content-type": content_type}
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def assert_clear_4xx_or_ok(status: int, raw: bytes) -> None:
    assert status < 500, raw[:300]
    if status >= 400:
        error = json.loads(raw)["error"]
        assert isinstance(error["message"], str)
        assert len(error["message"]) > 10
        assert error["type"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
roles = st.sampled_from(["system", "user", "assistant", "developer", "tool", "robot", "", 7])
contents = st.one_of(
    st.text(max_size=40),
    st.none(),
    st.integers(),
    st.lists(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["text", "image_url"]),
                "text": st.one_of(st.text(max_size=10), st.integers()),
            }
        ),
        max_size=3,
    ),
)
messages = st.lists(
    st.one_of(st.fixed_dictionaries({"role": roles, "content": contents}), json_values),
    max_size=4,
)
near_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["current", "backup", "llama-3-1-70b", "gpt-9", "", "  "])},
    optional={
        "messages": messages,
        "stream": st.one_of(st.booleans(), st.none(), st.integers(), st.text(max_size=5)),
        "temperature": st.one_of(st.floats(), st.integers(-5, 5), st.text(max_size=3), st.none()),
        "max_tokens": st.one_of(st.integers(-10, 10**9), st.floats(), st.booleans()),
        "stop": st.one_of(
            st.text(max_size=3), st.lists(st.text(max_size=3), max_size=6), st.integers()
        ),
        "n": st.integers(-1, 3),
        "tools": st.lists(json_values, max_size=2),
        "stream_options": st.one_of(
            json_values, st.fixed_dictionaries({"include_usage": st.booleans()})
        ),
        "user": st.text(max_size=10),
    },
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(body=near_valid)
def test_near_valid_requests_never_get_a_5xx(gateway_port: int, body: dict[str, Any]) -> None:
    status, raw = post(gateway_port, json.dumps(body).encode())
    assert_clear_4xx_or_ok(status, raw)


@SETTINGS
@given(body=json_values)
def test_any_json_value_never_gets_a_5xx(gateway_port: int, body: Any) -> None:
    status, raw = post(gateway_port, json.dumps(body).encode())
    assert status in (400, 404)
    assert_clear_4xx_or_ok(status, raw)


@SETTINGS
@given(
    raw_body=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
    ),
)
def test_arbitrary_bytes_get_a_400(gateway_port: int, raw_body: bytes, content_type: str) -> None:
    status, raw = post(gateway_port, raw_body, content_type)
    assert_clear_4xx_or_ok(status, raw)


def test_the_named_field_is_reported(gateway_port: int) -> None:
    status, raw = post(
        gateway_port,
        json.dumps(
            {"model": "current", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}
        ).encode(),
    )
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["param"] == "temperature"
    assert "0 to 2" in error["message"]


@given(
    request_id=st.text(max_size=40),
    created=st.integers(min_value=0, max_value=2**40),
    model=st.text(max_size=40),
    text=st.text(max_size=200),
)
def test_a_streamed_text_chunk_framed_once_per_stream_is_the_full_event(
    request_id: str, created: int, model: str, text: str
) -> None:
    import orjson

    from quality_gates.gateway._wire import chunk_event, content_event_frame

    head, tail = content_event_frame(request_id, created, model)
    assert head + orjson.dumps(text) + tail == chunk_event(request_id, created, model, content=text)
