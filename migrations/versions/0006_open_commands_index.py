"""An index of the commands whose reply has not been collected yet: unfinished, undelivered, or delivered
and still in data/guest.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

Those are the few the daemon looks for at every start (recovery) and every housekeeping run (reply
collection); without the index each look reads every command, which a journal of a million commands makes
slow. A partial index holds only those rows, so it stays small however large the journal grows.

Additive: an agent that only knows 0005 runs on this schema; SQLite keeps the index up to date for it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_commands_open", "commands", ["id"], unique=False,
                    sqlite_where=sa.text("reply_removed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_commands_open", table_name="commands")
