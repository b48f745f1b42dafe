"""Anthropic Messages as the simulator speaks it (what the `anthropic` SDK expects)."""

from __future__ import annotations

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
    object_arguments,
    positive_int,
    stop_list,
    text_of,
)

_ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "invalid_request_error"),
    "not_found": (404, "not_found_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "auth_missing": (401, "authentication_error"),
    "auth_invalid": (401, "authentication_error"),
    "server_error": (500, "api_error"),
    "overloaded": (529, "overloaded_error"),
    "rate_limited": (429, "rate_limit_error"),
    "unavailable": (529, "overloaded_error"),
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class AnthropicWire(WireProtocol):
    """`POST /v1/messages` (SSE with `stream: true`) and `GET /v1/models`."""

    name = "anthropic"

    def route(self, method: str, path: str) -> Route | ErrorKind:
        """Messages and the model list."""
        if path == "/v1/messages":
            return Route("chat") if method == "POST" else "method_not_allowed"
        if path == "/v1/models":
            return Route("models") if method == "GET" else "method_not_allowed"
        return "not_found"

    def credentials_error(self, request: Request, api_key: str | None) -> ErrorKind | None:
        """`x-api-key` (or a bearer token) must be present, and equal `api_key` if set."""
        key = request.headers.get("x-api-key") or bearer(request)
        if not key:
            return "auth_missing"
        return "auth_invalid" if api_key and key != api_key else None

    def parse(self, request: Request, route: Route) -> Prompt:
        """model, max_tokens (required), messages, system, stop_sequences, stream."""
        if not request.headers.get("anthropic-version"):
            raise self.bad_request("anthropic-version: header is required")
        data = self.json_body(request)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise self.bad_request("model: Field required")
        if "max_tokens" not in data:
            raise self.bad_request("max_tokens: Field required")
        raw = data.get("messages")
        if not isinstance(raw, list) or not raw:
            raise self.bad_request("messages: at least one message is required")
        messages: list[tuple[str, str]] = []
        system = data.get("system")
        if system is not None:
            text = text_of(system)
            if text is None:
                raise self.bad_request("system: must be a string or text blocks")
            messages.append(("system", text))
        images = 0
        for i, message in enumerate(raw):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                raise self.bad_request(f"messages.{i}.role: must be 'user' or 'assistant'")
            content = message.get("content")
            text = text_of(content)
            if text is None:
                raise self.bad_request(f"messages.{i}.content: must be a string or blocks")
            blocks = content if isinstance(content, list) else []
            results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            images += sum(1 for b in blocks if isinstance(b, dict) and b.get("type") == "image")
            if results:
                role, text = "tool", " ".join(str(text_of(r.get("content")) or "") for r in results)
            messages.append((role, text))
        tool_choice = data.get("tool_choice") or {}
        kind = tool_choice.get("type") if isinstance(tool_choice, dict) else None
        return Prompt(
            model=model,
            messages=messages,
            max_tokens=positive_int(data.get("max_tokens"), "max_tokens", self),
            stop=stop_list(data.get("stop_sequences"), "stop_sequences", self),
            stream=bool(data.get("stream")),
            tools=[
                (str(t.get("name")), t.get("input_schema") or {})
                for t in data.get("tools") or ()
                if isinstance(t, dict)
            ],
            tool_choice={"any": "required", "tool": tool_choice.get("name")}.get(kind, kind)
            if kind
            else None,
            parallel_tool_calls=not tool_choice.get("disable_parallel_tool_use")
            if isinstance(tool_choice, dict)
            else True,
            images=images,
        )

    def error(self, kind: ErrorKind, message: str, retry_after: float = 0.0) -> Reply:
        """`{"type": "error", "error": {"type", "message"}}`."""
        status, error_type = _ERRORS[kind]
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        headers = [("retry-after", f"{max(1, round(retry_after))}")] if retry_after else []
        return Reply(status, dumps(body), headers)

    def _message(self, prompt: Prompt, plan: Plan, content: list[Any], **fields: Any) -> Any:
        return {
            "id": f"msg_{plan.response_id}",
            "type": "message",
            "role": "assistant",
            "model": prompt.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            **fields,
        }

    def _stop_reason(self, plan: Plan, filtered: bool) -> str:
        if filtered:
            return "refusal"
        return "stop_sequence" if plan.stop_sequence else STOP_REASONS[plan.finish]

    def answer(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """A `message` object."""
        content: list[Any] = [] if filtered else [{"type": "text", "text": plan.text}]
        if plan.tool_calls and not filtered:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{i[5:]}",
                    "name": n,
                    "input": object_arguments(a),
                }
                for i, n, a in plan.tool_calls
            ]
        usage = {"input_tokens": plan.input_tokens, "output_tokens": plan.output_tokens}
        message = self._message(
            prompt,
            plan,
            content,
            stop_reason=self._stop_reason(plan, filtered),
            stop_sequence=plan.stop_sequence,
            usage=usage,
        )
        return dumps(message)

    def stream_open(self, prompt: Prompt, plan: Plan) -> bytes:
        """message_start, content_block_start, ping."""
        usage = {"input_tokens": plan.input_tokens, "output_tokens": 1}
        start = {"type": "message_start", "message": self._message(prompt, plan, [], usage=usage)}
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        return (
            encode_sse(dumps(start).decode(), "message_start")
            + encode_sse(dumps(block).decode(), "content_block_start")
            + encode_sse('{"type": "ping"}', "ping")
        )

    def stream_piece(self, prompt: Prompt, plan: Plan, index: int) -> bytes:
        """One text_delta."""
        delta = {"type": "text_delta", "text": plan.pieces[index]}
        event = {"type": "content_block_delta", "index": 0, "delta": delta}
        return encode_sse(dumps(event).decode(), "content_block_delta")

    def stream_close(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """content_block_stop, message_delta (stop reason, output tokens), message_stop."""
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": self._stop_reason(plan, filtered),
                "stop_sequence": plan.stop_sequence,
            },
            "usage": {"output_tokens": plan.output_tokens},
        }
        out = encode_sse('{"type":"content_block_stop","index":0}', "content_block_stop")
        for index, (call_id, name, arguments) in enumerate(plan.tool_calls, 1):
            block = {"type": "tool_use", "id": f"toolu_{call_id[5:]}", "name": name, "input": {}}
            start = {"type": "content_block_start", "index": index, "content_block": block}
            out += encode_sse(dumps(start).decode(), "content_block_start")
            for piece in argument_pieces(arguments):
                json_delta = {"type": "input_json_delta", "partial_json": piece}
                event = {"type": "content_block_delta", "index": index, "delta": json_delta}
                out += encode_sse(dumps(event).decode(), "content_block_delta")
            stop = {"type": "content_block_stop", "index": index}
            out += encode_sse(dumps(stop).decode(), "content_block_stop")
        return (
            out
            + encode_sse(dumps(delta).decode(), "message_delta")
            + encode_sse('{"type":"message_stop"}', "message_stop")
        )

    def stream_error(self, message: str) -> bytes:
        """`event: error` with an overloaded_error, as Anthropic sends mid-stream."""
        error = {"type": "error", "error": {"type": "overloaded_error", "message": message}}
        return encode_sse(dumps(error).decode(), "error")

    def models(self, names: list[str]) -> bytes:
        """`{"data": [...], "has_more": false}`."""
        data = [
            {"type": "model", "id": n, "display_name": n, "created_at": "2024-01-01T00:00:00Z"}
            for n in names
        ]
        first, last = (names[0], names[-1]) if names else (None, None)
        return dumps({"data": data, "has_more": False, "first_id": first, "last_id": last})
