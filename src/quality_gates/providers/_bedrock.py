"""AWS Bedrock Runtime Converse (`POST /model/{id}/converse`) and ConverseStream
(`/converse-stream`, AWS event-stream framing), SigV4-signed or with a Bedrock API key.

Errors name their type in the `x-amzn-ErrorType` header (or `__type` in the body) with a
`message`; inside a stream they arrive as `exception` messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from quality_gates.errors import AuthError, ContentFiltered, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._eventstream import EventStreamDecoder
from quality_gates.providers._http import loads_or_none, retry_after_seconds
from quality_gates.providers._sigv4 import CredentialSource, SigV4Signer, standard_chain
from quality_gates.providers._status import ERROR_CLASSES, class_for_status, make_error
from quality_gates.providers._types import ChatRequest, FinishReason, Usage

SIGNING_SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
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
    if not isinstance(data, dict):
        return None
    return Usage(int(data.get("inputTokens") or 0), int(data.get("outputTokens") or 0))


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
        payload: dict[str, Any] = {
            "messages": [
                {"role": m.role, "content": [{"text": m.content}]}
                for m in request.messages
                if m.role != "system"
            ]
        }
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
        if config:
            payload["inferenceConfig"] = config
        operation = "converse-stream" if stream else "converse"
        url = f"{self.base_url}/model/{quote(request.model, safe='')}/{operation}"
        return self._wire(url, dumps(payload), EVENT_STREAM if stream else "application/json")

    def read_answer(self, data: Any, request: ChatRequest) -> Answer:
        """`output.message.content[].text`, `stopReason`, `usage`."""
        blocks = data["output"]["message"]["content"]
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict))
        finish = FINISH.get(str(data.get("stopReason")), "other")
        if finish == "content_filter" and not text:
            raise ContentFiltered(
                f"{self.name}: blocked ({data.get('stopReason')})", provider=self.name
            )
        return Answer(text, finish, _usage(data.get("usage")), None)

    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The error type names the class; the status decides when it is unknown."""
        data = loads_or_none(body)
        named = ERROR_TYPES.get(error_type(headers, data))
        cls = ERROR_CLASSES[named] if named else class_for_status(status)
        text = _message(data) or body[:200].decode("utf-8", "replace")
        return make_error(cls, self.name, status, text, retry_after_seconds(headers))

    async def read_stream(self, response: aiohttp.ClientResponse) -> AsyncIterator[str | StreamEnd]:
        """Event-stream messages: deltas, messageStop, metadata; exceptions raise."""
        decoder = EventStreamDecoder()
        finish: FinishReason | None = None
        usage: Usage | None = None
        async for chunk in response.content.iter_any():
            for message in decoder.feed(chunk):
                if message.message_type != "event":
                    data = loads_or_none(message.payload)
                    kind = message.event_type
                    named = ERROR_TYPES.get(kind[:1].upper() + kind[1:], "server_error")
                    text = _message(data) or message.headers.get(":error-message", kind)
                    raise make_error(ERROR_CLASSES[named], self.name, 200, text)
                event = message.event_type
                if event == "contentBlockDelta":
                    text = json.loads(message.payload)["delta"].get("text")
                    if text:
                        yield text
                elif event == "messageStop":
                    stop = json.loads(message.payload).get("stopReason")
                    finish = FINISH.get(str(stop), "other")
                elif event == "metadata":
                    usage = _usage(json.loads(message.payload).get("usage"))
        if decoder.pending:
            raise ValueError(f"event stream ended inside a message ({decoder.pending} bytes)")
        if finish is not None:
            yield StreamEnd(finish, usage)
