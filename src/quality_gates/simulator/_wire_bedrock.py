"""Bedrock Runtime Converse / ConverseStream as the simulator speaks it (what boto3's
`bedrock-runtime` client expects: rest-json errors, AWS event-stream framing)."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote

from quality_gates.providers._eventstream import encode_event, encode_exception
from quality_gates.simulator._behaviour import Plan, Prompt
from quality_gates.simulator._server import Request
from quality_gates.simulator._structured import argument_pieces
from quality_gates.simulator._wire import (
    ErrorKind,
    Reply,
    Route,
    WireProtocol,
    bearer,
    dumps,
    object_arguments,
    positive_int,
    stop_list,
)

_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke)$")
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/")
_ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "ValidationException"),
    "not_found": (404, "UnknownOperationException"),
    "method_not_allowed": (405, "UnknownOperationException"),
    "auth_missing": (403, "MissingAuthenticationTokenException"),
    "auth_invalid": (403, "UnrecognizedClientException"),
    "server_error": (500, "InternalServerException"),
    "overloaded": (503, "ServiceUnavailableException"),
    "rate_limited": (429, "ThrottlingException"),
    "unavailable": (503, "ServiceUnavailableException"),
}
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class BedrockWire(WireProtocol):
    """`POST /model/{modelId}/converse` and `/converse-stream`."""

    name = "bedrock"
    stream_content_type = "application/vnd.amazon.eventstream"

    def route(self, method: str, path: str) -> Route | ErrorKind:
        """Converse and ConverseStream; the model id is percent-encoded in the path."""
        match = _PATH.match(path)
        if match is None:
            return "not_found"
        if method != "POST":
            return "method_not_allowed"
        if match["op"] == "invoke":
            return Route("embed", model=unquote(match["model"]))
        return Route("chat", model=unquote(match["model"]), stream=match["op"] == "converse-stream")

    def credentials_error(self, request: Request, api_key: str | None) -> ErrorKind | None:
        """A SigV4 `Authorization` (or a Bedrock API key as bearer); with `api_key` set, the
        access key id (or the bearer token) must equal it. Signatures are not recomputed."""
        header = request.headers.get("authorization", "")
        token = bearer(request)
        if token:
            return "auth_invalid" if api_key and token != api_key else None
        match = _CREDENTIAL.search(header) if header.startswith("AWS4-HMAC-SHA256") else None
        if match is None:
            return "auth_missing"
        return "auth_invalid" if api_key and match["key"] != api_key else None

    def parse(self, request: Request, route: Route) -> Prompt:
        """messages (required), system, inferenceConfig."""
        data = self.json_body(request)
        raw = data.get("messages")
        if not isinstance(raw, list):
            raise self.bad_request("1 validation error detected: messages must not be null")
        messages: list[tuple[str, str]] = []
        system = data.get("system") or []
        if not isinstance(system, list):
            raise self.bad_request("system: must be a list of content blocks")
        if system:
            messages.append(("system", self._text(system, "system")))
        images = 0
        for i, message in enumerate(raw):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                raise self.bad_request(f"messages.{i}.role: must be 'user' or 'assistant'")
            blocks = message.get("content")
            text = self._text(blocks, f"messages.{i}.content")
            results = [b["toolResult"] for b in blocks if isinstance(b, dict) and "toolResult" in b]
            images += sum(1 for b in blocks if isinstance(b, dict) and "image" in b)
            if results:
                role = "tool"
                text = " ".join(self._text(r.get("content") or [], "toolResult") for r in results)
            messages.append((role, text))
        if not any(role == "user" for role, _ in messages):
            raise self.bad_request("A conversation must start with a user message.")
        config = data.get("inferenceConfig") or {}
        if not isinstance(config, dict):
            raise self.bad_request("inferenceConfig: must be an object")
        tool_config = data.get("toolConfig") or {}
        choice = tool_config.get("toolChoice") or {}
        named = (choice.get("tool") or {}).get("name") if isinstance(choice, dict) else None
        return Prompt(
            model=route.model,
            messages=messages,
            max_tokens=positive_int(config.get("maxTokens"), "inferenceConfig.maxTokens", self),
            stop=stop_list(config.get("stopSequences"), "inferenceConfig.stopSequences", self),
            stream=route.stream,
            tools=[
                (str(spec.get("name")), (spec.get("inputSchema") or {}).get("json") or {})
                for spec in (t.get("toolSpec") or {} for t in tool_config.get("tools") or ())
            ],
            tool_choice=named or ("required" if "any" in choice else None),
            images=images,
        )

    def parse_embed(self, request: Request, route: Route) -> tuple[str, list[str], int | None]:
        """InvokeModel for Titan (`inputText`, `dimensions`) or Cohere (`texts`) embeddings."""
        data = self.json_body(request)
        if "cohere.embed" in route.model:
            texts = data.get("texts")
            if not isinstance(texts, list) or not texts or not data.get("input_type"):
                raise self.bad_request("texts and input_type are required")
            return route.model, [str(t) for t in texts], None
        if "titan-embed" not in route.model:
            raise self.bad_request(f"InvokeModel here serves embedding models, not {route.model}")
        text = data.get("inputText")
        if not isinstance(text, str) or not text:
            raise self.bad_request("inputText: required")
        return route.model, [text], positive_int(data.get("dimensions"), "dimensions", self)

    def embed_answer(self, model: str, vectors: list[list[float]], tokens: int) -> bytes:
        """Titan's `{embedding, inputTextTokenCount}` or Cohere's `{embeddings, texts}`."""
        if "cohere.embed" in model:
            return dumps({"embeddings": vectors, "id": "sim", "response_type": "embeddings_floats"})
        return dumps({"embedding": vectors[0], "inputTextTokenCount": tokens})

    def _text(self, blocks: Any, where: str) -> str:
        if not isinstance(blocks, list):
            raise self.bad_request(f"{where}: must be a list of content blocks")
        return "".join(b["text"] for b in blocks if isinstance(b, dict) and "text" in b)

    def error(self, kind: ErrorKind, message: str, retry_after: float = 0.0) -> Reply:
        """`{"message": ...}` with `x-amzn-ErrorType: TypeName:namespace`."""
        status, name = _ERRORS[kind]
        headers = [
            ("x-amzn-errortype", f"{name}:{ERROR_NAMESPACE}"),
            ("x-amzn-requestid", str(uuid.uuid4())),
        ]
        if retry_after:
            headers.append(("retry-after", f"{max(1, round(retry_after))}"))
        return Reply(status, dumps({"message": message}), headers)

    def _usage(self, plan: Plan) -> dict[str, int]:
        return {
            "inputTokens": plan.input_tokens,
            "outputTokens": plan.output_tokens,
            "totalTokens": plan.input_tokens + plan.output_tokens,
        }

    def _stop_reason(self, plan: Plan, filtered: bool) -> str:
        if filtered:
            return "content_filtered"
        return "stop_sequence" if plan.stop_sequence else STOP_REASONS[plan.finish]

    def answer(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """A ConverseResponse."""
        content: list[Any] = [] if filtered else [{"text": plan.text}]
        if plan.tool_calls and not filtered:
            content = [
                {"toolUse": {"toolUseId": i, "name": n, "input": object_arguments(a)}}
                for i, n, a in plan.tool_calls
            ]
        return dumps(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": self._stop_reason(plan, filtered),
                "usage": self._usage(plan),
                "metrics": {"latencyMs": round(plan.delay * 1000)},
            }
        )

    def stream_open(self, prompt: Prompt, plan: Plan) -> bytes:
        """messageStart."""
        return encode_event("messageStart", b'{"role":"assistant"}')

    def stream_piece(self, prompt: Prompt, plan: Plan, index: int) -> bytes:
        """One contentBlockDelta."""
        payload = {"contentBlockIndex": 0, "delta": {"text": plan.pieces[index]}}
        return encode_event("contentBlockDelta", dumps(payload))

    def stream_close(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """contentBlockStop, messageStop, metadata (usage and latency)."""
        stop = {"stopReason": self._stop_reason(plan, filtered)}
        metadata = {
            "usage": self._usage(plan),
            "metrics": {"latencyMs": round(plan.delay * 1000)},
        }
        out = encode_event("contentBlockStop", b'{"contentBlockIndex":0}')
        for index, (call_id, name, arguments) in enumerate(plan.tool_calls, 1):
            start = {"toolUse": {"toolUseId": call_id, "name": name}}
            out += encode_event(
                "contentBlockStart", dumps({"contentBlockIndex": index, "start": start})
            )
            for piece in argument_pieces(arguments):
                delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
                out += encode_event("contentBlockDelta", dumps(delta))
            out += encode_event("contentBlockStop", dumps({"contentBlockIndex": index}))
        return (
            out
            + encode_event("messageStop", dumps(stop))
            + encode_event("metadata", dumps(metadata))
        )

    def stream_error(self, message: str) -> bytes:
        """A modelStreamErrorException message, as ConverseStream sends one."""
        return encode_exception("modelStreamErrorException", dumps({"message": message}))

    def models(self, names: list[str]) -> bytes:
        """Bedrock Runtime has no model listing."""
        return dumps({"message": "not supported"})
