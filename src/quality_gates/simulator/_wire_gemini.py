"""Gemini generateContent as the simulator speaks it (what `google-genai` expects)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

from quality_gates.simulator._behaviour import Plan, Prompt
from quality_gates.simulator._server import Request
from quality_gates.simulator._wire import (
    ErrorKind,
    Reply,
    Route,
    WireProtocol,
    dumps,
    object_arguments,
    positive_int,
    stop_list,
)

VERSIONS = ("v1beta", "v1", "v1alpha")
_ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "INVALID_ARGUMENT"),
    "not_found": (404, "NOT_FOUND"),
    "method_not_allowed": (405, "UNIMPLEMENTED"),
    "auth_missing": (403, "PERMISSION_DENIED"),
    "auth_invalid": (400, "INVALID_ARGUMENT"),
    "server_error": (500, "INTERNAL"),
    "overloaded": (503, "UNAVAILABLE"),
    "rate_limited": (429, "RESOURCE_EXHAUSTED"),
    "unavailable": (503, "UNAVAILABLE"),
}
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
SSE_END = b"\r\n\r\n"
EMBED_ACTIONS = (
    "embedContent",
    "batchEmbedContents",
)  # Google's servers separate events with CRLF pairs


def _field(data: dict[str, Any], camel: str, snake: str) -> Any:
    """Protobuf JSON accepts both lowerCamelCase and the original snake_case names."""
    return data.get(camel, data.get(snake))


class GeminiWire(WireProtocol):
    """`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`."""

    name = "gemini"

    def route(self, method: str, path: str) -> Route | ErrorKind:
        """generateContent, streamGenerateContent and the model list, under any version."""
        version, _, rest = path.lstrip("/").partition("/")
        if version not in VERSIONS:
            return "not_found"
        if rest == "models":
            return Route("models") if method == "GET" else "method_not_allowed"
        target, _, action = unquote(rest).rpartition(":")
        if not target.startswith(("models/", "tunedModels/")) or not target.partition("/")[2]:
            return "not_found"
        if action not in ("generateContent", "streamGenerateContent", *EMBED_ACTIONS):
            return "not_found"
        if method != "POST":
            return "method_not_allowed"
        model = target.partition("/")[2] if target.startswith("models/") else target
        if action in EMBED_ACTIONS:
            return Route("embed", model=model, stream=action == "batchEmbedContents")
        return Route("chat", model=model, stream=action == "streamGenerateContent")

    def credentials_error(self, request: Request, api_key: str | None) -> ErrorKind | None:
        """`x-goog-api-key` or `?key=`; a wrong key is a 400 API_KEY_INVALID, as Google does."""
        key = request.headers.get("x-goog-api-key") or ""
        if not key and request.query:
            key = (parse_qs(request.query).get("key") or [""])[0]
        if not key:
            return "auth_missing"
        return "auth_invalid" if api_key and key != api_key else None

    def parse(self, request: Request, route: Route) -> Prompt:
        """contents (required), systemInstruction, generationConfig."""
        data = self.json_body(request)
        raw = data.get("contents")
        if not isinstance(raw, list) or not raw:
            raise self.bad_request("* GenerateContentRequest.contents: contents is not specified")
        messages: list[tuple[str, str]] = []
        system = _field(data, "systemInstruction", "system_instruction")
        if system is not None:
            messages.append(("system", self._parts(system, "systemInstruction")))
        images = 0
        for i, content in enumerate(raw):
            role = content.get("role", "user") if isinstance(content, dict) else None
            if role not in ("user", "model"):
                raise self.bad_request(f"* contents[{i}].role: must be 'user' or 'model'")
            text = self._parts(content, f"contents[{i}]")
            parts = [p for p in content["parts"] if isinstance(p, dict)]
            images += sum(1 for p in parts if "inlineData" in p or "inline_data" in p)
            responses = [_field(p, "functionResponse", "function_response") for p in parts]
            if any(responses):
                messages.append(("tool", dumps([r for r in responses if r]).decode()))
                continue
            messages.append(("assistant" if role == "model" else "user", text))
        config = _field(data, "generationConfig", "generation_config") or {}
        if not isinstance(config, dict):
            raise self.bad_request("* generationConfig: must be an object")
        limit = _field(config, "maxOutputTokens", "max_output_tokens")
        json_schema = None
        if _field(config, "responseMimeType", "response_mime_type") == "application/json":
            json_schema = (
                _field(config, "responseJsonSchema", "response_json_schema")
                or _field(config, "responseSchema", "response_schema")
                or {"type": "object"}
            )
        tools = []
        for tool in data.get("tools") or ():
            for declaration in _field(tool, "functionDeclarations", "function_declarations") or ():
                schema = _field(declaration, "parametersJsonSchema", "parameters_json_schema")
                tools.append(
                    (str(declaration.get("name")), schema or declaration.get("parameters") or {})
                )
        calling = (
            _field(
                _field(data, "toolConfig", "tool_config") or {},
                "functionCallingConfig",
                "function_calling_config",
            )
            or {}
        )
        mode = str(calling.get("mode") or "AUTO")
        allowed = _field(calling, "allowedFunctionNames", "allowed_function_names") or []
        choice = {"ANY": "required", "NONE": "none"}.get(mode, "auto")
        if mode == "ANY" and len(allowed) == 1:
            choice = allowed[0]
        return Prompt(
            model=route.model,
            messages=messages,
            max_tokens=positive_int(limit, "generationConfig.maxOutputTokens", self),
            stop=stop_list(_field(config, "stopSequences", "stop_sequences"), "stop", self),
            stream=route.stream,
            tools=tools,
            tool_choice=choice,
            json_schema=json_schema,
            n=positive_int(
                _field(config, "candidateCount", "candidate_count"), "candidateCount", self
            )
            or 1,
            images=images,
        )

    def parse_embed(self, request: Request, route: Route) -> tuple[str, list[str], int | None]:
        """embedContent's `content` or batchEmbedContents' `requests[].content`
        (`route.stream` marks the batch form)."""
        data = self.json_body(request)
        items = data.get("requests") if route.stream else [data]
        if not isinstance(items, list) or not items:
            raise self.bad_request("* requests: must be a non-empty list")
        texts = [self._parts(item.get("content"), "content") for item in items]
        size = _field(items[0], "outputDimensionality", "output_dimensionality")
        self._batch = route.stream
        return route.model, texts, positive_int(size, "outputDimensionality", self)

    def embed_answer(self, model: str, vectors: list[list[float]], tokens: int) -> bytes:
        """`{"embedding": {"values"}}`, or `{"embeddings": [...]}` for a batch."""
        if getattr(self, "_batch", True):
            return dumps({"embeddings": [{"values": v} for v in vectors]})
        return dumps({"embedding": {"values": vectors[0]}})

    def _parts(self, content: Any, where: str) -> str:
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise self.bad_request(f"* {where}.parts: must be a list")
        return "".join(p["text"] for p in parts if isinstance(p, dict) and "text" in p)

    def error(self, kind: ErrorKind, message: str, retry_after: float = 0.0) -> Reply:
        """`{"error": {"code", "message", "status", "details"}}`."""
        status, name = _ERRORS[kind]
        error: dict[str, Any] = {"code": status, "message": message, "status": name}
        if kind == "rate_limited":
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after:g}s",
                }
            ]
        elif kind == "auth_invalid":
            error["message"] = "API key not valid. Please pass a valid API key."
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ]
        return Reply(status, dumps({"error": error}))

    def _usage(self, plan: Plan, with_output: bool = True) -> dict[str, int]:
        output = plan.output_tokens if with_output else 0
        return {
            "promptTokenCount": plan.input_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": plan.input_tokens + output,
        }

    def _response(self, prompt: Prompt, plan: Plan, text: str | None, finish: str | None) -> Any:
        response: dict[str, Any] = {"modelVersion": prompt.model, "responseId": plan.response_id}
        if text is not None:
            parts: list[Any] = [{"text": text}]
            if plan.tool_calls and finish:
                parts = [
                    {"functionCall": {"name": n, "args": object_arguments(a)}}
                    for _, n, a in plan.tool_calls
                ]
            candidate: dict[str, Any] = {
                "content": {"parts": parts, "role": "model"},
                "index": 0,
            }
            if finish:
                candidate["finishReason"] = finish
            response["candidates"] = [candidate]
            for i, pieces in enumerate(plan.more if finish else (), 1):
                other = {"parts": [{"text": "".join(pieces)}], "role": "model"}
                response["candidates"].append(
                    {"content": other, "index": i, "finishReason": "STOP"}
                )
        response["usageMetadata"] = self._usage(plan, with_output=finish is not None)
        return response

    def answer(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """A GenerateContentResponse (a blocked prompt has promptFeedback, no candidates)."""
        if filtered:
            return dumps(
                {
                    "promptFeedback": {"blockReason": "SAFETY"},
                    "usageMetadata": self._usage(plan, with_output=False),
                    "modelVersion": prompt.model,
                }
            )
        return dumps(self._response(prompt, plan, plan.text, FINISH[plan.finish]))

    def stream_open(self, prompt: Prompt, plan: Plan) -> bytes:
        """Nothing: Gemini's first event already carries text."""
        return b""

    def stream_piece(self, prompt: Prompt, plan: Plan, index: int) -> bytes:
        """One response chunk; the last carries finishReason and the full usage."""
        last = index == len(plan.pieces) - 1
        finish = FINISH[plan.finish] if last else None
        body = dumps(self._response(prompt, plan, plan.pieces[index], finish))
        return b"data: " + body + SSE_END

    def stream_close(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """A closing chunk only when no piece carried the finish (empty or blocked answers)."""
        if filtered:
            return b"data: " + self.answer(prompt, plan, filtered=True) + SSE_END
        if plan.pieces:
            return b""
        return b"data: " + dumps(self._response(prompt, plan, "", FINISH[plan.finish])) + SSE_END

    def stream_error(self, message: str) -> bytes:
        """An error object in place of the next chunk."""
        error = {"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}
        return b"data: " + dumps(error) + SSE_END

    def models(self, names: list[str]) -> bytes:
        """`{"models": [...]}`."""
        return dumps(
            {
                "models": [
                    {
                        "name": f"models/{n}",
                        "displayName": n,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    }
                    for n in names
                ]
            }
        )
