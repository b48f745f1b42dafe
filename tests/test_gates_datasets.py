"""Datasets: four formats, streamed, and one clear error for every kind of bad file."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from quality_gates.gates.datasets import (
    DatasetError,
    builtin_dataset,
    count_items,
    locate,
    read_items,
)


def _items(path: Path) -> list:  # type: ignore[type-arg]
    return list(read_items(locate(path)))


def test_jsonl_items_with_chat_input_and_ideal_alias(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"id": "a", "input": "2+2?", "expected": "4"}\n\n'
        '{"input": [{"role": "system", "content": "be brief"}, {"role": "user", '
        '"content": "capital of France?"}], "ideal": "Paris", "metadata": {"k": 1}}\n'
    )
    first, second = _items(path)
    assert first.id == "a"
    assert first.prompt == "2+2?"
    assert second.id == "#2"
    assert second.expected == "Paris"
    assert [m.role for m in second.messages] == ["system", "user"]
    assert second.metadata == {"k": 1}


def test_json_array_is_streamed_and_object_form_is_read(tmp_path: Path) -> None:
    items = [{"id": str(i), "input": f"q{i}", "expected": "x"} for i in range(3000)]
    array = tmp_path / "a.json"
    array.write_text(json.dumps(items, indent=2))
    assert count_items(locate(array)) == 3000
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"name": "set", "items": items[:5]}))
    assert count_items(locate(wrapped)) == 5


def test_csv_with_assertions_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        'id,input,expected,assertions,topic\n1,"Say hi","hi","[{""type"": ""contains""}]",greet\n'
    )
    (item,) = _items(path)
    assert item.assertions == ({"type": "contains"},)
    assert item.metadata == {"topic": "greet"}


def test_yaml_list_and_error_line(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("- id: a\n  input: hello\n  expected: hi\n- id: b\n  expected: hi\n")
    with pytest.raises(DatasetError, match=r"d\.yaml:4: item 2 has no 'input'"):
        _items(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", "has no items"),
        ("blank.json", b"   \n", "has no items"),
        ("latin1.jsonl", '{"input": "café", "expected": "x"}\n'.encode("latin-1"), "not UTF-8"),
        ("broken.jsonl", b'{"input": "a", "expected": "b"}\n{"input": \n', r"broken\.jsonl:2"),
        ("noexp.jsonl", b'{"input": "a"}\n', "neither 'expected'"),
        (
            "dup.jsonl",
            b'{"id":1,"input":"a","expected":"b"}\n{"id":1,"input":"c","expected":"d"}\n',
            "duplicate id '1'",
        ),
        ("open.json", b'[{"input": "a", "expected": "b"}', "not closed"),
        (
            "role.jsonl",
            b'{"input": [{"role": "bot", "content": "x"}], "expected": "y"}\n',
            "role 'bot'",
        ),
        ("nocol.csv", b"question,answer\nq,a\n", "no 'input' column"),
        ("bad.yaml", b"- id: [\n", "not valid YAML"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, name: str, content: bytes, message: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        _items(path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        locate(tmp_path / "d.txt")
    with pytest.raises(DatasetError, match="not found"):
        locate(tmp_path / "nope.jsonl")


def test_a_missing_relative_dataset_names_every_place_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, elsewhere = tmp_path / "project", tmp_path / "cwd"
    base.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(DatasetError) as caught:
        locate("datasets/eval.jsonl", base=base)
    message = str(caught.value)
    assert str(elsewhere / "datasets" / "eval.jsonl") in message
    assert str(base / "datasets" / "eval.jsonl") in message
    (base / "datasets").mkdir()
    (base / "datasets" / "eval.jsonl").write_text('{"input": "hi", "expected": "hello"}\n')
    assert locate("datasets/eval.jsonl", base=base).path == base / "datasets" / "eval.jsonl"


def test_large_jsonl_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    filler = "x" * 900
    with path.open("w") as handle:
        for i in range(60_000):  # ~55 MB
            handle.write(json.dumps({"id": i, "input": f"{i} {filler}", "expected": "y"}) + "\n")
    tracemalloc.start()
    try:
        assert count_items(locate(path)) == 60_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MB"


def test_builtin_dataset_is_valid_and_limit_applies() -> None:
    source = locate(None)
    assert source.builtin
    assert source.path == builtin_dataset()
    assert count_items(source) >= 40
    assert count_items(source, limit=5) == 5
