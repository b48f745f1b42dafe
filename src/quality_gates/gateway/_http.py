"""The gateway's HTTP surface: the chat path answered at the ASGI level, and the small
endpoints (/v1/models, /healthz, /readyz, /metrics) through Starlette."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from quality_gates.gateway._gateway import AUTH_FAILED, error_class_of
from quality_gates.gateway._server import watch_disconnect
from quality_gates.gateway._wire import Answer, ApiError, error_answer
from quality_gates.gateway.keys import ApiKey, hash_key

if TYPE_CHECKING:
    from quality_gates.gateway._app import GatewayApp

OPERATOR_ROLES = ("operator", "admin")
# The hashes of the last bearer tokens seen: a client sends the same key on every request,
# and a SHA-256 per request was 3% of the chat path's CPU. Bounded, so a flood of made-up
# tokens only evicts.
_token_hash = functools.lru_cache(maxsize=512)(hash_key)


def _error(exc: ApiError) -> Answer:
    return error_answer(exc)


def _error_response(exc: ApiError, request: Request | None = None) -> Response:
    if request is not None:  # the error class /metrics counts this answer under
        request.scope[ERROR_CLASS_KEY] = error_class_of(exc)
    return Response(exc.body(), exc.status, exc.headers(), media_type="application/json")


def _authenticate(state: GatewayApp, header: str | None) -> ApiKey | None:
    if not header:
        if state.auth_required():
            raise ApiError(
                401,
                "missing API key: send Authorization: Bearer <key>",
                code="missing_api_key",
                error_class=AUTH_FAILED,
            )
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "malformed Authorization header: use Bearer <key>",
            code="invalid_api_key",
            error_class=AUTH_FAILED,
        )
    key = state.keys.get(_token_hash(token.strip()))
    if key is None:
        if not state.auth_required():
            return None
        raise ApiError(
            401, "invalid or revoked API key", code="invalid_api_key", error_class=AUTH_FAILED
        )
    return key


CHAT_PATH = "/v1/chat/completions"
# Routes counted by name in qg_gateway_http_requests_total; any other path counts as `other`,
# so made-up paths cannot grow the series.
COUNTED_ROUTES = frozenset({"/v1/models", "/v1/feedback", "/healthz", "/readyz", "/metrics"})
ERROR_CLASS_KEY = "qg.error_class"
SERVER_ROUTE = "(server)"  # answered by the HTTP server before the app ran
_STATUS_CLASSES = {401: AUTH_FAILED, 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def _scope_headers(scope: Scope) -> dict[str, str]:
    """The few request headers the chat path reads, by lower-case name."""
    wanted = (b"authorization", b"content-length", b"cache-control", b"x-qg-cache")
    return {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in wanted}


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client closed the connection before the body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit} bytes", code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _checked_key(state: GatewayApp, header: str | None) -> ApiError | ApiKey | None:
    """The key of a request, or the 401 to answer (counted as an authentication failure)."""
    try:
        return _authenticate(state, header)
    except ApiError as exc:
        token = (header or "").partition(" ")[2].strip() or None
        state.gateway.auth_failure(exc.code or "invalid_api_key", token)
        return exc


async def chat_completions(scope: Scope, receive: Receive, send: Send, state: GatewayApp) -> None:
    """POST /v1/chat/completions, answered at the ASGI level: it is the hot path, and a
    framework's routing, request object and middleware would cost a third of its time."""
    headers = _scope_headers(scope)
    checked = _checked_key(state, headers.get("authorization"))
    if isinstance(checked, ApiError):
        await _error(checked)(scope, receive, send)
        return
    key = checked
    try:
        limit = state.settings.config.gateway.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body is over {limit} bytes", code="body_too_large")
        body = await _read_body(receive, limit)
    except ApiError as exc:
        state.gateway.refused(exc)
        await _error(exc)(scope, receive, send)
        return
    task = asyncio.current_task()
    left = False

    def client_left() -> None:
        nonlocal left
        left = True
        if task is not None:
            task.cancel()

    stop_watching = watch_disconnect(receive, client_left)
    try:
        cache_control = headers.get("cache-control", "")
        use_cache = "no-cache" not in cache_control and "no-store" not in cache_control
        ask_cache = headers.get("x-qg-cache", "").strip().lower() == "allow"
        response = await state.gateway.chat(body, key, use_cache=use_cache, ask_cache=ask_cache)
    except ApiError as exc:
        stop_watching()
        await _error(exc)(scope, receive, send)
        return
    except asyncio.CancelledError:
        stop_watching()
        if not left or task is None:
            raise
        task.uncancel()  # our own cancellation: the client is gone, nothing to answer
        return
    stop_watching()
    await response(scope, receive, send)


