"""Local notification receivers (Slack-, PagerDuty- and webhook-shaped) on a loopback port."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Receiver:
    """Records what arrives per path; answers `fail_status` while `fail_until` is ahead."""

    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rejected: int = 0
    fail_status: int = 500
    fail_until: float = 0.0
    keys: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None
    base: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if time.monotonic() < self.fail_until:
            self.rejected += 1
            return web.json_response({"status": "error"}, status=self.fail_status)
        self.keys.append(request.headers.get("Idempotency-Key", ""))
        self.received.setdefault(request.path, []).append(body)
        if request.path.startswith("/pagerduty"):
            return web.json_response(
                {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": body.get("dedup_key"),
                },
                status=202,
            )
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def on(self, path: str) -> list[dict[str, Any]]:
        return self.received.get(path, [])
