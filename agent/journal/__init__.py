"""The journal: SQLite through SQLAlchemy, migrated by Alembic, hash-chained transitions."""

from agent.journal.store import (
    TERMINAL_STATES,
    CommandRecord,
    ExchangeRecord,
    Journal,
    SideWrite,
    TransitionRecord,
    Verification,
    iso,
    parse_iso,
    utcnow,
)

__all__ = ["TERMINAL_STATES", "CommandRecord", "ExchangeRecord", "Journal", "SideWrite", "TransitionRecord",
           "Verification", "iso", "parse_iso", "utcnow"]
