"""What each simulated protocol must say: routes, request parsing, answers, stream events and
errors, all in the provider's own shapes."""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from quality_gates.simulator._behaviour import Plan, Prompt
from quality_gates.simulator._server import Request

# Error kinds a protocol renders (the behaviour's outcomes plus the request's own faults).
ErrorKind = Literal[
    "bad_request",
    "not_found",
    "method_not_allowed",
    "auth_missing",
    "auth_invalid",
    "server_error",
    "overloaded",
    "rate_limited",
    "unavailable",
]
RouteKind = Literal["chat", "models", "embed"]


@dataclass
class Reply:
    """A whole HTTP response."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    """What a request path asks for."""

    kind: RouteKind
    model: str = ""
    stream: bool = False


class WireError(Exception):
    """A request the protocol refuses; carries the protocol's own error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(payload: Any) -> bytes:
    """Compact JSON."""
    return _ENCODE(payload).encode()


def header_value(request: Request, name: str) -> str:
    """A request header ('' when absent)."""
    return request.headers.get(name, "")


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer ...`."""
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


class WireProtocol(abc.ABC):
    """One provider's wire protocol, as the simulator speaks it."""

    name: str
    stream_content_type: str = "text/event-stream"

    @abc.abstractmethod
    def route(self, method: str, path: str) -> Route | ErrorKind:
        """The route for a request line, or the error kind for an unknown one."""

    @abc.abstractmethod
    def credentials_error(self, request: Request, api_key: str | None) -> ErrorKind | None:
        """`auth_missing` / `auth_invalid` when the request's credentials are not good."""

    @abc.abstractmethod
    def parse(self, request: Request, route: Route) -> Prompt:
        """The prompt; raises WireError with the protocol's 400 for a malformed body."""

    @abc.abstractmethod
    def error(self, kind: ErrorKind, message: str, retry_after: float = 0.0) -> Reply:
        """An error reply in the protocol's shape."""

    @abc.abstractmethod
    def answer(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """A complete answer body (`filtered`: the provider's content-filter refusal)."""

    @abc.abstractmethod
    def stream_open(self, prompt: Prompt, plan: Plan) -> bytes:
        """Events before the first token."""

    @abc.abstractmethod
    def stream_piece(self, prompt: Prompt, plan: Plan, index: int) -> bytes:
        """The event carrying token `index` of the plan."""

    @abc.abstractmethod
    def stream_close(self, prompt: Prompt, plan: Plan, *, filtered: bool = False) -> bytes:
        """Events after the last token (finish reason, usage, end marker)."""

    @abc.abstractmethod
    def stream_error(self, message: str) -> bytes:
        """The protocol's in-stream error event (the upstream failed mid-answer)."""

    @abc.abstractmethod
    def models(self, names: list[str]) -> bytes:
        """The model listing."""

    def parse_embed(self, request: Request, route: Route) -> tuple[str, list[str], int | None]:
        """(model, texts, dimensions) of an embeddings request (protocols that have one)."""
        raise self.bad_request("this protocol has no embeddings")

    def embed_answer(self, model: str, vectors: list[list[float]], tokens: int) -> bytes:
        """The embeddings answer body; a protocol that parses embeddings gives this too (the
        default refuses like `parse_embed`)."""
        raise self.bad_request("this protocol has no embeddings")

    def bad_request(self, message: str) -> WireError:
        """A WireError carrying the protocol's 400."""
        return WireError(self.error("bad_request", message))

    def json_body(self, request: Request) -> dict[str, Any]:
        """The request body as a JSON object, or the protocol's 400."""
        try:
            data = json.loads(request.body.decode())
        except (ValueError, UnicodeDecodeError):
            raise self.bad_request("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise self.bad_request("the request body must be a JSON object")
        return data


def text_of(content: Any) -> str | None:
    """Message content as text (a string, or a list of text parts); None if it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return None


def positive_int(value: Any, name: str, protocol: WireProtocol) -> int | None:
    """An optional positive integer field."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise protocol.bad_request(f"{name}: must be a positive integer")
    return value


def stop_list(value: Any, name: str, protocol: WireProtocol) -> list[str]:
    """Stop sequences: a string or a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise protocol.bad_request(f"{name}: must be a string or a list of strings")


def json_schema_of(value: Any, protocol: WireProtocol) -> dict[str, Any] | None:
    """The schema an OpenAI `response_format` asks for ({} for any JSON object)."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"].get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    raise protocol.bad_request("response_format: type must be text, json_object or json_schema")


def object_arguments(arguments: str) -> dict[str, Any]:
    """Tool arguments for protocols that carry an object: cut-off JSON (the malformed fault)
    becomes an empty object, which breaks the schema's required fields instead."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
