"""The app `serve` runs: the gateway, the live answer sampler and, unless turned off, the
watch plane's evaluator.

The two planes meet here rather than in the gateway, so the data plane never imports the
watch plane (data flows adapters -> gateway -> telemetry -> watch).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

WATCH_ENV = "QG_SERVE_WATCH"


def build(
    settings: Any,
    *,
    watch: bool,
    config_dir: Path | None = None,
    config_path: Path | None = None,
    server_process: bool = False,
) -> Any:
    """The gateway app for `settings`, with the evaluator as a background service
    (`config_dir` resolves the golden probes' relative dataset path; `config_path` is the
    file the routine checks' runs read; `server_process`: the app owns this process, see
    `create_app`)."""
    from quality_gates.gateway._app import create_app
    from quality_gates.watch.embedded import sampling_background, watch_background

    services: list[Any] = [sampling_background]
    if settings.config.observability.opentelemetry.enabled:
        from quality_gates.exports._genai_export import genai_background

        services.append(genai_background)
    if watch:
        from quality_gates.exports import exporters_for

        services.append(
            functools.partial(
                watch_background,
                config_dir=config_dir,
                config_path=config_path,
                exporters=exporters_for,
            )
        )
    return create_app(settings, services=services, server_process=server_process)


def app_from_env() -> Any:
    """The app of one worker process of `serve --workers N` (an ASGI factory)."""
    from quality_gates.gateway._app import SETTINGS_ENV, settings_from_env

    config_path = Path(os.environ[SETTINGS_ENV["config"]])
    return build(
        settings_from_env(),
        watch=os.environ.get(WATCH_ENV, "1") == "1",
        config_dir=config_path.parent,
        config_path=config_path,
        server_process=True,
    )
