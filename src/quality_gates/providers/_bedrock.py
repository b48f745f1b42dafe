"""AWS Bedrock Runtime Converse (`POST /model/{id}/converse`) and ConverseStream
(`/converse-stream`, AWS event-stream framing), SigV4-signed or with a Bedrock API key.

Errors name their type in the `x-amzn-ErrorType` header (or `__type` in the body) with a
`message`; inside a stream they arrive as `exception` messages.

Tools are `toolConfig.tools[].toolSpec` (`inputSchema.json`) with `toolChoice` auto, any or
tool; calls come back as `toolUse` blocks (streamed as `contentBlockStart` with the id and
name, then `contentBlockDelta` pieces of the input's JSON text) and results go in
`toolResult` blocks of a user turn. Images travel as bytes (`image.source.bytes`, base64 in
JSON). Converse has no JSON mode: a JSON response format is asked for as a forced call of
one tool (`json_response`) with the requested schema, and its input is the answer's text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from quality_gates.errors import AuthError, ContentFiltered, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._embeddings import (
    EmbedRequest,
    bedrock_bodies,
    bedrock_path,
    bedrock_vectors,
)
from quality_gates.providers._eventstream import EventStreamDecoder
from quality_gates.providers._features import (
    JSON_TOOL,
    ToolIndex,
    arguments_object,
    image_format,
    json_text,
    json_tool_schema,
    merged,
    refusal,
    unsupported,
)
from quality_gates.providers._http import loads_or_none, retry_after_seconds
from quality_gates.providers._sigv4 import CredentialSource, SigV4Signer, standard_chain
from quality_gates.providers._status import ERROR_CLASSES, class_for_status, make_error
from quality_gates.providers._types import (
    ChatRequest,
    FinishReason,
    Message,
    RequestExtras,
    ToolCall,
    ToolCallDelta,
    Usage,
)

LACKS = {
    "n": "Converse returns one answer per request",
    "seed": "Converse has no seed",
    "presence_penalty": "Converse has no presence penalty",
    "frequency_penalty": "Converse has no frequency penalty",
    "logprobs": "Converse returns no log probabilities",
    "image_url": "Converse takes image bytes or S3 locations, not http(s) URLs",
}

SIGNING_SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "tool_use": "tool_calls",
}
ERROR_TYPES = {
    "ThrottlingException": "rate_limited",
    "ServiceUnavailableException": "overloaded",
    "ModelNotReadyException": "overloaded",
    "InternalServerException": "server_error",
    "InternalFailure": "server_error",
    "ModelErrorException": "server_error",
    "ModelStreamErrorException": "server_error",
    "ModelTimeoutException": "timeout",
    "AccessDeniedException": "auth",
    "UnrecognizedClientException": "auth",
    "InvalidSignatureException": "auth",
    "IncompleteSignatureException": "auth",
    "MissingAuthenticationTokenException": "auth",
    "ExpiredTokenException": "auth",
    "ValidationException": "bad_request",
    "ResourceNotFoundException": "bad_request",
    "SerializationException": "bad_request",
}


def error_type(headers: Mapping[str, str], body: Any) -> str:
    """`ThrottlingException` from `x-amzn-ErrorType: ThrottlingException:http://...` or the
    body's `__type` / `code`."""
    raw = headers.get("x-amzn-errortype") or ""
    if not raw and isinstance(body, dict):
        raw = str(body.get("__type") or body.get("code") or "")
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("Message") or "")
    return ""


