"""A thin DB-API layer over sqlite3 and psycopg with one SQL dialect for both.

SQL is written once with `:name` parameters; for PostgreSQL they become `%(name)s`.
`Connection.write()` opens a transaction that serialises writers: `BEGIN IMMEDIATE` on
SQLite; on PostgreSQL callers lock the rows they change (`Connection.for_update`).
Foreign errors become StoreError / ConflictError here and nowhere else.

A Connection outlives its socket: when the store drops it (PostgreSQL cut or restarted), the
statement fails with StoreUnavailable, the store is marked down once (see `_health`), and the
next statement reconnects, with backoff, so a long-lived holder (the watch, the dashboard's
threads, the sampler, the control watcher) never keeps a dead connection.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from quality_gates.errors import ConflictError, StoreError, StoreUnavailable, UsageError
from quality_gates.store._health import StoreHealth, health_of

Row = dict[str, Any]
Params = Mapping[str, Any] | None
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5
# A silently dropped peer (no RST) is noticed by TCP keepalives and the user timeout within
# about 10 s instead of the kernel's two hours.
PG_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}
# SQLite errors that mean the file cannot be reached at all, as opposed to a busy lock or a
# constraint: the connection is reopened after them.
_SQLITE_LOST = ("unable to open database", "disk i/o error")


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: `sqlite:///path` or `postgresql://user@host:port/db?schema=s`."""

    raw: str
    dialect: str
    path: Path | None = None
    conninfo: str | None = None
    schema: str | None = None

    @classmethod
    def parse(cls, url: str, *, base_dir: Path | None = None) -> StoreURL:
        """Parse `url`; a relative SQLite path is read from `base_dir`."""
        scheme, _, rest = url.partition("://")
        scheme = scheme.lower()
        if scheme == "sqlite":
            if not rest.startswith("/") or rest == "/":
                raise UsageError(
                    f"{url!r}: a SQLite URL is sqlite:///relative.db or sqlite:////absolute/path.db"
                )
            path = Path(unquote(rest[1:].split("?")[0])).expanduser()
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            return cls(raw=url, dialect="sqlite", path=path)
        if scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
            parts = urlsplit("postgresql://" + rest)
            query = parse_qs(parts.query)
            schema = query.pop("schema", [None])[0]
            if schema and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
                raise UsageError(f"{url!r}: schema {schema!r} is not a plain identifier")
            remaining = "&".join(f"{k}={v}" for k, vs in query.items() for v in vs)
            conninfo = parts._replace(query=remaining).geturl()
            return cls(raw=url, dialect="postgresql", conninfo=conninfo, schema=schema)
        raise UsageError(
            f"{url!r}: unsupported store URL; use sqlite:///path.db or postgresql://user@host/db"
        )

    @property
    def display(self) -> str:
        """The URL without a password, for output."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", self.conninfo or "") + (
            f" (schema {self.schema})" if self.schema else ""
        )

    def sqlalchemy_url(self) -> str:
        """The same database as a SQLAlchemy URL, for alembic."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        return "postgresql+psycopg://" + (self.conninfo or "").split("://", 1)[1]


def _translate(exc: Exception, sql: str) -> Exception:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if isinstance(exc, sqlite3.IntegrityError) or name in ("IntegrityError", "UniqueViolation"):
        return ConflictError(f"the store refused a duplicate or inconsistent change: {text}")
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the store is busy (another writer held it for {SQLITE_BUSY_TIMEOUT_S:.0f} s): {text}"
        )
    if name in ("SerializationFailure", "DeadlockDetected", "LockNotAvailable"):
        return ConflictError(f"a concurrent change won: {text}")
    return StoreError(f"store error: {text}")


