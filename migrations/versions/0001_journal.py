"""The journal: commands and their hash-chained transitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.String(256), nullable=False),
        sa.Column("domain_path", sa.String(256), nullable=False),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("machine", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("reply_code", sa.String(16), nullable=True),
        sa.Column("reply_message", sa.Text(), nullable=True),
        sa.Column("replied_at", sa.String(32), nullable=True),
        sa.Column("reply_removed_at", sa.String(32), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_commands_request_id", "commands", ["request_id"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("command_id", sa.Integer(), sa.ForeignKey("commands.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("dest", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_transitions_command_seq", "transitions", ["command_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_transitions_command_seq", table_name="transitions")
    op.drop_table("transitions")
    op.drop_index("ix_commands_request_id", table_name="commands")
    op.drop_table("commands")