def _usage(data: Any) -> Usage | None:
    """Converse counts cache reads and writes apart from `inputTokens`."""
    if not isinstance(data, dict):
        return None
    cached = int(data.get("cacheReadInputTokens") or 0)
    written = int(data.get("cacheWriteInputTokens") or 0)
    return Usage(
        int(data.get("inputTokens") or 0) + cached + written,
        int(data.get("outputTokens") or 0),
        cached_tokens=cached,
    )


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        result = {"toolUseId": m.tool_call_id, "content": [{"text": m.content}]}
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = [{"text": m.content}] if m.content else []
    blocks += [
        {"image": {"format": image_format(i), "source": {"bytes": i.data}}} for i in m.images
    ]
    blocks += [
        {"toolUse": {"toolUseId": c.id, "name": c.name, "input": arguments_object(c)}}
        for c in m.tool_calls
    ]
    return blocks


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Turns in Converse form: tool results in user turns, consecutive roles merged."""
    if all(m.parts is None for m in messages):
        return [
            {"role": m.role, "content": [{"text": m.content}]}
            for m in messages
            if m.role != "system"
        ]
    turns: list[tuple[str, list[Any]]] = [
        ("user" if m.role == "tool" else m.role, _blocks(m)) for m in messages if m.role != "system"
    ]
    return [{"role": role, "content": blocks} for role, blocks in merged(turns)]


def _tool_config(extras: RequestExtras, name: str) -> dict[str, Any] | None:
    schema = json_tool_schema(extras)
    if schema is not None:
        if extras.tools:
            raise refusal(name, "response_format", "not together with tools on Converse")
        spec = {"name": JSON_TOOL, "description": "Reply with the answer"}
        spec["inputSchema"] = {"json": schema}  # type: ignore[assignment]
        return {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": JSON_TOOL}}}
    if not extras.tools:
        return None
    if extras.tool_choice == "none":
        raise refusal(name, "tool_choice", "Converse has no tool choice none")
    config: dict[str, Any] = {
        "tools": [
            {
                "toolSpec": {
                    "name": t.name,
                    "description": t.description or t.name,
                    "inputSchema": {"json": t.parameters or {"type": "object", "properties": {}}},
                }
            }
            for t in extras.tools
        ]
    }
    choice = extras.tool_choice
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice not in (None, "auto"):
        config["toolChoice"] = {"tool": {"name": choice}}
    return config


def _json_mode(request: ChatRequest) -> bool:
    return request.extras is not None and request.extras.response_format is not None


class BedrockProvider(HttpChatProvider):
    """Bedrock Runtime in one region; `endpoint` overrides the URL (tests, VPC endpoints)."""

    protocol = "bedrock"
    stream_content_type = EVENT_STREAM

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        region: str,
        credentials: CredentialSource | None = None,
        bearer_token: str | None = None,
        profile: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, base_url, **kw)
        self.region = region
        self._credentials = credentials
        self._bearer = bearer_token
        self._profile = profile
        self._signer = SigV4Signer(SIGNING_SERVICE, region)

    async def prepare(self) -> None:
        """Resolve credentials once: a bearer token, the given keys, or the standard chain."""
        if self._bearer or self._credentials is not None:
            return
        self._credentials = await standard_chain(self._profile)
        if self._credentials is None:
            raise AuthError(
                f"{self.name}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or AWS_BEARER_TOKEN_BEDROCK)",
                provider=self.name,
            )

    def _wire(self, url: str, body: bytes, accept: str) -> Wire:
        headers = {"content-type": "application/json", "accept": accept}
        if self._bearer:
            headers["authorization"] = f"Bearer {self._bearer}"
            return Wire(url, headers, body)
        if self._credentials is None:
            raise AuthError(f"{self.name}: credentials not resolved yet", provider=self.name)
        signed = self._signer.sign("POST", url, headers, body, self._credentials.current())
        return Wire(url, signed, body)

    def build(self, request: ChatRequest, *, stream: bool) -> Wire:
        """Converse's messages/system/inferenceConfig, signed."""
        payload: dict[str, Any] = {"messages": _messages(request.messages)}
        system = [{"text": m.content} for m in request.messages if m.role == "system"]
        if system:
            payload["system"] = system
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.stop:
            config["stopSequences"] = list(request.stop)
        extras = request.extras
        if extras is not None:
            unsupported(request, self.name, LACKS, stream=stream)
            if extras.top_p is not None:
                config["topP"] = extras.top_p
            tool_config = _tool_config(extras, self.name)
            if tool_config is not None:
                payload["toolConfig"] = tool_config
        if config:
            payload["inferenceConfig"] = config
        operation = "converse-stream" if stream else "converse"
        url = f"{self.base_url}/model/{quote(request.model, safe='')}/{operation}"
        return self._wire(url, dumps(payload), EVENT_STREAM if stream else "application/json")

    def embed_wires(self, request: EmbedRequest) -> list[Wire]:
        """InvokeModel calls, signed: one per text for Titan, one for all for Cohere."""
        url = f"{self.base_url}{bedrock_path(request.model)}"
        return [
            self._wire(url, dumps(body), "application/json") for body in bedrock_bodies(request)
        ]

    def read_embeddings(self, data: Any, request: EmbedRequest) -> tuple[list[list[float]], int]:
        """Titan's `embedding` or Cohere's `embeddings`."""
        return bedrock_vectors(data)

    def read_answer(self, data: Any, request: ChatRequest) -> Answer:
        """`output.message.content[].text` and `toolUse` blocks, `stopReason`, `usage`."""
        blocks = data["output"]["message"]["content"]
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict))
        calls = tuple(
            ToolCall(str(u["toolUseId"]), str(u["name"]), json_text(u.get("input") or {}))
            for u in (b.get("toolUse") for b in blocks if isinstance(b, dict))
            if isinstance(u, dict)
        )
        finish = FINISH.get(str(data.get("stopReason")), "other")
        if calls and calls[0].name == JSON_TOOL and _json_mode(request):
            text, calls, finish = calls[0].arguments, (), "stop"
        if finish == "content_filter" and not text:
            raise ContentFiltered(
                f"{self.name}: blocked ({data.get('stopReason')})", provider=self.name
            )
        return Answer(text, finish, _usage(data.get("usage")), None, calls)

    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The error type names the class; the status decides when it is unknown."""
        data = loads_or_none(body)
        named = ERROR_TYPES.get(error_type(headers, data))
        cls = ERROR_CLASSES[named] if named else class_for_status(status)
        text = _message(data) or body[:200].decode("utf-8", "replace")
        return make_error(cls, self.name, status, text, retry_after_seconds(headers))

    def read_stream_of(
        self, body: AsyncIterator[bytes], request: ChatRequest
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """The JSON tool's input streams as the answer's text."""
        return self.read_stream(body, json_mode=_json_mode(request))

    async def read_stream(
        self, body: AsyncIterator[bytes], json_mode: bool = False
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """Event-stream messages: text and tool-use deltas, messageStop, metadata;
        exceptions raise."""
        decoder = EventStreamDecoder()
        tools = ToolIndex()
        finish: FinishReason | None = None
        usage: Usage | None = None
        async for chunk in body:
            for message in decoder.feed(chunk):
                if message.message_type != "event":
                    data = loads_or_none(message.payload)
                    kind = message.event_type
                    named = ERROR_TYPES.get(kind[:1].upper() + kind[1:], "server_error")
                    text = _message(data) or message.headers.get(":error-message", kind)
                    raise make_error(ERROR_CLASSES[named], self.name, 200, text)
                event = message.event_type
                if event == "contentBlockDelta":
                    data = orjson.loads(message.payload)
                    delta = data["delta"]
                    text = delta.get("text")
                    if text:
                        yield text
                    piece = (delta.get("toolUse") or {}).get("input")
                    if piece and json_mode:
                        yield piece
                    elif piece:
                        index = tools.get(int(data.get("contentBlockIndex") or 0))
                        if index is not None:
                            yield ToolCallDelta(index, arguments=piece)
                elif event == "contentBlockStart":
                    data = orjson.loads(message.payload)
                    use = (data.get("start") or {}).get("toolUse")
                    if isinstance(use, dict) and not json_mode:
                        index = tools.open(int(data.get("contentBlockIndex") or 0))
                        yield ToolCallDelta(index, str(use["toolUseId"]), str(use["name"]))
                elif event == "messageStop":
                    stop = orjson.loads(message.payload).get("stopReason")
                    finish = FINISH.get(str(stop), "other")
                    if json_mode and finish == "tool_calls":
                        finish = "stop"
                elif event == "metadata":
                    usage = _usage(orjson.loads(message.payload).get("usage"))
        if decoder.pending:
            raise ValueError(f"event stream ended inside a message ({decoder.pending} bytes)")
        if finish is not None:
            yield StreamEnd(finish, usage)
