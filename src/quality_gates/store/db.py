"""A thin DB-API layer over sqlite3 and psycopg with one SQL dialect for both.

SQL is written once with `:name` parameters; for PostgreSQL they become `%(name)s`.
`Connection.write()` opens a transaction that serialises writers: `BEGIN IMMEDIATE` on
SQLite; on PostgreSQL callers lock the rows they change (`Connection.for_update`).
Foreign errors become StoreError / ConflictError here and nowhere else.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from quality_gates.errors import ConflictError, StoreError, UsageError

Row = dict[str, Any]
Params = Mapping[str, Any] | None
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
SQLITE_BUSY_TIMEOUT_S = 30.0


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

    def __init__(self, url: StoreURL, raw: Any) -> None:
        self.url = url
        self.dialect = url.dialect
        self._raw = raw
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
            raise _translate(exc, sql) from exc

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
        try:
            if self.is_sqlite:
                self._raw.executemany(sql, [dict(r) for r in rows])
            else:
                with self._raw.cursor() as cursor:
                    cursor.executemany(self._sql(sql), [dict(r) for r in rows])
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            raise _translate(exc, sql) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any error."""
        if self._in_tx:
            yield self
            return
        self._in_tx = True
        try:
            if self.is_sqlite:
                self.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self._raw.execute("ROLLBACK")
                    raise
                self.execute("COMMIT")
            else:
                try:
                    with self._raw.transaction():
                        yield self
                except Exception as exc:
                    if _is_db_error(exc):
                        raise _translate(exc, "COMMIT") from exc
                    raise
        finally:
            self._in_tx = False

    def close(self) -> None:
        """Close the connection."""
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

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.url.dialect

    def connect(self) -> Connection:
        """A new connection with the store's settings applied."""
        if self.url.dialect == "sqlite":
            path = self.url.path
            if path is None:
                raise StoreError("SQLite URL without a path")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                raw = sqlite3.connect(
                    str(path),
                    timeout=SQLITE_BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
                raw.execute("PRAGMA journal_mode=WAL")
                raw.execute("PRAGMA synchronous=NORMAL")
                raw.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the SQLite store {path}: {exc}") from exc
            return Connection(self.url, raw)
        return Connection(self.url, _connect_postgres(self.url))

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


def _connect_postgres(url: StoreURL) -> Any:
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:
        raise StoreError(
            "PostgreSQL needs psycopg: pip install 'quality-gates[postgres]'"
        ) from None
    options: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "connect_timeout": 5}
    if url.schema:
        options["options"] = f"-csearch_path={url.schema}"
    try:
        return psycopg.connect(url.conninfo or "", **options)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot reach PostgreSQL at {url.display}: {first}") from exc


def in_clause(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`(:p0, :p1, ...)` and its parameters, for `IN` lists."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(f":{n}" for n in names) + ")", dict(zip(names, values, strict=True))
