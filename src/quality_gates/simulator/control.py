"""Talking to a running simulator's `/_sim/` endpoints from synchronous code (the CLI,
scripts, tests). Standard library only, so the CLI stays quick to start."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from quality_gates.errors import ConnectionFailed, UsageError

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
