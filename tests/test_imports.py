"""Start-up stays light: heavy libraries load only in the commands that need them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Workspace

HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiohttp",
    "scipy",
    "numpy",
    "pydantic",
    "uvicorn",
    "starlette",
    "matplotlib",
    "psycopg",
)

PROBE = """
import json, sys
from quality_gates.cli.app import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_modules(*args: str, cwd: Path) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], {m.split(".")[0] for m in report["modules"]}


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code, modules = loaded_modules("--help", cwd=tmp_path)
    assert code == 0
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_status_on_an_unchanged_config_imports_nothing_heavy(sqlite_workspace: Workspace) -> None:
    args = sqlite_workspace.cli_args()
    code, modules = loaded_modules(*args, "status", cwd=sqlite_workspace.root)
    assert code == 0
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_every_public_config_name_resolves() -> None:
    import quality_gates.config as config

    for name in config.__all__:
        assert getattr(config, name) is not None


def test_each_lazy_config_name_comes_from_exactly_one_module() -> None:
    import quality_gates.config as config

    names = [name for names in config._LAZY.values() for name in names]
    assert len(names) == len(set(names))
    for module, exported in config._LAZY.items():
        for name in exported:
            source = getattr(config, name)
            origin = getattr(source, "__module__", None)
            assert origin is None or origin.endswith(module) or not callable(source), name
