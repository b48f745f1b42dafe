"""OpenAI Chat Completions as the simulator speaks it (what the `openai` SDK expects)."""

from __future__ import annotations

import time
from typing import Any

from quality_gates.providers._sse import encode_sse
from quality_gates.simulator._behaviour import Plan, Prompt
from quality_gates.simulator._server import Request
from quality_gates.simulator._wire import (
    ErrorKind,
    Reply,
    Route,
    WireProtocol,
    bearer,
    dumps,
    positive_int,
    stop_list,
    text_of,
)

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL_PATHS = ("/v1/models", "/models")
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
        for i, message in enumerate(raw):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                raise self.bad_request(f"messages[{i}].role: must be one of {', '.join(ROLES)}")
            content = text_of(message.get("content"))
            if content is None and role != "assistant":
                raise self.bad_request(f"messages[{i}].content: must be a string or parts")
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
        )

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
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
        out = self._chunk(prompt, plan, [choice])
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
