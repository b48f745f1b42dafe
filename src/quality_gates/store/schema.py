"""The store's tables as SQLAlchemy Core metadata: the source alembic migrations are written from.

Runtime queries do not import this module (SQLAlchemy alone costs ~300 ms of start-up here);
they go through `quality_gates.store.db`, a thin DB-API layer with portable SQL. Times are
UTC seconds since the epoch (REAL / DOUBLE PRECISION) so both dialects compare them alike.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

meta = Table(
    "qg_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

providers = Table(
    "providers",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("protocol", String(20), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("region", String(50)),
    Column("synced_at", Float, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("provider_model", String(300), nullable=False),
    Column("input_per_1k", Float, nullable=False),
    Column("output_per_1k", Float, nullable=False),
    Column("synced_at", Float, nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("environment", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
    PrimaryKeyConstraint("environment", "name"),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("from_model", String(200)),
    Column("to_model", String(200), nullable=False),
    Column("operation", String(30), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(20), nullable=False),
    Column("duration_ms", Float),
    Column("operation_id", String(40), nullable=False),
    Column("incident_id", Integer),
    Index("ix_alias_history_env_ts", "environment", "ts"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_action", "action"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

control_state = Table(
    "control_state",
    metadata,
    Column("environment", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

runtime_settings = Table(
    "runtime_settings",
    metadata,
    Column("environment", String(100), nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
    PrimaryKeyConstraint("environment", "key"),
)

traffic_history = Table(
    "traffic_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("weights", Text, nullable=False),
    Column("previous", Text, nullable=False),
    Column("mode", String(20), nullable=False),
    Column("step", String(50)),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(20), nullable=False),
    Column("operation_id", String(40), nullable=False),
    Column("incident_id", Integer),
    Index("ix_traffic_history_env_ts", "environment", "ts"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)
