"""The registry: providers, models and per-environment aliases with a full history."""

from quality_gates.registry._service import (
    CONFIG_DIGEST_KEY,
    Actor,
    AliasChange,
    Resolved,
    RollbackResult,
    SyncReport,
    alias_drift,
    check_environment,
    current_user,
    environments,
    move_alias,
    promote,
    resolve_model,
    rollback,
    sync_config,
    synced_snapshot,
)

__all__ = [
    "CONFIG_DIGEST_KEY",
    "Actor",
    "AliasChange",
    "Resolved",
    "RollbackResult",
    "SyncReport",
    "alias_drift",
    "check_environment",
    "current_user",
    "environments",
    "move_alias",
    "promote",
    "resolve_model",
    "rollback",
    "sync_config",
    "synced_snapshot",
]
