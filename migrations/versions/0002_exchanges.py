"""Key exchanges for keyinit and password.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Additive: an agent that only knows 0001 runs on this schema and ignores the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("command_id", sa.Integer(), sa.ForeignKey("commands.id", ondelete="CASCADE"), nullable=False),
        sa.Column("opened_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("group_bits", sa.Integer(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("closed_at", sa.String(32), nullable=True),
        sa.Column("applied_digest", sa.String(64), nullable=True),
        sa.Column("derivation", sa.String(16), nullable=True),
        sa.Column("applied_by", sa.Integer(), nullable=True),
    )
    op.create_index("ix_exchanges_state", "exchanges", ["state"])


def downgrade() -> None:
    op.drop_index("ix_exchanges_state", table_name="exchanges")
    op.drop_table("exchanges")
