"""Running the web app: in the foreground (`dashboard`) or on a thread beside the gateway
(`serve --admin-port`), each with its own event loop and socket."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from typing import Any

STOP_TIMEOUT_S = 10.0


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: a free port), or OSError."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _server(app: Any) -> Any:
    import uvicorn

    # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: behind nothing, or behind a
    # proxy on the same host, anyone could then pick the address the login throttle and the
    # audit see. Only web.trusted_proxies are believed.
    trusted = list(app.state.web.settings.config.web.trusted_proxies)
    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted or [],
        )
    )


def serve_forever(app: Any, sock: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM, then close the socket and return (a clean exit 0)."""
    # uvicorn stops on the signal, then raises it again for the handler it found installed:
    # this one takes it, so a requested stop is not reported as a death by signal.
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stops}
    try:
        _server(app).run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class AdminServer:
    """The web app on a daemon thread: `start()`, then `stop()` when the gateway stops."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self._server = _server(app)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="qg-admin", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by stop(); the gateway keeps serving
            self.error = exc

    def start(self) -> None:
        """Begin serving (uvicorn installs no signal handlers off the main thread)."""
        self._thread.start()

    def stop(self) -> None:
        """Finish in-flight requests and stop."""
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        self._sock.close()
