"""`create_web_app(settings)`: the status page and the operator dashboard, one ASGI app.

Routes: GET /status and /status.json (public, cached `web.status_page.cache` seconds),
GET / (dashboard; sign-in first), GET /dashboard.json, GET+POST /login, POST /logout,
POST /actions/{name} (twice: once to see the confirmation, once confirmed), /static/*.
Store work runs on Starlette's thread pool, one connection per thread.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from quality_gates.config import QualityGatesConfig
from quality_gates.errors import QualityGatesError, StoreError
from quality_gates.store.db import Connection, Database, StoreURL
from quality_gates.web import sessions
from quality_gates.web.actions import ACTIONS, Context
from quality_gates.web.operator import dashboard_view
from quality_gates.web.public import public_status
from quality_gates.web.sessions import Operator
from quality_gates.web.uptime import UptimeHistory

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
        "img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
PUBLIC_REFRESH_S = 30
MAX_FORM_BYTES = 64 * 1024


@dataclass
class WebAppSettings:
    """What the web app serves: one environment of one store."""

    config: QualityGatesConfig
    store_url: StoreURL
    environment: str


@dataclass
class WebApp:
    """The running app's state (on `app.state.web`)."""

    settings: WebAppSettings
    database: Database
    templates: jinja2.Environment
    throttle: sessions.Throttle
    history: UptimeHistory = field(default_factory=UptimeHistory)
    _secret: bytes | None = None
    _cache: tuple[float, dict[str, Any]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def environment(self) -> str:
        """The environment shown."""
        return self.settings.environment

    def conn(self) -> Connection:
        """This thread's store connection."""
        return self.database.shared()

    def secret(self) -> bytes:
        """The session secret (read from the store once)."""
        if self._secret is None:
            self._secret = sessions.server_secret(self.conn())
        return self._secret

    def public(self) -> dict[str, Any]:
        """The public status, reused for `web.status_page.cache` seconds."""
        ttl = self.settings.config.web.status_page.cache
        now = time.time()
        with self._lock:
            if self._cache is not None and now < self._cache[0]:
                return self._cache[1]
        try:
            data = public_status(
                self.conn(), self.settings.config, self.environment, now=now, history=self.history
            )
        except StoreError:
            # The store is lost: the last status read is better than none for a status page;
            # the connection reopens itself once the store is back.
            with self._lock:
                if self._cache is None:
                    raise
                return self._cache[1]
        with self._lock:
            self._cache = (now + ttl, data)
        return data

    def invalidate(self) -> None:
        """Forget the cached public status."""
        with self._lock:
            self._cache = None

    def render(self, name: str, code: int = 200, **values: Any) -> HTMLResponse:
        """A template as a response with the security headers."""
        html = self.templates.get_template(name).render(**values)
        return HTMLResponse(html, code, headers=_headers(private=name != "status.html"))


def _headers(*, private: bool) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    headers["Cache-Control"] = "no-store" if private else "public, max-age=5"
    return headers


def _templates() -> jinja2.Environment:
    from quality_gates.web import filters

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filters.FILTERS)
    return env


def _web(request: Request) -> WebApp:
    web: WebApp = request.app.state.web
    return web


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _cookie(response: Response, web: WebApp, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=web.settings.config.web.secure_cookies,
        path="/",
    )


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind these pages send), bounded in size."""
    from urllib.parse import parse_qsl

    # Bounded before it is read: a declared length over the bound is refused unread, and an
    # undeclared one is read only up to the bound (a large POST /login, which needs no
    # sign-in, once took the process from 304 to 1,077 MiB).
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise HTTPException(413, f"the form is over {MAX_FORM_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise HTTPException(413, f"the form is over {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _same_origin(request: Request) -> bool:
    """A POST whose Origin (when the browser sends one) is this host."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


# --- public ---------------------------------------------------------------------------


