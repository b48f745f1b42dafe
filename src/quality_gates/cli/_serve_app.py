"""The app `serve` runs: the gateway and, unless turned off, the watch plane's evaluator.

The two planes meet here rather than in the gateway, so the data plane never imports the
watch plane (data flows adapters -> gateway -> telemetry -> watch).
"""

from __future__ import annotations

import os
from typing import Any

WATCH_ENV = "QG_SERVE_WATCH"


def build(settings: Any, *, watch: bool) -> Any:
    """The gateway app for `settings`, with the evaluator as a background service."""
    from quality_gates.gateway._app import create_app

    if not watch:
        return create_app(settings)
    from quality_gates.watch.embedded import watch_background

    return create_app(settings, services=[watch_background])


def app_from_env() -> Any:
    """The app of one worker process of `serve --workers N` (an ASGI factory)."""
    from quality_gates.gateway._app import settings_from_env

    return build(settings_from_env(), watch=os.environ.get(WATCH_ENV, "1") == "1")
