"""Alembic environment: migrations run programmatically on the connection the agent hands over."""

from alembic import context

from agent.journal.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through agent.journal (openstack-agent), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