async def status_page(request: Request) -> Response:
    web = _web(request)
    data = await run_in_threadpool(web.public)
    return web.render("status.html", status=data, refresh=PUBLIC_REFRESH_S)


async def status_json(request: Request) -> Response:
    web = _web(request)
    data = await run_in_threadpool(web.public)
    headers = _headers(private=False)
    headers["Access-Control-Allow-Origin"] = "*"
    return JSONResponse(data, headers=headers)


# --- sign-in --------------------------------------------------------------------------


def _login_form(web: WebApp, request: Request, error: str | None, status: int) -> Response:
    nonce = request.cookies.get(sessions.LOGIN_COOKIE) or sessions.new_nonce()
    response = web.render(
        "login.html",
        status,
        error=error,
        csrf=sessions.csrf_token(web.secret(), nonce),
        environment=web.environment,
    )
    _cookie(response, web, sessions.LOGIN_COOKIE, nonce, 3600)
    return response


async def login_page(request: Request) -> Response:
    web = _web(request)
    operator = await run_in_threadpool(_operator, web, request)
    if operator is not None:
        return RedirectResponse("/", 303)
    return await run_in_threadpool(_login_form, web, request, None, 200)


async def login(request: Request) -> Response:
    web = _web(request)
    form = await _form(request)
    presented, token = form.get("key", ""), form.get("csrf", "")
    return await run_in_threadpool(_login, web, request, presented, token)


def _login(web: WebApp, request: Request, presented: str, token: str) -> Response:
    secret = web.secret()
    if not _same_origin(request) or not sessions.csrf_ok(
        secret, request.cookies.get(sessions.LOGIN_COOKIE), token
    ):
        return _login_form(
            web, request, "The sign-in form expired or came from elsewhere; try again.", 400
        )
    address, now = _address(request), time.time()
    wait = web.throttle.retry_after(address, now)
    if wait > 0:
        return _login_form(
            web, request, f"Too many wrong keys from {address}; try again in {wait:.0f} s.", 429
        )
    try:
        key = sessions.sign_in(web.conn(), presented, address=address)
    except sessions.LoginRefused as exc:
        if exc.status == 401:
            web.throttle.failed(address, now)
        return _login_form(web, request, str(exc), exc.status)
    ttl = web.settings.config.web.session_ttl
    payload = sessions.session_payload(key, ttl, now)
    sessions.open_session(web.conn(), payload, now)
    response = RedirectResponse("/", 303)
    _cookie(
        response, web, sessions.SESSION_COOKIE, sessions.sign(secret, "session", payload), int(ttl)
    )
    response.delete_cookie(sessions.LOGIN_COOKIE, path="/")
    return response


def _operator(web: WebApp, request: Request) -> Operator | None:
    return sessions.operator_of(
        web.conn(), web.secret(), request.cookies.get(sessions.SESSION_COOKIE), time.time()
    )


async def logout(request: Request) -> Response:
    web = _web(request)
    form = await _form(request)
    operator = await run_in_threadpool(_operator, web, request)
    response = RedirectResponse("/login", 303)
    if operator is not None and hmac.compare_digest(form.get("csrf", ""), operator.csrf):
        cookie = request.cookies.get(sessions.SESSION_COOKIE)
        await run_in_threadpool(lambda: sessions.close_session(web.conn(), web.secret(), cookie))
        response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return response


# --- dashboard ------------------------------------------------------------------------


Handler = Callable[[Request, WebApp, Operator], Awaitable[Response]]


