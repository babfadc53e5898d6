"""Alembic environment for the journal; installed as ``agent.migrations``."""
