"""The watch plane's rooms import one way (docs/architecture.md).

Every import counts, at the top of a module, inside a function or under TYPE_CHECKING: a
reverse edge is a cycle in the design even when Python never runs it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "quality_gates"

# Which rooms each room may import; the command line may import them all, none imports it.
ALLOWED: dict[str, set[str]] = {
    "signals": set(),
    "notify": set(),
    "alerts": {"signals"},
    "routines": {"alerts"},
    "incidents": {"notify", "alerts", "signals"},
    "remediation": {"incidents", "alerts", "signals"},
    "watch": {"signals", "alerts", "notify", "incidents", "routines", "remediation"},
    "exports": {"watch", "signals", "alerts", "incidents"},
}
ROOMS = set(ALLOWED)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module `path` imports, relative imports resolved."""
    package = path.relative_to(PACKAGE.parent).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            yield node.lineno, module
            for alias in node.names:  # `from quality_gates import incidents` names a room
                yield node.lineno, f"{module}.{alias.name}"


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "quality_gates" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS | {"cli"} else None


def edges(room: str) -> Iterator[tuple[str, str]]:
    """(where, imported room) for each import from `room` into another room."""
    for path in sorted((PACKAGE / room).rglob("*.py")):
        seen: set[tuple[int, str]] = set()
        for line, module in imported_modules(path):
            target = room_of(module)
            if target is not None and target != room and (line, target) not in seen:
                seen.add((line, target))
                yield f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}", target


def reverse_edges(room: str) -> list[str]:
    return [where for where, target in edges(room) if target not in ALLOWED[room]]


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_every_room_is_a_package_under_quality_gates() -> None:
    assert {room for room in ROOMS if (PACKAGE / room / "__init__.py").is_file()} == ROOMS


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_a_room_imports_only_the_rooms_below_it(room: str) -> None:
    assert reverse_edges(room) == [], f"{room} may import only {sorted(ALLOWED[room])}"


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_no_room_imports_the_command_line(room: str) -> None:
    assert [where for where, target in edges(room) if target == "cli"] == []


def test_the_rooms_form_no_cycle() -> None:
    assert cycle(ALLOWED) is None
    actual = {room: {target for _, target in edges(room)} for room in ROOMS}
    assert cycle(actual) is None


def test_no_room_but_the_command_line_imports_exports() -> None:
    assert [room for room, allowed in ALLOWED.items() if "exports" in allowed] == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycle({"watch": {"incidents"}, "incidents": {"notify"}, "notify": set()}) is None
    found = cycle({"watch": {"incidents"}, "incidents": {"notify"}, "notify": {"watch"}})
    assert found == ["incidents", "notify", "watch", "incidents"]


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_says_what_it_owns_and_may_import(room: str) -> None:
    init = PACKAGE / room / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    modules = sorted(p.stem for p in (PACKAGE / room).glob("*.py") if p.stem != "__init__")
    assert [m for m in modules if f"`{m}" not in doc] == [], f"{init} names each module"
    assert "may import" in doc.lower(), f"{init} says what the room may import"


def test_the_architecture_note_lists_every_room() -> None:
    note = (PACKAGE.parent.parent / "docs" / "architecture.md").read_text()
    assert [room for room in sorted(ROOMS) if f"\n{room}/ " not in note] == []
