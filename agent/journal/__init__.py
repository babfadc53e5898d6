"""The journal: SQLite through SQLAlchemy, migrated by Alembic, hash-chained transitions and commands."""

from agent.journal.store import (
    TERMINAL_STATES,
    CommandRecord,
    ExchangeRecord,
    Journal,
    Predecessor,
    SideWrite,
    TransitionRecord,
    Verification,
    iso,
    parse_iso,
    utcnow,
    wall_clock,
)

__all__ = ["TERMINAL_STATES", "CommandRecord", "ExchangeRecord", "Journal", "Predecessor", "SideWrite",
           "TransitionRecord", "Verification", "iso", "parse_iso", "utcnow", "wall_clock"]
