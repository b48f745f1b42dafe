"""gate runs: gate_runs and their per-item results

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("baseline", sa.String(length=200), nullable=True),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("results_path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.create_index("ix_gate_runs_model", ["model_id", "started_at"], unique=False)
        batch_op.create_index("ix_gate_runs_started", ["started_at"], unique=False)

    op.create_table(
        "gate_items",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("item_id", sa.String(length=300), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("error_class", sa.String(length=40), nullable=True),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("cached", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "role", "item_id", "repeat"),
    )


def downgrade() -> None:
    op.drop_table("gate_items")
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_runs_started")
        batch_op.drop_index("ix_gate_runs_model")

    op.drop_table("gate_runs")
