"""`init`: write a commented starter config and create the store; `migrate`: upgrade it."""

from __future__ import annotations

from pathlib import Path

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option


def register(group: click.Group) -> None:
    """Add `init` and `migrate`."""
    group.add_command(init)
    group.add_command(migrate)


@click.command()
@click.option(
    "--dir",
    "-d",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to set up.",
)
@click.option("--project", help="Project name (default: the folder's name).")
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
@json_option
@click.pass_context
def init(
    ctx: click.Context, directory: Path, project: str | None, force: bool, json_output: bool
) -> None:
    """Write quality-gates.yaml (simulated providers, the runbook's thresholds) and the store."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.config import CONFIG_NAMES, parse_config_text, render_starter
    from quality_gates.errors import UsageError
    from quality_gates.store import audit

    state = _context.state(ctx)
    directory = directory.expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIG_NAMES[0]
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    # The simulators answer the dataset `init` writes, so `offline` on a healthy simulator
    # measures ~97% accuracy rather than the 0% of answers that know nothing of it.
    text = render_starter(project or _project_name(directory), answer_key=DATASET)
    parse_config_text(text, str(target))  # the starter must always validate
    target.write_text(text, encoding="utf-8")
    target.chmod(0o640)
    dataset = _write_dataset(directory, force=force)
    state.config_path = target
    conn = state.conn()
    with conn.write():
        audit.append(
            conn,
            actor=_context.actor(None).name,
            action="workspace.init",
            target=str(target),
            details={"force": force},
        )
    url = state.store_url()
    if _context.wants_json(ctx, json_output):
        emit_json({"config": str(target), "store": url.display, "dataset": str(dataset)})
        return
    out = console()
    out.print(f"Wrote {target}")
    out.print(f"Wrote {dataset} (evaluation items for `quality-gates offline`)")
    out.print(f"Store ready at {url.display}")
    out.print(
        "Next: `quality-gates status` shows the registry; "
        "`quality-gates config validate` checks the config."
    )


DATASET = "datasets/eval.jsonl"


def _write_dataset(directory: Path, *, force: bool) -> Path:
    """A copy of the built-in evaluation dataset, for the user to extend."""
    import shutil

    from quality_gates.gates.datasets import builtin_dataset

    target = directory / DATASET
    if force or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(builtin_dataset(), target)
    return target


def _project_name(directory: Path) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in directory.name.strip())
    return name.strip("-_") or "ai-service"  # `.demo` is project `demo`


@click.command()
@json_option
@click.pass_context
def migrate(ctx: click.Context, json_output: bool) -> None:
    """Apply pending schema migrations to the store."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.store import schema_state, upgrade

    state = _context.state(ctx)
    url = state.store_url()
    conn = state.conn(require_current=False)
    before = schema_state(conn)
    applied = upgrade(url) if before.kind in ("empty", "behind") else []
    if url.path is not None:  # a store an older version created world-readable
        from quality_gates.store.db import make_private

        make_private(url.path)
    after = schema_state(conn)
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "store": url.display,
                "applied": applied,
                "state": after.kind,
                "revisions": sorted(after.applied),
            }
        )
    elif applied:
        console().print(
            f"Applied {len(applied)} migration(s) to {url.display}: {', '.join(applied)}"
        )
    else:
        console().print(f"{url.display} is {after.kind} at {', '.join(sorted(after.applied))}")
    if after.kind != "current":
        raise click.exceptions.Exit(2)
