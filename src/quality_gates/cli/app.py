"""The `quality-gates` command: global options, the command families, and one error handler.

Command modules import only click at module level; everything heavy is imported inside the
command that needs it, so `--help` and `status` start fast (tests/test_imports.py guards it).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from quality_gates.cli._context import CliContext

HELP = """Gate what ships, watch what runs, fail over and roll back LLM services.

\b
Config: --config FILE, else $QG_CONFIG, else ./quality-gates.yaml (`quality-gates init`).
Exit codes: 0 pass/healthy/APPROVE, 1 failed/REJECT/unhealthy, 2 usage or config error,
            3 CONDITIONAL, 4 could not complete (store or provider unreachable).
"""

# Each module adds one command family with `register(group)`.
COMMAND_MODULES = (
    "init_cmd",
    "status_cmd",
    "registry_cmd",
    "config_cmd",
    "audit_cmd",
    "store_cmd",
    "simulate_cmd",
    "validate_cmd",
    "gates_cmd",
    "canary_cmd",
    "pipeline_cmd",
    "serve_cmd",
    "keys_cmd",
    "failover_cmd",
    "watch_cmd",
    "incident_cmd",
    "silence_cmd",
    "rules_cmd",
    "dashboard_cmd",
    "dashboards_cmd",
    "emergency_cmd",
    "monitor_cmd",
    "routines_cmd",
    "report_cmd",
    "drill_cmd",
)


@click.group(
    help=HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (default: $QG_CONFIG or ./quality-gates.yaml).",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Store URL: sqlite:///path.db or postgresql://... (default: $QG_DATABASE_URL, "
    "the config's store.url, or .quality-gates/state.db).",
)
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--verbose", "-v", count=True, help="More detail; -v shows tracebacks.")
@click.version_option(package_name="quality-gates", prog_name="quality-gates")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    db_url: str | None,
    json_output: bool,
    verbose: int,
) -> None:
    ctx.obj = CliContext(config_path=config_path, db_url=db_url, json=json_output, verbose=verbose)
    ctx.call_on_close(ctx.obj.close)


for _name in COMMAND_MODULES:
    importlib.import_module(f"quality_gates.cli.{_name}").register(cli)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(args: list[str]) -> int:
    """Run one command line; every failure becomes one line on stderr and an exit code."""
    from quality_gates.errors import EXIT_INCOMPLETE, EXIT_USAGE, ConfigError, QualityGatesError

    verbose = any(a in ("-v", "-vv", "--verbose") for a in args)
    code = 0
    try:
        result = cli.main(args=args, prog_name="quality-gates", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        from quality_gates.cli._output import error

        error("aborted")
        code = 130
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code if exc.exit_code else EXIT_USAGE
    except QualityGatesError as exc:
        from quality_gates.cli._output import err_console, error

        if isinstance(exc, ConfigError) and exc.problems:
            for line in exc.problems:
                error(line)
        else:
            error(str(exc))
        if verbose:
            err_console().print_exception()
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:
        from quality_gates.cli._output import err_console, error

        error(
            f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback; "
            "please report it)"
        )
        if verbose:
            err_console().print_exception()
        code = EXIT_INCOMPLETE
    return code
