"""`config set` keeps comments and writes nothing that would not validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_gates.config import flatten, get_value, render_starter, set_value
from quality_gates.errors import ConfigError, UsageError


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "quality-gates.yaml"
    path.write_text(render_starter("edit"), encoding="utf-8")
    return path


def test_set_changes_one_value_and_keeps_comments(config_file: Path) -> None:
    old, new, loaded = set_value(config_file, "environments.production.routing", "latency")
    assert (old, new) == ("weighted", "latency")
    assert loaded.config.environments["production"].routing == "latency"
    text = config_file.read_text()
    assert "# The runbook's key metrics; gates and alerts compare against these." in text
    assert "routing: latency" in text


def test_set_addresses_list_items_by_name(config_file: Path) -> None:
    set_value(config_file, "providers.google.profile", "degraded")
    set_value(config_file, "models.claude-3-haiku.price.input_per_1k", "0.001")
    text = config_file.read_text()
    assert "profile: degraded" in text
    assert "input_per_1k: 0.001" in text


def test_set_that_would_break_the_config_writes_nothing(config_file: Path) -> None:
    before = config_file.read_bytes()
    with pytest.raises(ConfigError) as caught:
        set_value(config_file, "environments.production.thresholds.error_rate", "250%")
    assert "nothing written" in caught.value.problems[0]
    assert config_file.read_bytes() == before


def test_set_unknown_item_lists_the_items(config_file: Path) -> None:
    with pytest.raises(UsageError, match="items: bedrock, google, meta"):
        set_value(config_file, "providers.azure.profile", "healthy")


def test_get_and_flatten_read_effective_values() -> None:
    data = {"providers": [{"name": "a", "port": 1}], "x": {"y": 2}}
    assert get_value(data, "providers.a.port") == 1
    assert dict(flatten(data)) == {"providers.a.name": "a", "providers.a.port": 1, "x.y": 2}


ROUTING_COMMENT = "# weighted | priority | latency (fastest healthy P95)"


def _changed_lines(before: str, after: str) -> list[str]:
    import difflib

    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("environments.production.routing", "latency", [
            f"-    routing: weighted            {ROUTING_COMMENT}",
            f"+    routing: latency            {ROUTING_COMMENT}",
        ]),
        ("providers.google.profile", "degraded", None),
        ("models.claude-3-haiku.price.input_per_1k", "0.001", None),
        ("gates.alpha", "0.01", None),
        ("gateway.cache.serve", "always", None),
        ("environments.staging.thresholds.error_rate", "3%", None),
    ],
)  # fmt: skip
def test_set_changes_only_the_lines_it_edits(
    config_file: Path, key: str, value: str, expected: list[str] | None
) -> None:
    """Byte-identical elsewhere: the README tour's edit used to re-indent ~100 lines."""
    before = config_file.read_text()
    set_value(config_file, key, value)
    after = config_file.read_text()
    changed = _changed_lines(before, after)
    removed = [c for c in changed if c.startswith("-")]
    added = [c for c in changed if c.startswith("+")]
    assert len(removed) <= 1, changed
    assert len(added) == 1, changed
    if expected is not None:
        assert changed == expected
    assert before.count("\n") - len(removed) + len(added) == after.count("\n")
