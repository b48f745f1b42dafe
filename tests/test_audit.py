"""The audit log's hash chain finds every edit, insertion and deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_gates.store import Connection, StoreURL, audit, open_store


@pytest.fixture
def conn(store_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    connection = open_store(StoreURL.parse(store_url, base_dir=tmp_path)).connect()
    for i in range(5):
        with connection.write():
            audit.append(
                connection,
                actor="alice",
                action="alias.set",
                target=f"t{i}",
                details={"i": i, "reason": "because"},
            )
    yield connection
    connection.close()


def test_intact_chain_verifies(conn: Connection) -> None:
    result = audit.verify(conn)
    assert result.ok
    assert (result.checked, result.head_seq) == (5, 5)


def test_entries_are_newest_first_and_filterable(conn: Connection) -> None:
    rows = audit.entries(conn, limit=3)
    assert [e.seq for e in rows] == [5, 4, 3]
    assert audit.entries(conn, target="t2")[0].details == {"i": 2, "reason": "because"}
    assert audit.entries(conn, action="workspace.") == []


def test_edited_entry_is_named(conn: Connection) -> None:
    conn.execute("UPDATE audit_log SET details = :d WHERE seq = 3", {"d": '{"i":99}'})
    result = audit.verify(conn)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "entry 3 edited" in (result.problem or "")


def test_deleted_entry_in_the_middle_is_named(conn: Connection) -> None:
    conn.execute("DELETE FROM audit_log WHERE seq = 2")
    result = audit.verify(conn)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "entries 2-2 deleted" in (result.problem or "")


def test_deleted_last_entry_is_found_through_the_head(conn: Connection) -> None:
    conn.execute("DELETE FROM audit_log WHERE seq = 5")
    result = audit.verify(conn)
    assert not result.ok
    assert "deleted from the end" in (result.problem or "")


def test_inserted_entry_is_found(conn: Connection) -> None:
    # Make room at seq 3 by renumbering, as a forger would, and insert a self-consistent row.
    conn.execute("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3")
    conn.execute("UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103")
    row = conn.one("SELECT hash FROM audit_log WHERE seq = 2")
    assert row is not None
    forged = audit.entry_hash(3, 1.0, "mallory", "alias.set", "x", "{}", row["hash"])
    conn.execute(
        "INSERT INTO audit_log VALUES (3, 1.0, 'mallory', 'alias.set', 'x', '{}', :prev, :hash)",
        {"prev": row["hash"], "hash": forged},
    )
    result = audit.verify(conn)
    assert not result.ok
    assert result.first_bad_seq == 4
    assert result.problem == "entries inserted before entry 4: it was entry 3 and was renumbered"


def test_forged_row_that_replaces_an_entry_is_found(conn: Connection) -> None:
    conn.execute(
        "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 2",
        {"h": audit.entry_hash(2, 0.0, "mallory", "alias.set", "t1", "{}", "0" * 64)},
    )
    result = audit.verify(conn)
    assert (result.ok, result.first_bad_seq) == (False, 2)
