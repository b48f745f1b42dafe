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

# --- telemetry (written by the gateway off the request path, read by watch and reports) ---

requests = Table(
    "requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("alias", String(200), nullable=False),
    Column("model_id", String(200)),
    Column("provider", String(100)),
    Column("deployment", String(300)),
    Column("key_name", String(100)),
    Column("status", String(20), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("error_class", String(40)),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("cache", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("hops", Integer, nullable=False),
    Column("stream", Integer, nullable=False),
    Column("canary", Integer, nullable=False),
    Column("finish_reason", String(20)),
    Column("prompt", Text),
    Column("answer", Text),
    # Structured output (tools, response_format JSON): `valid` or why it is unusable; NULL
    # when there was nothing to check (gateway/_output_check.py).
    Column("output_check", String(40)),
    Index("ix_requests_ts", "ts"),
    Index("ix_requests_env_ts", "environment", "ts"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("deployment", String(300), nullable=False),
    Column("status", String(20), nullable=False),
    Column("error_class", String(40)),
    Column("http_status", Integer),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Index("ix_attempts_ts", "ts"),
    Index("ix_attempts_provider_ts", "provider", "ts"),
    Index("ix_attempts_request", "request_id"),
)

# One row per minute, series and writer process; readers sum over writers. `kind` is
# `request` (what clients saw, by alias/model/provider that answered) or `attempt` (each
# upstream call, by provider/model). Histograms: quality_gates.telemetry.LatencyHistogram.
rollups = Table(
    "rollups",
    metadata,
    Column("minute", Integer, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("alias", String(200), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("writer", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("errors_by_class", Text, nullable=False),
    Column("latency_hist", Text, nullable=False),
    Column("ttft_hist", Text, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("cache_hits", Integer, nullable=False),
    Column("cache_stale", Integer, nullable=False),
    Column("cache_misses", Integer, nullable=False),
    Column("failovers", Integer, nullable=False),
    Column("canary", Integer, nullable=False),
    Column("outputs_checked", Integer, nullable=False, server_default="0"),
    Column("outputs_invalid", Integer, nullable=False, server_default="0"),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint(
        "minute", "environment", "alias", "model_id", "provider", "kind", "writer"
    ),
    Index("ix_rollups_env_minute", "environment", "minute"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("score", Integer, nullable=False),
    Column("comment", Text),
    Column("key_name", String(100)),
    Index("ix_feedback_ts", "ts"),
    Index("ix_feedback_request", "request_id"),
)

quality_samples = Table(
    "quality_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("scorer", String(50), nullable=False),
    Column("score", Float, nullable=False),
    Column("passed", Integer, nullable=False),
    Index("ix_quality_samples_ts", "ts"),
)

# --- quality gates (offline, performance, canary, pipeline, batch runs) ---

gate_runs = Table(
    "gate_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("baseline", String(200)),
    Column("parent_id", String(40)),
    Column("status", String(20), nullable=False),
    Column("verdict", String(20)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("actor", String(200), nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("inputs", Text, nullable=False),
    Column("versions", Text, nullable=False),
    Column("summary", Text),
    Column("results_path", Text),
    Index("ix_gate_runs_started", "started_at"),
    Index("ix_gate_runs_model", "model_id", "started_at"),
)

gate_items = Table(
    "gate_items",
    metadata,
    Column("run_id", String(40), nullable=False),
    Column("role", String(20), nullable=False),
    Column("item_id", String(300), nullable=False),
    Column("repeat", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=False),
    Column("cost", Float, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("error_class", String(40)),
    Column("flags", Text, nullable=False),
    Column("cached", Integer, nullable=False),
    PrimaryKeyConstraint("run_id", "role", "item_id", "repeat"),
)

# --- gateway processes (one row per running gateway process, refreshed by its heartbeat) ---

gateway_instances = Table(
    "gateway_instances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("environment", String(100), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("listen", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("cpu_percent", Float, nullable=False),
    Column("rss_bytes", Integer, nullable=False),
    Column("inflight", Integer, nullable=False),
    Column("inflight_limit", Integer, nullable=False),
    Column("queue_depth", Integer, nullable=False),
    Column("queue_limit", Integer, nullable=False),
    Column("dropped_telemetry", Integer, nullable=False),
    Column("buffered_telemetry", Integer, nullable=False),
    Column("control_version", Integer, nullable=False),
    Column("breakers", Text, nullable=False),
    Index("ix_gateway_instances_env_heartbeat", "environment", "heartbeat_at"),
)

# --- watch (alert states, silences, incidents, the notification outbox, routine jobs) ---

alert_states = Table(
    "alert_states",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("rule", String(100), nullable=False),
    Column("labels", Text, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("metric", String(50), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("type", String(20), nullable=False),
    Column("state", String(10), nullable=False),
    Column("value", Float),
    Column("threshold", Float, nullable=False),
    Column("active_since", Float, nullable=False),
    Column("fired_at", Float),
    Column("last_true_at", Float),
    Column("resolved_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("silenced_by", Integer),
    Column("inhibited_by", String(64)),
    Column("incident_id", Integer),
    Column("summary", Text, nullable=False),
    Index("ix_alert_states_state", "state"),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("labels", Text, nullable=False),
    Column("environment", String(100), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("from_state", String(10), nullable=False),
    Column("to_state", String(10), nullable=False),
    Column("value", Float),
    Column("incident_id", Integer),
    Index("ix_alert_events_ts", "ts"),
    Index("ix_alert_events_fingerprint", "fingerprint"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("matchers", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("expired_at", Float),
    Column("expired_by", String(200)),
    Index("ix_silences_ends_at", "ends_at"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", Text, nullable=False),
    Column("type", String(20), nullable=False),
    Column("severity", String(2), nullable=False),
    Column("state", String(20), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("group_key", String(200), nullable=False),
    Column("dedup_key", String(200), nullable=False, unique=True),
    Column("opened_at", Float, nullable=False),
    Column("opened_by", String(200), nullable=False),
    Column("detected_at", Float, nullable=False),
    Column("last_alert_at", Float, nullable=False),
    Column("acknowledged_at", Float),
    Column("acknowledged_by", String(200)),
    Column("identified_at", Float),
    Column("mitigated_at", Float),
    Column("resolved_at", Float),
    Column("resolved_by", String(200)),
    Column("response_breached_at", Float),
    Column("escalation_level", Integer, nullable=False),
    Column("escalated_at", Float),
    Column("root_cause", Text),
    Column("updated_at", Float, nullable=False),
    Index("ix_incidents_state", "state"),
    Index("ix_incidents_group", "group_key", "state"),
)

incident_events = Table(
    "incident_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(30), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("public", Integer, nullable=False),
    Index("ix_incident_events_incident", "incident_id", "ts"),
)

escalations = Table(
    "escalations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("level", Integer, nullable=False),
    Column("contact", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Index("ix_escalations_incident", "incident_id"),
)

# The durable outbox: a message is written in the same transaction as the change that causes
# it, then claimed, sent and marked by whichever evaluator holds the claim.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("channel", String(100), nullable=False),
    Column("channel_type", String(20), nullable=False),
    Column("event", String(20), nullable=False),
    Column("incident_id", Integer),
    Column("dedup_key", String(200)),
    Column("payload", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(200)),
    Column("claimed_until", Float),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("response_status", Integer),
    Column("last_error", Text),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_incident", "incident_id"),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(100), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("status", String(20), nullable=False),
    Column("holder", String(200), nullable=False),
    Column("details", Text, nullable=False),
    Index("ix_job_runs_job", "job", "started_at"),
)

# --- act (automatic remediation: one row per rollback, failover or failback it took or weighed) ---

remediations = Table(
    "remediations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("environment", String(100), nullable=False),
    Column("action", String(20), nullable=False),
    Column("target", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("incident_id", Integer),
    Column("rule", String(100)),
    Column("fingerprint", String(64)),
    Column("alert_at", Float),
    Column("started_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("step", String(100)),
    Column("summary", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("operation_id", String(40)),
    Index("ix_remediations_target", "environment", "action", "target"),
    Index("ix_remediations_incident", "incident_id"),
)


drill_runs = Table(
    "drill_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # provider-outage | latency-spike | quality-regression | multi-provider-outage
    Column("scenario", String(40), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("provider", String(100)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    # running | passed | missed (a target missed) | failed (the drill itself broke)
    Column("status", String(20), nullable=False),
    Column("incident_id", Integer),
    Column("figures", Text, nullable=False),  # JSON: measured figures, seconds and counts
    Column("verdicts", Text, nullable=False),  # JSON: each figure against its targets
    Column("details", Text, nullable=False),  # JSON: timeline, notifications, load, config
    Column("actor", String(200), nullable=False),
    Index("ix_drill_runs_started", "started_at"),
)
