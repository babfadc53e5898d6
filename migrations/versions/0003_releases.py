"""Releases known good or bad, for the supervisor and agentupdate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Additive: an agent that only knows 0002 runs on this schema and ignores the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("marked_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("releases")
