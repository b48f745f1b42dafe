"""One name per thing on the command line: every command's options are walked, and a
concept spelled two ways (a new synonym) fails here. Old spellings live on as hidden
options, which this test allows."""

from __future__ import annotations

import click

from quality_gates.cli.app import cli

# Destinations whose visible spellings differ on purpose: each is a different concept that
# happens to share a Python name in two commands (performance --source telemetry|load vs
# failover --from PROVIDER; performance --target gateway|provider vs failover --to PROVIDER),
# or a short flag beside its long one.
DIFFERENT_CONCEPTS = {
    "source": {"--from", "--source"},
    "target": {"--to", "--target"},
}


def _visible_options() -> dict[str, dict[str, set[str]]]:
    """dest -> long spelling -> the commands that use it (hidden options left out)."""
    found: dict[str, dict[str, set[str]]] = {}

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
            return
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden or param.name is None:
                continue
            for spelling in [*param.opts, *param.secondary_opts]:
                if spelling.startswith("--") and not spelling.startswith("--no-"):
                    found.setdefault(param.name, {}).setdefault(spelling, set()).add(path)

    walk(cli, "")
    return found


def test_no_concept_has_two_visible_spellings() -> None:
    synonyms = {
        dest: spellings
        for dest, spellings in _visible_options().items()
        if len(spellings) > 1 and set(spellings) != DIFFERENT_CONCEPTS.get(dest)
    }
    assert synonyms == {}, f"one concept, several option names: {synonyms}"


def test_one_provider_is_always_named_with_provider() -> None:
    spellings = _visible_options()["provider"]
    assert set(spellings) == {"--provider"}, spellings
    assert "failback" in spellings["--provider"]


def test_failback_keeps_its_old_spelling_hidden(qg) -> None:  # type: ignore[no-untyped-def]
    result = qg("failback", "--help")
    assert "--provider" in result.out
    assert "--original-provider" not in result.out
    refused = qg("failback")
    assert refused.code == 2
    assert "failback needs --provider" in refused.err
