"""Working data: each command's typed data, and the transitions that set it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Additive: an agent that only knows 0004 runs on this schema and ignores the columns (its ``journal verify``,
whose chain hash leaves working data out, reports the transitions that carry some as altered). Commands
journaled before it have no working data; their machines read what they need from where older releases kept
it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("data", sa.Text(), nullable=True))
    with op.batch_alter_table("transitions") as batch:
        batch.add_column(sa.Column("data", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transitions") as batch:
        batch.drop_column("data")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("data")
