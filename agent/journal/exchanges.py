"""Key exchanges: the records of ``keyinit`` and ``password``, in a table of their own.

``keyinit`` opens an exchange (the agent's public key, the shared secret, a lifetime) in the same transaction
as its transition; ``password`` consumes it when it has set the password, or finds it expired. The shared
secret is the one secret the journal ever holds, and only while its exchange is open: closing one (consumed,
replaced by a newer keyinit, expired, abandoned) sets it to NULL, and the journal's ``wipe`` then takes the
old page out of the WAL (``secure_delete`` zeroes it in the database file).

Lifetimes run on the monotonic clock from the commit that opened the exchange, so a wall clock set back
cannot lengthen one; an exchange opened by an earlier process gets what is left of its lifetime by the wall
clock, never more than the whole lifetime. The deadlines are kept per journal handle (``Journal.cache``).
The table is sealed (``agent.journal.seals``): a secret never enters a hash, only whether it is still set.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent.errors import JournalError
from agent.journal import seals, times
from agent.journal.chain import material
from agent.journal.core import Journal
from agent.journal.records import CommandRecord, RecordWrite
from agent.journal.sql import Statement, chunks, columns, marks

OPEN = "open"
#: The columns the table digest covers (a test keeps them equal to the table's).
SEALED_COLUMNS = ("id", "command_id", "opened_at", "expires_at", "public_key", "group_bits", "secret", "state",
                  "closed_at", "applied_digest", "derivation", "applied_by")


def row_hash(row: Mapping[str, Any]) -> int:
    """An exchange's share of the table digest: every column, but of the secret only whether it is set."""
    fields = [row[c] for c in SEALED_COLUMNS if c != "secret"]
    return seals.as_number(material("exchange", *fields, row["secret"] is None))


SEALED = seals.register(seals.SealedTable(
    "exchanges", SEALED_COLUMNS, row_hash, command_column="command_id",
    pinned="SELECT command_id FROM exchanges WHERE state = 'open'"))

_CLOSE = Statement("""
    UPDATE exchanges SET secret=NULL, state=:state, closed_at=:at, applied_digest=:digest, derivation=:derivation,
    applied_by=:command WHERE exchanges.state = 'open' AND exchanges.id = :id""")
_INSERT = Statement(f"""
    INSERT INTO exchanges ({", ".join(SEALED_COLUMNS[1:])})
    VALUES ({", ".join(f":{c}" for c in SEALED_COLUMNS[1:])})""")  # noqa: S608 - fixed names
_SELECT = f"SELECT {columns('exchanges', SEALED_COLUMNS)} FROM exchanges"  # noqa: S608 - fixed names


def __getattr__(name: str) -> Any:
    # ``table``: the SQLAlchemy table (``agent.journal.models.exchanges``), for inspection and tests; loading
    # it loads SQLAlchemy, which the daemon never does.
    if name == "table":
        from agent.journal.models import exchanges

        return exchanges
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Exchange:
    """A key exchange. ``secret`` is None once the exchange is closed; it never appears in a repr."""

    id: int
    command_id: int
    opened_at: str
    expires_at: str
    public_key: str
    group_bits: int
    secret: str | None = dataclasses.field(repr=False)
    state: str
    closed_at: str | None
    applied_digest: str | None
    derivation: str | None
    applied_by: int | None

    @property
    def open(self) -> bool:
        return self.state == OPEN


# -- writes -------------------------------------------------------------------------------------------------

def _close(cursor: sqlite3.Connection, ids: list[int], state: str, at: str, digest: str | None = None,
           derivation: str | None = None, command: int | None = None) -> int:
    """Close the open exchanges among ``ids`` (secret wiped), keeping the digest right; return how many."""
    closed = 0
    for batch in chunks(ids):
        def write(batch: list[int] = batch) -> int:
            return sum(_CLOSE(cursor, {"id": exchange_id, "state": state, "at": at, "digest": digest,
                                       "derivation": derivation, "command": command}).rowcount
                       for exchange_id in batch)

        closed += SEALED.change(cursor, f"id IN ({marks(batch)})", batch, write)
    return closed


def opens(public_key: str, secret: str, expires_at: str, group_bits: int) -> RecordWrite:
    """Open a key exchange for the command; every earlier open one is replaced and its secret wiped.

    Its lifetime (``expires_at`` less the transition's time) is measured on the monotonic clock from the
    commit, so a wall clock set back while the agent runs cannot lengthen it.
    """
    opened: list[tuple[int, float]] = []

    def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
        still_open = [row[0] for row in cursor.execute("SELECT id FROM exchanges WHERE state = 'open'")]
        _close(cursor, still_open, "replaced", at)
        row: dict[str, Any] = {
            "command_id": command.id, "opened_at": at, "expires_at": expires_at, "public_key": public_key,
            "group_bits": group_bits, "secret": secret, "state": OPEN, "closed_at": None,
            "applied_digest": None, "derivation": None, "applied_by": None}
        exchange_id = _INSERT(cursor, row).lastrowid
        assert exchange_id is not None
        seals.add(cursor, SEALED.name, row_hash({**row, "id": exchange_id}))
        opened.append((exchange_id, _lifetime(at, expires_at)))

    def committed(journal: Journal) -> None:
        exchange_id, lifetime = opened[-1]
        journal.cache[__name__] = {exchange_id: time.monotonic() + lifetime}

    return RecordWrite(apply, wipes=True, committed=committed)


