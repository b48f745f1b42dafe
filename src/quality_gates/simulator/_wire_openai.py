"""OpenAI Chat Completions as the simulator speaks it (what the `openai` SDK expects)."""

from __future__ import annotations

import time
from typing import Any

from quality_gates.providers._sse import encode_sse
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
    json_schema_of,
    positive_int,
    stop_list,
    text_of,
)

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL_PATHS = ("/v1/models", "/models")
EMBEDDING_PATHS = ("/v1/embeddings", "/embeddings")
ROLES = ("system", "developer", "user", "assistant", "tool")
FINGERPRINT = "fp_qg_simulator"
_ANSWER = (
    b'{"id":"chatcmpl-%b","object":"chat.completion","created":%d,"model":%b,'
    b'"system_fingerprint":"%b","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":%b,"refusal":null},"logprobs":null,"finish_reason":"%b"}],'
    b'"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}'
)
_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "bad_request": (400, "invalid_request_error", None),
    "not_found": (404, "invalid_request_error", "unknown_url"),
    "method_not_allowed": (405, "invalid_request_error", None),
    "auth_missing": (401, "invalid_request_error", "missing_api_key"),
    "auth_invalid": (401, "invalid_request_error", "invalid_api_key"),
    "server_error": (500, "server_error", None),
    "overloaded": (503, "server_error", "overloaded"),
    "rate_limited": (429, "requests", "rate_limit_exceeded"),
    "unavailable": (503, "server_error", "service_unavailable"),
}


