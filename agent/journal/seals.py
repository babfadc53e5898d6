"""Seals: what the hash chains cannot hold in a row of their own, kept in the ``seals`` table.

- ``chain_from`` and ``head``: where the linked command chain starts and the newest command in it (updated
  in the transaction that journals each command), so deleting the newest commands is seen.
- ``anchor:<id>``: the link of a command whose predecessor retention removed, and ``anchors``, their digest.
- A digest per **sealed table**: the tables in which command types keep records of their own (key exchanges,
  release verdicts, ...). The digest is the sum, modulo 2**256, of a SHA-256 per row, adjusted in the same
  transaction as every write to the table (``change``), so ``journal verify`` sees an edited, added or
  removed row. A command type declares its table with ``SealedTable`` and registers it with ``register``.
- ``predecessor``: the note of a broken journal this one replaced.
- ``count``: how many commands the journal holds, with its oldest and newest command ids
  (``count:oldest:newest``), updated in the transaction that journals or removes commands. Retention reads it
  instead of counting a large journal; it is trusted only while both ids still match the table and the count
  fits between them, so a count that a release without it (after a rollback) let go stale, or one edited, is
  counted again once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.journal.chain import ROOT_LINK, material
from agent.journal.sql import Statement, chunks, dicts, marks

CHAIN_FROM = "chain_from"
HEAD = "head"
ANCHORS = "anchors"
ANCHOR_PREFIX = "anchor:"
PREDECESSOR = "predecessor"
COUNT = "count"
_MODULUS = 1 << 256

UPSERT = Statement('INSERT INTO seals ("key", value) VALUES (:key, :value) '
                   'ON CONFLICT ("key") DO UPDATE SET value = :value')


def as_number(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def digest_text(total: int) -> str:
    return f"{total % _MODULUS:064x}"


def head_text(command_id: int, link: str) -> str:
    return f"{command_id}:{link}"


@dataclasses.dataclass(frozen=True)
class Tally:
    """How many commands the journal holds, and its oldest and newest command ids (0 when it holds none)."""

    count: int
    oldest: int
    newest: int

    def text(self) -> str:
        return f"{self.count}:{self.oldest}:{self.newest}"


def sealed_tally(cursor: sqlite3.Connection) -> Tally | None:
    """What the ``count`` seal says, or None when it is missing or unreadable."""
    try:
        count, oldest, newest = map(int, (read(cursor, COUNT) or "").split(":"))
    except ValueError:
        return None
    return Tally(count, oldest, newest)


def tally(cursor: sqlite3.Connection) -> Tally:
    """The journal's tally: from the ``count`` seal when its ids are still the table's oldest and newest and
    its count fits between them (two index lookups), else counted (the seal is missing, edited, or stale)."""
    oldest, newest = (int(n) for n in cursor.execute(
        "SELECT coalesce((SELECT min(id) FROM commands), 0), coalesce((SELECT max(id) FROM commands), 0)").fetchone())
    sealed = sealed_tally(cursor)
    if sealed is not None and (sealed.oldest, sealed.newest) == (oldest, newest) and (
            sealed.count == 0 if newest == 0 else 1 <= sealed.count <= newest - oldest + 1):
        return sealed
    return Tally(int(cursor.execute("SELECT count(*) FROM commands").fetchone()[0]), oldest, newest)


def put_tally(cursor: sqlite3.Connection, new: Tally) -> Tally:
    UPSERT(cursor, {"key": COUNT, "value": new.text()})
    return new


def anchor_hash(command_id: int, link: str) -> int:
    return as_number(material("anchor", command_id, link))


def read(cursor: sqlite3.Connection, key: str) -> str | None:
    row = cursor.execute("SELECT value FROM seals WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def add(cursor: sqlite3.Connection, key: str, delta: int) -> None:
    """Adjust a digest by the hashes of rows added (positive) and removed (negative)."""
    if delta % _MODULUS == 0:
        return
    current = read(cursor, key)
    try:
        total = int(current, 16) if current is not None else 0
    except ValueError:
        total = 0  # an edited seal: verify reports it; the agent goes on
    UPSERT(cursor, {"key": key, "value": digest_text(total + delta)})


# -- sealed tables ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SealedTable:
    """A table a command type keeps its own records in, covered by a digest in ``seals`` (key: its name).

    ``columns`` are the ones the digest covers, fixed in code rather than taken from the schema: a column added
    later must not silently change every row's hash. ``row_hash`` gives one row's share. ``command_column``
    names the column tying a row to the command that wrote it: retention removes the row with its command.
    ``pinned`` is SQL selecting the ids of commands retention must keep (an exchange still open, say).
    """

    name: str
    columns: tuple[str, ...]
    row_hash: Callable[[Mapping[str, Any]], int]
    command_column: str | None = None
    pinned: str | None = None

    def rows(self, cursor: sqlite3.Connection, where: str, params: Iterable[Any]) -> list[dict[str, Any]]:
        return list(dicts(cursor.execute(
            f"SELECT {', '.join(self.columns)} FROM {self.name} WHERE {where}", tuple(params))))  # noqa: S608

    def change(self, cursor: sqlite3.Connection, where: str, params: Iterable[Any],
               write: Callable[[], Any]) -> Any:
        """Run ``write`` (which changes the rows selected by ``where``) and keep the table digest right."""
        params = tuple(params)
        before = self.rows(cursor, where, params)
        result = write()
        after = self.rows(cursor, where, params)
        add(cursor, self.name, sum(map(self.row_hash, after)) - sum(map(self.row_hash, before)))
        return result

    def delete_for_commands(self, cursor: sqlite3.Connection, command_ids: list[int]) -> None:
        """Remove the rows of commands that retention removes, keeping the digest right."""
        if self.command_column is None:
            return
        for batch in chunks(command_ids):
            where = f"{self.command_column} IN ({marks(batch)})"
            add(cursor, self.name, -sum(map(self.row_hash, self.rows(cursor, where, batch))))
            cursor.execute(f"DELETE FROM {self.name} WHERE {where}", batch)  # noqa: S608 - fixed names

    def digest(self, cursor: Any) -> str:
        """The table's digest, read on the DB-API connection or (a migration) a SQLAlchemy one."""
        sql = f"SELECT {', '.join(self.columns)} FROM {self.name}"  # noqa: S608 - fixed names
        if isinstance(cursor, sqlite3.Connection):
            rows: Iterable[Mapping[str, Any]] = dicts(cursor.execute(sql))
        else:
            from sqlalchemy import text

            rows = (dict(row._mapping) for row in cursor.execute(text(sql)))
        return digest_text(sum(map(self.row_hash, rows)))


