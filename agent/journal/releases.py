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

from agent.journal import seals, times
from agent.journal.chain import material, storable
from agent.journal.core import Journal
from agent.journal.records import CommandRecord, RecordWrite
from agent.journal.sql import Statement, columns

GOOD = "good"
BAD = "bad"

#: The columns the table digest covers (a test keeps them equal to the table's, ``models.releases``).
SEALED_COLUMNS = ("version", "state", "reason", "marked_at")


def row_hash(row: Mapping[str, Any]) -> int:
    return seals.as_number(material("release", *(row[c] for c in SEALED_COLUMNS)))


SEALED = seals.register(seals.SealedTable("releases", SEALED_COLUMNS, row_hash))

_UPSERT = Statement("""
    INSERT INTO releases (version, state, reason, marked_at) VALUES (:version, :state, :reason, :marked_at)
    ON CONFLICT (version) DO UPDATE SET state = :state, reason = :reason, marked_at = :marked_at""")
_SELECT = f"SELECT {columns('releases', SEALED_COLUMNS)} FROM releases"  # noqa: S608 - fixed names


def __getattr__(name: str) -> Any:
    # ``table``: the SQLAlchemy table (``agent.journal.models.releases``), for inspection and tests; loading it
    # loads SQLAlchemy, which the daemon never does.
    if name == "table":
        from agent.journal.models import releases

        return releases
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    rows = journal.query(f"{_SELECT} WHERE releases.version = ?", (version,))
    return _verdict(rows[0]) if rows else None


def verdicts(journal: Journal) -> dict[str, Verdict]:
    """Every release's verdict, by version."""
    return {row["version"]: _verdict(row) for row in journal.query(f"{_SELECT} ORDER BY releases.version")}


def _verdict(row: Mapping[str, Any]) -> Verdict:
    return Verdict(row["version"], row["state"], row["reason"] or "", row["marked_at"])