def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Only for a valid session: otherwise the sign-in page (or 401 for JSON)."""

    async def endpoint(request: Request) -> Response:
        web = _web(request)
        operator = await run_in_threadpool(_operator, web, request)
        if operator is None:
            if request.url.path.endswith(".json"):
                return JSONResponse({"error": "sign in first"}, 401, headers=_headers(private=True))
            return RedirectResponse("/login", 303)
        return await handler(request, web, operator)

    return endpoint


def _flash(web: WebApp, request: Request) -> dict[str, Any] | None:
    return sessions.unsign(web.secret(), "flash", request.cookies.get(sessions.FLASH_COOKIE))


async def _dashboard(request: Request, web: WebApp, operator: Operator) -> Response:
    def build() -> Response:
        view = dashboard_view(
            web.conn(), web.settings.config, web.environment, admin=operator.is_admin
        )
        response = web.render(
            "dashboard.html",
            view=view,
            operator=operator,
            flash=_flash(web, request),
            refresh=web.settings.config.web.refresh,
        )
        response.delete_cookie(sessions.FLASH_COOKIE, path="/")
        return response

    return await run_in_threadpool(build)


async def _dashboard_json(request: Request, web: WebApp, operator: Operator) -> Response:
    view = await run_in_threadpool(
        dashboard_view, web.conn(), web.settings.config, web.environment, admin=operator.is_admin
    )
    return JSONResponse(view, headers=_headers(private=True))


async def _action(request: Request, web: WebApp, operator: Operator) -> Response:
    name = request.path_params["name"]
    action = ACTIONS.get(name)
    form = await _form(request)
    if action is None:
        return web.render("error.html", 404, message=f"There is no action {name!r}.")
    if not _same_origin(request) or not hmac.compare_digest(form.get("csrf", ""), operator.csrf):
        return web.render(
            "error.html", 403, message="The form expired or came from elsewhere; reload the page."
        )
    if action.admin_only and not operator.is_admin:
        return web.render(
            "error.html",
            403,
            message=f"Only admin keys may {name}; {operator.name} is an operator.",
        )
    return await run_in_threadpool(_act, web, operator, name, form)


def _act(web: WebApp, operator: Operator, name: str, form: dict[str, str]) -> Response:
    action = ACTIONS[name]
    ctx = Context(web.conn(), web.settings.config, web.environment, operator)
    try:
        if form.get("confirmed") != "1":
            preview = action.preview(ctx, form)
            fields = {k: v for k, v in form.items() if k not in ("csrf", "confirmed")}
            return web.render(
                "confirm.html",
                preview=preview,
                action=name,
                fields=fields,
                csrf=operator.csrf,
                operator=operator,
            )
        message, kind = action.run(ctx, form), "ok"
    except QualityGatesError as exc:
        hint = getattr(exc, "hint", None)
        message, kind = (f"{exc} ({hint})" if hint else str(exc)), "error"
    web.invalidate()  # the public page shows the change at once
    response = RedirectResponse("/", 303)
    flash = sessions.sign(web.secret(), "flash", {"kind": kind, "text": message})
    _cookie(response, web, sessions.FLASH_COOKIE, flash, 60)
    return response


async def _store_unreachable(request: Request, exc: Exception) -> Response:
    """503 with Retry-After while the store is lost (never a 500: nothing here is broken)."""
    text = f"the store is unreachable: {exc}; this page works again once it is back"
    headers = {**_headers(private=True), "Retry-After": "5"}
    if request.url.path.endswith(".json"):
        return JSONResponse({"error": text}, 503, headers=headers)
    return PlainTextResponse(text, 503, headers=headers)


def create_web_app(settings: WebAppSettings) -> Starlette:
    """The status page and dashboard for `settings.environment`."""
    from quality_gates.store.db import Database

    config = settings.config
    state = WebApp(
        settings=settings,
        database=Database(settings.store_url),
        templates=_templates(),
        throttle=sessions.Throttle(config.web.login_attempts),
    )
    routes = [
        Route("/status", status_page, methods=["GET"]),
        Route("/status.json", status_json, methods=["GET"]),
        Route("/", signed_in(_dashboard), methods=["GET"]),
        Route("/dashboard.json", signed_in(_dashboard_json), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/actions/{name}", signed_in(_action), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={StoreError: _store_unreachable})
    app.state.web = state
    return app