#: Every sealed table, by name; filled by the modules that own them when they are imported.
SEALED: dict[str, SealedTable] = {}


def register(table: SealedTable) -> SealedTable:
    SEALED[table.name] = table
    return table


def seal_schema(connection: Any, tables: Iterable[str]) -> None:
    """Create the seals of a journal that has none: a new one (on the DB-API connection), or one migrated from
    before them (migration 0004, on Alembic's SQLAlchemy connection).

    Commands already there stay under the per-command rules; the linked chain starts after them. ``tables``:
    the sealed tables the schema has at this point.
    """
    last_sql = "SELECT coalesce(max(id), 0) FROM commands"
    insert_sql = "INSERT INTO seals (key, value) VALUES (:key, :value)"
    if isinstance(connection, sqlite3.Connection):
        last = int(connection.execute(last_sql).fetchone()[0])
    else:
        from sqlalchemy import text

        last = int(connection.execute(text(last_sql)).scalar_one())
    rows = [
        {"key": CHAIN_FROM, "value": str(last + 1)},
        {"key": HEAD, "value": head_text(last, ROOT_LINK)},
        {"key": ANCHORS, "value": digest_text(0)},
        *({"key": name, "value": SEALED[name].digest(connection)} for name in tables),
    ]
    if isinstance(connection, sqlite3.Connection):
        connection.executemany(insert_sql, rows)
    else:
        connection.execute(text(insert_sql), rows)
