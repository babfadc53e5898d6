"""Seals: the command chain's ends and anchors, and digests of the exchange and release tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Additive: an agent that only knows 0003 runs on this schema and ignores the table. The commands already in
the journal keep the verification rules they were written under; ``chain_from`` (the first command id after
them) is where the chain that links commands to each other begins.
"""

import sqlalchemy as sa
from alembic import op

from agent.journal.seals import seal_schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seals",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    seal_schema(op.get_bind(), ("exchanges", "releases"))


def downgrade() -> None:
    op.drop_table("seals")