def _closes(exchange_id: int, state: str, applied_digest: str | None = None, derivation: str | None = None,
            must_be_open: bool = False) -> RecordWrite:
    def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
        changed = _close(cursor, [exchange_id], state, at, applied_digest, derivation,
                         command.id if applied_digest is not None else None)
        if must_be_open and changed != 1:
            raise JournalError(f"key exchange {exchange_id} is no longer open")

    def committed(journal: Journal) -> None:
        _deadlines(journal).pop(exchange_id, None)

    return RecordWrite(apply, wipes=True, committed=committed)


def consumes(exchange_id: int, applied_digest: str, derivation: str) -> RecordWrite:
    """Close an exchange whose password was applied: wipe its secret, remember what was applied."""
    return _closes(exchange_id, "consumed", applied_digest, derivation, must_be_open=True)


def expires(exchange_id: int) -> RecordWrite:
    """Close an exchange found expired when a password came for it, wiping its secret."""
    return _closes(exchange_id, "expired")


def abandons(exchange_id: int) -> RecordWrite:
    """Close an open exchange as "abandoned", wiping its secret: its password will not be applied by it (the
    password command gave up after a crash loop)."""
    return _closes(exchange_id, "abandoned")


# -- lifetimes ----------------------------------------------------------------------------------------------

def _lifetime(opened_at: str, expires_at: str) -> float:
    try:
        return max(0.0, (times.parse_iso(expires_at) - times.parse_iso(opened_at)).total_seconds())
    except ValueError:
        return 0.0


def _deadline(opened_at: str, expires_at: str, now: datetime) -> float:
    """The monotonic deadline of an exchange opened by an earlier process: what is left of it by the wall
    clock, never more than its whole lifetime; one already over is due at once."""
    try:
        left = (times.parse_iso(expires_at) - now).total_seconds()
    except ValueError:
        return 0.0
    remaining = min(max(left, 0.0), _lifetime(opened_at, expires_at))
    return time.monotonic() + remaining if remaining > 0 else 0.0


def _deadlines(journal: Journal) -> dict[int, float]:
    deadlines: dict[int, float] | None = journal.cache.get(__name__)
    if deadlines is None:
        rows = journal.query("SELECT id, opened_at, expires_at FROM exchanges WHERE state = 'open'")
        now = times.wall_clock()
        deadlines = journal.cache[__name__] = {row["id"]: _deadline(row["opened_at"], row["expires_at"], now)
                                               for row in rows}
    return deadlines


def next_expiry(journal: Journal) -> float | None:
    """When (``time.monotonic``) the earliest open exchange's lifetime ends, or None when none is open."""
    deadlines = _deadlines(journal)
    return min(deadlines.values()) if deadlines else None


def expired(journal: Journal, exchange: Exchange, now: float | None = None) -> bool:
    """Whether an open exchange's lifetime is over at ``now`` (``time.monotonic``, default: now). A closed
    exchange is never "expired" here: its state says what happened to it."""
    if not exchange.open:
        return False
    deadlines = _deadlines(journal)
    deadline = deadlines.get(exchange.id)
    if deadline is None:
        deadline = deadlines[exchange.id] = _deadline(exchange.opened_at, exchange.expires_at, times.wall_clock())
    return deadline <= (time.monotonic() if now is None else now)


def expire(journal: Journal, now: float) -> int:
    """Close every open exchange whose lifetime is over at ``now`` (``time.monotonic``) and wipe its secret;
    return how many."""
    deadlines = _deadlines(journal)
    due = sorted(exchange_id for exchange_id, deadline in deadlines.items() if deadline <= now)
    if not due:
        return 0
    at = times.utcnow()
    count = journal.transaction(lambda cursor: _close(cursor, due, "expired", at))
    for exchange_id in due:
        deadlines.pop(exchange_id, None)
    if count:
        journal.wipe()
    return count


# -- queries ------------------------------------------------------------------------------------------------

def _exchanges(journal: Journal, where: str, params: tuple[Any, ...] = ()) -> list[Exchange]:
    return [Exchange(**row) for row in journal.query(f"{_SELECT} {where}", params)]


def latest(journal: Journal) -> Exchange | None:
    """The most recent key exchange, open or closed."""
    found = _exchanges(journal, "ORDER BY exchanges.id DESC LIMIT 1")
    return found[0] if found else None


def get(journal: Journal, exchange_id: int) -> Exchange | None:
    """The exchange with this id (None once retention removed it)."""
    found = _exchanges(journal, "WHERE exchanges.id = ?", (exchange_id,))
    return found[0] if found else None


def opened_by(journal: Journal, command_id: int) -> Exchange | None:
    """The exchange a keyinit command opened."""
    found = _exchanges(journal, "WHERE exchanges.command_id = ?", (command_id,))
    return found[0] if found else None


def every(journal: Journal) -> list[Exchange]:
    """Every exchange, oldest first."""
    return _exchanges(journal, "ORDER BY exchanges.id")