class Connection:
    """One database connection; not shared between threads."""

    def __init__(
        self,
        url: StoreURL,
        raw: Any,
        *,
        reopen: Callable[[], Any] | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self.url = url
        self.dialect = url.dialect
        self._raw = raw
        self._reopen = reopen
        self._health = health
        self._epoch = health.outages if health is not None else 0
        self._broken = False
        self._in_tx = False
        self._sql_cache: dict[str, str] = {}

    @property
    def is_sqlite(self) -> bool:
        """True on SQLite."""
        return self.dialect == "sqlite"

    @property
    def for_update(self) -> str:
        """` FOR UPDATE` on PostgreSQL (row locks); empty on SQLite (the write lock suffices)."""
        return "" if self.is_sqlite else " FOR UPDATE"

    def _sql(self, sql: str) -> str:
        if self.is_sqlite:
            return sql
        cached = self._sql_cache.get(sql)
        if cached is None:
            cached = _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
            self._sql_cache[sql] = cached
        return cached

    def execute(self, sql: str, params: Params = None) -> list[Row]:
        """Run one statement; rows (as dicts) if it returns any."""
        if self._broken and not self._in_tx:
            self._reconnect()
        try:
            return self._execute(sql, params)
        except StoreUnavailable:
            if not self._stale() or self._in_tx:
                raise
        # The connection predates an outage that is already over: reconnect and run the
        # statement once more (outside a transaction nothing was half done).
        self._reconnect()
        return self._execute(sql, params)

    def _execute(self, sql: str, params: Params) -> list[Row]:
        try:
            cursor = self._raw.execute(self._sql(sql), dict(params or {}))
            if cursor.description is None:
                return []
            if self.is_sqlite:
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            return list(cursor.fetchall())
        except (StoreError, UsageError):
            raise
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            raise self._failed(exc, sql) from exc

    def _failed(self, exc: Exception, sql: str) -> Exception:
        """Translate `exc`; when it means the connection is gone, mark it for reopening and
        the store down (unless the connection merely predates an outage already over)."""
        if not self._is_lost(exc):
            return _translate(exc, sql)
        self._broken = True
        reason = _first_line(exc)
        if self._health is not None and not self._stale():
            self._health.lost(reason)
        return StoreUnavailable(f"the store is unreachable: {reason}")

    def _is_lost(self, exc: Exception) -> bool:
        if self.is_sqlite:
            return isinstance(exc, sqlite3.OperationalError) and any(
                marker in str(exc).lower() for marker in _SQLITE_LOST
            )
        return bool(getattr(self._raw, "closed", False) or getattr(self._raw, "broken", False))

    def _stale(self) -> bool:
        # Opened before the last outage began, and that outage is over.
        health = self._health
        return health is not None and health.up and self._epoch < health.outages

    def _reconnect(self) -> None:
        if self._reopen is None:
            raise StoreUnavailable("the store connection was lost and cannot be reopened")
        old, self._raw = self._raw, None
        with suppress(Exception):
            old.close()
        self._raw = self._reopen()
        self._broken = False
        self._epoch = self._health.outages if self._health is not None else 0
        self._sql_cache.clear()

    @property
    def healthy(self) -> bool:
        """False once the connection was lost (the next statement reconnects)."""
        return not self._broken

    def one(self, sql: str, params: Params = None) -> Row | None:
        """The first row, or None."""
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params = None) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return next(iter(row.values())) if row else None

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run one statement for many parameter sets."""
        if self._broken and not self._in_tx:
            self._reconnect()
        try:
            if self.is_sqlite:
                self._raw.executemany(sql, [dict(r) for r in rows])
            else:
                with self._raw.cursor() as cursor:
                    cursor.executemany(self._sql(sql), [dict(r) for r in rows])
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            raise self._failed(exc, sql) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any error."""
        if self._in_tx:
            yield self
            return
        if self._broken or self._stale():
            # A transaction cannot be replayed, so a connection that may have died in an
            # outage already over is replaced before it starts.
            self._reconnect()
        self._in_tx = True
        try:
            if self.is_sqlite:
                self.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    with suppress(sqlite3.Error):
                        self._raw.execute("ROLLBACK")
                    raise
                self.execute("COMMIT")
            else:
                try:
                    with self._raw.transaction():
                        yield self
                except Exception as exc:
                    if _is_db_error(exc):
                        raise self._failed(exc, "COMMIT") from exc
                    raise
        finally:
            self._in_tx = False

    def close(self) -> None:
        """Close the connection."""
        if self._raw is None:
            return
        try:
            self._raw.close()
        except Exception:
            pass

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_db_error(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    module = type(exc).__module__
    return module.startswith("psycopg")


class Database:
    """A store reached by URL; hands out connections (one per thread or task)."""

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self._local = threading.local()
        self.health = health_of(url.raw, url.display)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.url.dialect

    def connect(self) -> Connection:
        """A new connection with the store's settings applied; it reopens itself after the
        store drops it."""
        return Connection(self.url, self._open_raw(), reopen=self._open_raw, health=self.health)

    def _open_raw(self) -> Any:
        health = self.health
        if not health.may_connect():
            raise StoreUnavailable(
                f"the store is unreachable ({health.reason}); "
                f"next reconnect in {health.retry_in():.1f} s"
            )
        try:
            if self.url.dialect == "sqlite":
                raw = _connect_sqlite(self.url)
            else:
                raw = _connect_postgres(self.url)
        except StoreError as exc:
            health.lost(str(exc))
            raise StoreUnavailable(str(exc)) from exc
        health.back()
        return raw

    def shared(self) -> Connection:
        """This thread's long-lived connection (opened on first use)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
        return conn

    def close_shared(self) -> None:
        """Close this thread's long-lived connection, if any."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _connect_sqlite(url: StoreURL) -> Any:
    path = url.path
    if path is None:
        raise StoreError("SQLite URL without a path")
    try:
        if not path.exists():
            create_private(path)
        raw = sqlite3.connect(
            str(path),
            timeout=SQLITE_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open the SQLite store {path}: {exc}") from exc
    return raw


def create_private(path: Path) -> None:
    """Create an empty SQLite file readable by its owner only (0600; its folder 0700 when new):
    it holds the web session secret and the API key hashes. SQLite gives the -wal and -shm
    files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def make_private(path: Path) -> list[Path]:
    """Set an existing SQLite store and its -wal and -shm files to 0600 (for `migrate` on a
    store an older version created 0644); returns the files changed."""
    changed = []
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            if candidate.stat().st_mode & 0o077:
                candidate.chmod(0o600)
                changed.append(candidate)
    return changed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect_postgres(url: StoreURL) -> Any:
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:
        raise StoreError(
            "PostgreSQL needs psycopg: pip install 'quality-gates[postgres]'"
        ) from None
    options: dict[str, Any] = {
        "autocommit": True,
        "row_factory": dict_row,
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        **PG_KEEPALIVE,
    }
    if url.schema:
        options["options"] = f"-csearch_path={url.schema}"
    try:
        return psycopg.connect(url.conninfo or "", **options)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach PostgreSQL at {url.display}: {_first_line(exc)}") from exc


def in_clause(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`(:p0, :p1, ...)` and its parameters, for `IN` lists."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(f":{n}" for n in names) + ")", dict(zip(names, values, strict=True))