class OpenAIWire(WireProtocol):
    """`POST /v1/chat/completions` (SSE with `stream: true`) and `GET /v1/models`."""

    name = "openai"

    def route(self, method: str, path: str) -> Route | ErrorKind:
        """Chat completions and the model list."""
        if path in CHAT_PATHS:
            return Route("chat") if method == "POST" else "method_not_allowed"
        if path in MODEL_PATHS:
            return Route("models") if method == "GET" else "method_not_allowed"
        if path in EMBEDDING_PATHS:
            return Route("embed") if method == "POST" else "method_not_allowed"
        return "not_found"

    def credentials_error(self, request: Request, api_key: str | None) -> ErrorKind | None:
        """A bearer token must be present (and equal `api_key` when one is set)."""
        token = bearer(request)
        if not token:
            return "auth_missing"
        return "auth_invalid" if api_key and token != api_key else None

    def parse(self, request: Request, route: Route) -> Prompt:
        """model, messages, max_tokens / max_completion_tokens, stop, stream."""
        data = self.json_body(request)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise self.bad_request("you must provide a model parameter")
        raw = data.get("messages")
        if not isinstance(raw, list) or not raw:
            raise self.bad_request("'messages' must be a non-empty array")
        messages = []
        images = 0
        for i, message in enumerate(raw):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                raise self.bad_request(f"messages[{i}].role: must be one of {', '.join(ROLES)}")
            content = text_of(message.get("content"))
            if content is None and not (role == "assistant" and message.get("tool_calls")):
                raise self.bad_request(f"messages[{i}].content: must be a string or parts")
            if role == "tool" and not message.get("tool_call_id"):
                raise self.bad_request(f"messages[{i}].tool_call_id: required for role tool")
            if isinstance(message.get("content"), list):
                images += sum(
                    1
                    for part in message["content"]
                    if isinstance(part, dict) and part.get("type") == "image_url"
                )
            messages.append(("system" if role == "developer" else role, content or ""))
        limit = data.get("max_completion_tokens", data.get("max_tokens"))
        options = data.get("stream_options") or {}
        return Prompt(
            model=model,
            messages=messages,
            max_tokens=positive_int(limit, "max_tokens", self),
            stop=stop_list(data.get("stop"), "stop", self),
            stream=bool(data.get("stream")),
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
            tools=self._tools(data.get("tools")),
            tool_choice=self._choice(data.get("tool_choice")),
            parallel_tool_calls=data.get("parallel_tool_calls") is not False,
            json_schema=json_schema_of(data.get("response_format"), self),
            n=positive_int(data.get("n"), "n", self) or 1,
            images=images,
        )

    def _tools(self, value: Any) -> list[tuple[str, dict[str, Any]]]:
        if value is None:
            return []
        tools = []
        for i, tool in enumerate(value if isinstance(value, list) else [None]):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise self.bad_request(f"tools[{i}]: must be {{type: function, function}}")
            tools.append((function["name"], function.get("parameters") or {}))
        return tools

    def _choice(self, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("function"), dict):
            return str(value["function"].get("name"))
        raise self.bad_request("tool_choice: must be a string or a named function")

    def parse_embed(self, request: Request, route: Route) -> tuple[str, list[str], int | None]:
        """model, input (a string or strings), dimensions; floats only."""
        data = self.json_body(request)
        model, raw = data.get("model"), data.get("input")
        if not isinstance(model, str) or not model:
            raise self.bad_request("you must provide a model parameter")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise self.bad_request("'input' must be a string or a non-empty array of strings")
        if data.get("encoding_format", "float") != "float":
            raise self.bad_request("encoding_format: this server sends float only")
        return model, texts, positive_int(data.get("dimensions"), "dimensions", self)

    def embed_answer(self, model: str, vectors: list[list[float]], tokens: int) -> bytes:
        """`{"object": "list", "data": [{"object": "embedding", "index", "embedding"}]}`."""
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return dumps({"object": "list", "data": data, "model": model, "usage": usage})

    def error(self, kind: ErrorKind, message: str, retry_after: float = 0.0) -> Reply:
        """`{"error": {"message", "type", "param", "code"}}`."""
        status, kind_name, code = _ERRORS[kind]
        body = {"error": {"message": message, "type": kind_name, "param": None, "code": code}}
        headers = []
        if kind == "rate_limited":
            headers = [
                ("retry-after", f"{max(1, round(retry_after))}"),
                ("retry-after-ms", f"{round(retry_after * 1000)}"),
                ("x-ratelimit-remaining-requests", "0"),
            ]
        return Reply(status, dumps(body), headers)

    def _usage(self, prompt: Prompt, plan: Plan) -> dict[str, int]:
        return {
            "prompt_tokens": plan.input_tokens,
            "completion_tokens": plan.output_tokens,
            "total_tokens": plan.input_tokens + plan.output_tokens,
        }

    def answer(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """A `chat.completion` object (the common case from a template: it is the hot path
        of every benchmark that uses the simulator)."""
        if not filtered and (plan.tool_calls or plan.more):
            return self._structured_answer(prompt, plan)
        if not filtered:
            return _ANSWER % (
                plan.response_id.encode(),
                int(time.time()),
                dumps(prompt.model),
                FINGERPRINT.encode(),
                dumps(plan.text),
                plan.finish.encode(),
                plan.input_tokens,
                plan.output_tokens,
                plan.input_tokens + plan.output_tokens,
            )
        return dumps(
            {
                "id": f"chatcmpl-{plan.response_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": prompt.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None if filtered else plan.text,
                            "refusal": None,
                        },
                        "logprobs": None,
                        "finish_reason": "content_filter" if filtered else plan.finish,
                    }
                ],
                "usage": self._usage(prompt, plan),
            }
        )

    def _structured_answer(self, prompt: Prompt, plan: Plan) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None}
        if plan.tool_calls:
            message["content"] = None
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in plan.tool_calls
            ]
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish}]
        for i, pieces in enumerate(plan.more, 1):
            other = {"role": "assistant", "content": "".join(pieces), "refusal": None}
            choices.append(
                {"index": i, "message": other, "logprobs": None, "finish_reason": "stop"}
            )
        return dumps(
            {
                "id": f"chatcmpl-{plan.response_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": prompt.model,
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                "usage": self._usage(prompt, plan),
            }
        )

    def _chunk(self, prompt: Prompt, plan: Plan, choices: list[Any], **extra: Any) -> bytes:
        payload = {
            "id": f"chatcmpl-{plan.response_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": prompt.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            **extra,
        }
        return encode_sse(dumps(payload).decode())

    def stream_open(self, prompt: Prompt, plan: Plan) -> bytes:
        """The role chunk."""
        delta = {"role": "assistant", "content": "", "refusal": None}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._chunk(prompt, plan, [choice])

    def stream_piece(self, prompt: Prompt, plan: Plan, index: int) -> bytes:
        """One content delta."""
        delta = {"content": plan.pieces[index]}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._chunk(prompt, plan, [choice])

    def stream_close(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """The finish chunk, the usage chunk when asked for, and `[DONE]`."""
        finish = "content_filter" if filtered else plan.finish
        out = b""
        for index, (call_id, name, arguments) in enumerate(plan.tool_calls):
            for j, piece in enumerate(argument_pieces(arguments)):
                call: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
                if j == 0:
                    call.update(id=call_id, type="function")
                    call["function"]["name"] = name
                delta = {"tool_calls": [call]}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
                out += self._chunk(prompt, plan, [choice])
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
        out += self._chunk(prompt, plan, [choice])
        if prompt.include_usage:
            out += self._chunk(prompt, plan, [], usage=self._usage(prompt, plan))
        return out + encode_sse("[DONE]")

    def stream_error(self, message: str) -> bytes:
        """`data: {"error": {...}}`, which the SDK raises as an APIError."""
        error = {"message": message, "type": "server_error", "param": None, "code": None}
        return encode_sse(dumps({"error": error}).decode())

    def models(self, names: list[str]) -> bytes:
        """`{"object": "list", "data": [...]}`."""
        created = int(time.time())
        data = [
            {"id": n, "object": "model", "created": created, "owned_by": "qg-simulator"}
            for n in names
        ]
        return dumps({"object": "list", "data": data})