class GatewayASGI:
    """The gateway app: the chat path directly, everything else (lifespan, /v1/models,
    /healthz, /readyz, /metrics) through Starlette."""

    def __init__(self, router: Starlette) -> None:
        self.router = router

    @property
    def state(self) -> Any:
        """The router's state (`state.gateway` is the running GatewayApp)."""
        return self.router.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CHAT_PATH:
            if scope["method"] == "POST":
                await chat_completions(scope, receive, send, self.router.state.gateway)
                return
            exc = ApiError(405, f"{CHAT_PATH} takes POST", code="method_not_allowed")
            self.router.state.gateway.gateway.refused(exc)
            await _error(exc)(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        status = 0

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.router(scope, receive, counting_send)
        finally:
            if status:
                self._count(scope, status)

    def count_refusal(self, status: int, error_class: str) -> None:
        """Count an answer the HTTP server gave before the app ran (a malformed request,
        a body over the limit, a head too large, a read timeout) under route `(server)`."""
        gateway = getattr(self.router.state, "gateway", None)
        if gateway is not None:
            gateway.services.metrics.http_requests.labels(
                gateway.services.environment, SERVER_ROUTE, "", str(status), error_class
            ).inc()

    def _count(self, scope: Scope, status: int) -> None:
        gateway = getattr(self.router.state, "gateway", None)
        if gateway is None:
            return
        path = scope["path"]
        error_class = scope.get(ERROR_CLASS_KEY)
        if error_class is None:
            error_class = "" if status < 400 else _STATUS_CLASSES.get(status, f"http_{status}")
        gateway.services.metrics.http_requests.labels(
            gateway.services.environment,
            path if path in COUNTED_ROUTES else "other",
            scope["method"],
            str(status),
            error_class,
        ).inc()


async def unknown_route(request: Request, exc: Exception) -> Response:
    """Any unknown path or method, answered in the OpenAI error shape (an ErrorResponse)
    rather than a framework's text/plain page."""
    status = getattr(exc, "status_code", 404)
    where = f"{request.method} {request.url.path}"
    if status == 405:
        error = ApiError(405, f"{where}: method not allowed", code="method_not_allowed")
    else:
        error = ApiError(
            404,
            f"{where}: no such endpoint (this gateway serves POST /v1/chat/completions, "
            "POST /v1/embeddings, POST /v1/messages, GET /v1/models and /v1/models/{id})",
            code="unknown_url",
        )
    return _error_response(error)


async def list_models(request: Request) -> Response:
    """GET /v1/models: the environment's aliases (and model ids where allowed)."""
    state: GatewayApp = request.app.state.gateway
    try:
        _authenticate(state, request.headers.get("authorization"))
    except ApiError as exc:
        state.services.metrics.auth_failures.labels(
            state.services.environment, exc.code or "invalid_api_key"
        ).inc()
        return _error_response(exc, request)
    table = state.services.table
    created = int(state.started_at)
    data = [
        {
            "id": alias,
            "object": "model",
            "created": created,
            "owned_by": table.deployments[model].provider if model in table.deployments else "",
            "model": model,
        }
        for alias, model in sorted(table.aliases.items())
    ]
    if table.env.allow_model_ids:
        data += [
            {"id": d.model_id, "object": "model", "created": created, "owned_by": d.provider}
            for d in sorted(table.deployments.values(), key=lambda d: d.model_id)
        ]
    return JSONResponse({"object": "list", "data": data})


async def retrieve_model(request: Request) -> Response:
    """GET /v1/models/{id}: one alias (or model id where allowed) as an OpenAI Model."""
    state: GatewayApp = request.app.state.gateway
    try:
        _authenticate(state, request.headers.get("authorization"))
    except ApiError as exc:
        return _error_response(exc)
    table = state.services.table
    name = request.path_params["model_id"]
    model = table.aliases.get(name)
    if model is None and table.env.allow_model_ids and name in table.deployments:
        model = name
    if model is None:
        return _error_response(
            ApiError(
                404,
                f"The model {name!r} does not exist: GET /v1/models lists the aliases"
                + (" and model ids" if table.env.allow_model_ids else ""),
                param="model",
                code="model_not_found",
            )
        )
    deployment = table.deployments.get(model)
    return JSONResponse(
        {
            "id": name,
            "object": "model",
            "created": int(state.started_at),
            "owned_by": deployment.provider if deployment is not None else "",
        }
    )


async def embeddings(request: Request) -> Response:
    """POST /v1/embeddings (client key auth, as chat)."""
    from quality_gates.gateway._embeddings import Embeddings

    state: GatewayApp = request.app.state.gateway
    checked = _checked_key(state, request.headers.get("authorization"))
    if isinstance(checked, ApiError):
        return _error_response(checked)
    limit = state.settings.config.gateway.max_body_bytes
    try:
        raw = await request.body()
        if len(raw) > limit:
            raise ApiError(413, f"the body is over {limit} bytes", code="body_too_large")
        answer = await Embeddings(state.gateway).embed(raw, checked)
    except ApiError as exc:
        return _error_response(exc)
    return Response(answer.body, answer.status, answer.headers, media_type=answer.media_type)


async def feedback(request: Request) -> Response:
    """POST /v1/feedback: a 1-5 score for a response id (client key auth, as chat)."""
    from quality_gates.gateway._feedback import MAX_BODY, feedback_json, parse_feedback

    state: GatewayApp = request.app.state.gateway
    checked = _checked_key(state, request.headers.get("authorization"))
    if isinstance(checked, ApiError):
        return _error_response(checked, request)
    try:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the body is over {MAX_BODY} bytes", code="body_too_large")
        parsed = parse_feedback(raw)
        feedback_id = await state.feedback_writer.write(
            parsed, checked.name if checked is not None else None
        )
    except ApiError as exc:
        return _error_response(exc, request)
    state.services.metrics.feedback.labels(state.services.environment, str(parsed.score)).inc()
    return JSONResponse(feedback_json(feedback_id, parsed), status_code=201)


async def healthz(request: Request) -> Response:
    """GET /healthz: the process is up, and the config in force (digest, when loaded, and the
    problems of a newer file it refused)."""
    from quality_gates.gateway._reload import describe

    return JSONResponse({"status": "ok", **describe(request.app.state.gateway)})


def readiness(state: GatewayApp) -> tuple[bool, dict[str, Any]]:
    """Ready: at least one deployment in use is not open. The gateway serves on its last
    routes while the store is away, so a lost store does not make it unready; the body says
    so (without the store's host, user or database: /readyz needs no key)."""
    now = time.time()
    routes = state.services.table.in_use()
    usable = [
        d.id
        for d in routes
        if d.provider in state.providers and not state.services.breakers.is_open(d.id, now)
    ]
    ready = bool(usable)
    telemetry = state.services.telemetry
    return ready, {
        "status": "ready" if ready else "not ready",
        "store": "ok" if state.control.store_ok else "unreachable",
        # Reads can work while writes fail (a full disk): telemetry says whether rows land.
        "telemetry": "failing" if telemetry is not None and telemetry.failing else "ok",
        "usable_deployments": usable,
        "deployments": len(routes),
        "control_version": state.services.table.version,
    }


async def readyz(request: Request) -> Response:
    """GET /readyz."""
    ready, body = readiness(request.app.state.gateway)
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics in the Prometheus text format."""
    state: GatewayApp = request.app.state.gateway
    if state.settings.config.gateway.metrics_require_key:
        try:
            key = _authenticate(state, request.headers.get("authorization"))
        except ApiError as exc:
            state.services.metrics.auth_failures.labels(
                state.services.environment, exc.code or "invalid_api_key"
            ).inc()
            return _error_response(exc, request)
        if key is None or key.role not in OPERATOR_ROLES:
            return _error_response(
                ApiError(403, "/metrics needs an operator or admin key", code="forbidden"),
                request,
            )
    return Response(
        generate_latest(state.services.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
