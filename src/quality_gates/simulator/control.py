"""Talking to a running simulator's `/_sim/` endpoints from synchronous code (the CLI,
status, scripts, tests), over urllib: no event loop needed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from quality_gates.config._simulator import ERROR_RATE_FIELDS
from quality_gates.errors import ConnectionFailed, UsageError

if TYPE_CHECKING:
    from quality_gates.config import Provider

TIMEOUT = 5.0


def _call(base_url: str, path: str, method: str, body: Any, provider: str) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            message = exc.reason
        raise UsageError(f"simulator {provider!r} refused the change: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionFailed(
            f"simulator {provider!r} at {base_url} is not reachable ({reason})",
            provider=provider,
            hint="start it with `quality-gates simulate`",
        ) from None


def get_json(base_url: str, path: str, *, provider: str) -> dict[str, Any]:
    """GET a control endpoint, e.g. `/_sim/faults`."""
    return _call(base_url, path, "GET", None, provider)


def put_faults(base_url: str, changes: dict[str, Any], *, provider: str) -> dict[str, Any]:
    """PUT /_sim/faults; returns the simulator's behaviour after the change."""
    return _call(base_url, "/_sim/faults", "PUT", changes, provider)


def put_answers(
    base_url: str, items: list[dict[str, Any]], *, provider: str, replace: bool = False
) -> dict[str, Any]:
    """PUT /_sim/answers: register answer-key items (`input`, `expected`)."""
    return _call(base_url, "/_sim/answers", "PUT", {"items": items, "replace": replace}, provider)


def simulator_status(providers: Iterable[Provider], timeout: float = 1.0) -> list[dict[str, Any]]:
    """Each `kind: simulator` provider: running or not, and its live profile, outage and
    error rates (for `status` and the dashboard: a drill in progress shows here)."""
    rows = []
    for provider in providers:
        if provider.kind != "simulator":
            continue
        row: dict[str, Any] = {
            "provider": provider.name,
            "protocol": provider.wire_protocol,
            "base_url": provider.base_url,
            "running": False,
        }
        try:
            request = urllib.request.Request(provider.base_url + "/_sim/faults")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                live = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            row["detail"] = str(getattr(exc, "reason", exc))
        else:
            faults = live.get("faults", {})
            row.update(
                running=True,
                profile=live.get("profile"),
                seed=live.get("seed"),
                outage=faults.get("outage"),
                error_rate=sum(float(faults.get(k) or 0) for k in ERROR_RATE_FIELDS),
                latency_p95_ms=faults.get("latency_p95_ms"),
                model_overrides=sorted(faults.get("models") or {}),
            )
        rows.append(row)
    return rows
