"""telemetry: structured-output verdicts per request and their counts per roll-up

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_check", sa.String(length=40), nullable=True))
    with op.batch_alter_table("rollups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outputs_checked", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("outputs_invalid", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("rollups", schema=None) as batch_op:
        batch_op.drop_column("outputs_invalid")
        batch_op.drop_column("outputs_checked")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("output_check")
