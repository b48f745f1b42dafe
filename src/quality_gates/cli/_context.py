"""What every command shares: global options, the config, the store, common options."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from quality_gates.config import ConfigSnapshot, LoadedConfig
    from quality_gates.registry import Actor
    from quality_gates.store import Connection, Database, StoreURL

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """Global options and lazily opened resources for one command run."""

    config_path: Path | None = None
    db_url: str | None = None
    json: bool = False
    verbose: int = 0
    _file: tuple[Path, bytes] | None = field(default=None, repr=False)
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _snapshot: ConfigSnapshot | None = field(default=None, repr=False)
    _database: Database | None = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False)

    def config_file(self) -> tuple[Path, bytes]:
        """The config's path and bytes (read once)."""
        if self._file is None:
            from quality_gates.config import find_config
            from quality_gates.config._secrets import load_secrets
            from quality_gates.errors import ConfigError

            path = find_config(self.config_path)
            try:
                self._file = (path, path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
            load_secrets(path.parent)  # `validate --fix` moved plain-text secrets there
        return self._file

    def loaded(self) -> LoadedConfig:
        """The config validated by its models (read once)."""
        if self._loaded is None:
            from quality_gates.config import load_config

            self._loaded = load_config(self.config_file()[0])
            self._warn(self._loaded.warnings)
        return self._loaded

    def replace_config(self, loaded: LoadedConfig) -> None:
        """Use a config just rewritten by this command."""
        self._loaded, self._file, self._snapshot = loaded, None, None

    def snapshot(self) -> ConfigSnapshot:
        """The effective config as plain data: from the store when the file is unchanged
        since the last sync (no validation needed), else validated and synced now."""
        if self._snapshot is None:
            from quality_gates.registry import synced_snapshot

            _path, data = self.config_file()
            digest = hashlib.sha256(data).hexdigest()
            conn = self.conn()  # syncs if the file changed since the last sync
            snapshot = synced_snapshot(conn, digest)
            if snapshot is None:
                from quality_gates.registry import Actor, current_user, sync_config

                loaded = self.loaded()
                sync_config(conn, loaded, Actor(current_user(), "config"))
                snapshot = loaded.snapshot()
            self._warn(snapshot.warnings)
            self._snapshot = snapshot
        return self._snapshot

    def _warn(self, warnings: list[str]) -> None:
        if self._warned or not warnings:
            return
        from quality_gates.cli._output import warn

        for line in warnings:
            warn(line)
        self._warned = True

    def _configured_store_url(self) -> str | None:
        if self._loaded is not None:
            return self._loaded.config.store.url
        import yaml

        try:
            raw = yaml.load(
                self.config_file()[1], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            )
        except yaml.YAMLError:
            return self.loaded().config.store.url  # raises the config error with its line
        store = raw.get("store") if isinstance(raw, dict) else None
        url = store.get("url") if isinstance(store, dict) else None
        return url if isinstance(url, str) else None

    def store_url(self) -> StoreURL:
        """Where the store is: --db, $QG_DATABASE_URL, the config's store.url or the default."""
        import os

        from quality_gates.store import DATABASE_ENV, resolve_url

        configured = (
            None
            if (self.db_url or os.environ.get(DATABASE_ENV))
            else (self._configured_store_url())
        )
        return resolve_url(self.db_url, configured, self.config_file()[0].parent)

    def database(self, *, require_current: bool = True) -> Database:
        """The open store, its registry synced from the config if the file changed."""
        if self._database is None:
            from quality_gates.registry import CONFIG_DIGEST_KEY, Actor, current_user, sync_config
            from quality_gates.store import open_store
            from quality_gates.store.registry import get_meta

            database = open_store(
                self.store_url(), require_current=require_current, before_create=self.loaded
            )
            self._database = database
            digest = hashlib.sha256(self.config_file()[1]).hexdigest()
            conn = database.shared()
            if get_meta(conn, CONFIG_DIGEST_KEY) != digest:
                sync_config(conn, self.loaded(), Actor(current_user(), "config"))
        return self._database

    def conn(self, *, require_current: bool = True) -> Connection:
        """This command's connection to the store."""
        return self.database(require_current=require_current).shared()

    def close(self) -> None:
        """Release the store connection."""
        if self._database is not None:
            self._database.close_shared()


def state(ctx: click.Context) -> CliContext:
    """The CliContext of the running command."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliContext):
        root.obj = CliContext()
    return root.obj


def wants_json(ctx: click.Context, local_flag: bool) -> bool:
    """`--json` given globally or to the command."""
    return local_flag or state(ctx).json


def actor(name: str | None, source: str = "manual") -> Actor:
    """The acting user (`--actor`, $QG_ACTOR or the OS user) and the change's source."""
    from quality_gates.registry import Actor, current_user

    return Actor(name or current_user(), source)


def json_option(func: F) -> F:
    """`--json` on a command."""
    return click.option(
        "--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout."
    )(func)


def actor_option(func: F) -> F:
    """`--actor` on a command that changes something."""
    return click.option(
        "--actor",
        "actor_name",
        metavar="NAME",
        help="Who is acting (default: $QG_ACTOR or the OS user).",
    )(func)


def environment_option(
    default: str | None = None, help_text: str | None = None
) -> Callable[[F], F]:
    """`--environment/-e`."""
    return click.option(
        "--environment",
        "-e",
        default=default,
        show_default=bool(default),
        metavar="ENV",
        help=help_text or "Environment (production, staging, ...).",
    )
