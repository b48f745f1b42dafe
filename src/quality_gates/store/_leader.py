"""Leader election on the store's `leases` table: one evaluator acts, the others stand by.

A lease is held for `ttl` seconds and renewed every cycle; when its holder dies, the lease
lapses and the next evaluator to try takes it. Taking or renewing is one transaction. A holder
on this host and in this PID namespace whose process is gone (a SIGKILL, an OOM kill) is not
waited out: the lease is taken at once. Elsewhere the lease's end is the bound.
"""

from __future__ import annotations

import os
import socket
import uuid

from quality_gates.errors import ConflictError
from quality_gates.store.db import Connection

WATCH_LEASE = "watch-evaluator"


def _pid_namespace() -> str:
    """This process's PID namespace (its inode), so that a PID is only judged where it
    means the same process; "-" where the system does not say."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def holder_id() -> str:
    """A name for this process that says where it runs: host, pid, PID namespace, a tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}:{uuid.uuid4().hex[:6]}"


def holder_is_gone(holder: str) -> bool:
    """Whether `holder` ran on this host in this PID namespace and its process is gone."""
    parts = holder.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or parts[2] != _pid_namespace():
        return False
    if parts[2] == "-" or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's process, say)
    return False


def acquire(conn: Connection, name: str, holder: str, ttl: float, now: float) -> bool:
    """Take or renew the lease; True when `holder` holds it until now + ttl."""
    try:
        with conn.write():
            row = conn.one(
                f"SELECT holder, expires_at FROM leases WHERE name = :name{conn.for_update}",
                {"name": name},
            )
            if row is None:
                inserted = conn.one(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (:name, :holder, :until) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name",
                    {"name": name, "holder": holder, "until": now + ttl},
                )
                return inserted is not None
            if (
                row["holder"] != holder
                and float(row["expires_at"]) > now
                and not holder_is_gone(str(row["holder"]))
            ):
                return False
            conn.execute(
                "UPDATE leases SET holder = :holder, expires_at = :until WHERE name = :name",
                {"name": name, "holder": holder, "until": now + ttl},
            )
            return True
    except ConflictError:
        return False


def release(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up (on a clean shutdown) so a standby takes over at once."""
    with conn.write():
        conn.execute(
            "DELETE FROM leases WHERE name = :name AND holder = :holder",
            {"name": name, "holder": holder},
        )


def current_holder(conn: Connection, name: str, now: float) -> str | None:
    """Who holds the lease now, if anyone."""
    row = conn.one("SELECT holder, expires_at FROM leases WHERE name = :name", {"name": name})
    if row is None or float(row["expires_at"]) <= now:
        return None
    return str(row["holder"])
