"""Did the running gateways pick up an edit of the config file? `config set` asks each live
gateway (from the heartbeats) for the digest of the config it has in force (`/healthz`),
for a few seconds, and reports who has the new file, who refused it and who did not answer.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from quality_gates.store.db import Connection

WAIT_S = 3.0  # gateways check the file once a second
HEARTBEAT_FRESH_S = 15.0


@dataclass
class Pickup:
    """Per live gateway, whether it serves with the new config."""

    picked: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    waited_s: float = 0.0

    @property
    def gateways(self) -> int:
        """Live gateways asked."""
        return len(self.picked) + len(self.refused) + len(self.pending)

    def line(self) -> str:
        """One line for the command's output."""
        if not self.gateways:
            return "no gateway is running: the file applies when one starts"
        text = f"running gateways: {len(self.picked)} of {self.gateways} picked it up"
        if not self.refused and not self.pending:
            return text + f" (within {self.waited_s:.1f} s)"
        for where, why in self.refused.items():
            text += f"; {where} refused the file: {why}"
        if self.pending:
            text += (
                f"; {', '.join(self.pending)} still serve the previous config after "
                f"{WAIT_S:g} s (another config file, or no live reload: restart them)"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "picked_up": self.picked,
            "refused": self.refused,
            "pending": self.pending,
            "waited_s": round(self.waited_s, 2),
        }


def _health(listen: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{listen.rstrip('/')}/healthz", timeout=1.0) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_for_pickup(conn: Connection, digest: str, *, wait_s: float = WAIT_S) -> Pickup:
    """Ask every gateway with a fresh heartbeat until each has `digest` or `wait_s` passed."""
    started = time.monotonic()
    rows = conn.execute(
        "SELECT listen FROM gateway_instances WHERE heartbeat_at >= :t",
        {"t": time.time() - HEARTBEAT_FRESH_S},
    )
    waiting = sorted({str(r["listen"]) for r in rows if r["listen"]})
    result = Pickup()
    while waiting:
        for listen in list(waiting):
            health = _health(listen)
            if health is None:
                continue
            if health.get("config_digest") == digest:
                result.picked.append(listen)
                waiting.remove(listen)
            elif health.get("config_refused"):
                result.refused[listen] = str(health["config_refused"])
                waiting.remove(listen)
        if not waiting or time.monotonic() - started >= wait_s:
            break
        time.sleep(0.2)
    result.pending = waiting
    result.waited_s = time.monotonic() - started
    return result
