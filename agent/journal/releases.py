"""Release verdicts: what is known of each installed release, the records of ``agentupdate``.

"good" once installed by an operator or confirmed by an update, "bad" once the supervisor rolled it back
(with why); a bad release is never retried automatically. Written by agentupdate in the same transaction as
its commit, and by the supervisor and the installer on their own. The table is sealed
(``agent.journal.seals``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, String, Table, Text, bindparam, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent.journal import seals, times
from agent.journal.chain import material, storable
from agent.journal.core import Journal
from agent.journal.models import metadata
from agent.journal.records import CommandRecord, RecordWrite
from agent.journal.sql import Compiled

GOOD = "good"
BAD = "bad"

#: Schema: migration 0003.
table = Table(
    "releases", metadata,
    Column("version", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("marked_at", String(32), nullable=False),
)

#: The columns the table digest covers (a test keeps them equal to the table's).
SEALED_COLUMNS = ("version", "state", "reason", "marked_at")


def row_hash(row: Mapping[str, Any]) -> int:
    return seals.as_number(material("release", *(row[c] for c in SEALED_COLUMNS)))


SEALED = seals.register(seals.SealedTable("releases", SEALED_COLUMNS, row_hash))

_UPSERT = Compiled(
    sqlite_insert(table).values({c.name: bindparam(c.name) for c in table.columns})
    .on_conflict_do_update(index_elements=["version"], set_={
        "state": bindparam("state"), "reason": bindparam("reason"), "marked_at": bindparam("marked_at")}))


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What is known of one release."""

    version: str
    state: str
    reason: str
    marked_at: str

    @property
    def bad(self) -> bool:
        return self.state == BAD


def _upsert(cursor: sqlite3.Connection, version: str, state: str, reason: str, at: str) -> None:
    SEALED.change(cursor, "version = ?", (version,), lambda: _UPSERT(cursor, {
        "version": storable(version), "state": storable(state), "reason": storable(reason), "marked_at": at}))


def marks(version: str, state: str, reason: str = "") -> RecordWrite:
    """Record a release as "good" or "bad" (with why) in the same transaction as a transition."""
    def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
        _upsert(cursor, version, state, reason, at)

    return RecordWrite(apply)


def mark(journal: Journal, version: str, state: str, reason: str = "") -> None:
    """Record a release as "good" or "bad" on its own (the supervisor's and the installer's verdicts)."""
    at = times.utcnow()
    journal.transaction(lambda cursor: _upsert(cursor, version, state, reason, at))


def verdict(journal: Journal, version: str) -> Verdict | None:
    """What is known of ``version``, or None when nothing is."""
    rows = journal.read(select(table).where(table.c.version == version))
    return Verdict(rows[0].version, rows[0].state, rows[0].reason or "", rows[0].marked_at) if rows else None
