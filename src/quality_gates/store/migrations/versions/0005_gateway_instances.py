"""gateway: one heartbeat row per gateway process (resource use, queue, breakers)

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("listen", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=False),
        sa.Column("rss_bytes", sa.Integer(), nullable=False),
        sa.Column("inflight", sa.Integer(), nullable=False),
        sa.Column("inflight_limit", sa.Integer(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("queue_limit", sa.Integer(), nullable=False),
        sa.Column("dropped_telemetry", sa.Integer(), nullable=False),
        sa.Column("buffered_telemetry", sa.Integer(), nullable=False),
        sa.Column("control_version", sa.Integer(), nullable=False),
        sa.Column("breakers", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gateway_instances", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gateway_instances_env_heartbeat", ["environment", "heartbeat_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_instances", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_instances_env_heartbeat")

    op.drop_table("gateway_instances")
