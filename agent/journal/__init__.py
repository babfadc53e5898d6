"""The journal: SQLite, its schema defined with SQLAlchemy and migrated by Alembic, hash-chained transitions
and commands.

``core`` is the handle and the commands' life; ``chain``, ``seals``, ``retention`` and ``verify`` keep it
checkable and bounded; ``exchanges`` and ``releases`` are the records of the command types that own them.
Importing the package (what the daemon does) loads neither SQLAlchemy nor Alembic: ``models`` (the schema),
``alchemy`` (SQLAlchemy engines), ``migrate`` (Alembic, run in a child process) and ``timing`` are imported
only by what needs them.
"""

# Imported for their sealed tables, which must be registered wherever a journal is opened.
from agent.journal import exchanges, releases
from agent.journal.core import Journal
from agent.journal.records import CommandRecord, Predecessor, RecordWrite, TransitionRecord, Verification
from agent.journal.times import iso, parse_iso, utcnow, wall_clock

__all__ = ["CommandRecord", "Journal", "Predecessor", "RecordWrite", "TransitionRecord", "Verification",
           "exchanges", "iso", "parse_iso", "releases", "utcnow", "wall_clock"]
