"""The journal's SQL on the DB-API connection: statements as literal text, and small shared helpers.

The daemon never loads SQLAlchemy (about 16 MB of memory and a quarter of a second of start on a guest), so
everything it runs is literal SQLite SQL here and in the modules that write (``core``, ``seals``,
``exchanges``, ``releases``, ``retention``). SQLAlchemy remains the schema's single definition
(``agent.journal.models``): ``tests/journal/test_sql.py`` builds the SQLAlchemy statement each write-path
``Statement`` stands for, compiles it for SQLite and asserts the two are the same text, and checks the select
lists and the record dataclasses against the models; the other queries (recovery, retention, seals) are
covered by the tests of what they do. Change a table, and that test names each statement to write again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

#: Ids per statement where a list of them is bound (SQLite's limit is far above).
CHUNK = 500


class Statement:
    """One statement as SQLite SQL with named parameters, run on the DB-API cursor.

    The request hot path runs these: building and compiling a statement per call would cost ten times the
    statement itself (``bench/roundtrip.py``), and importing SQLAlchemy to build them costs the daemon a third
    of its memory.
    """

    def __init__(self, sql: str) -> None:
        self.sql = " ".join(sql.split())

    def __call__(self, cursor: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        return cursor.execute(self.sql, params)

    def __repr__(self) -> str:
        return f"Statement({self.sql!r})"


def columns(table: str, names: Iterable[str]) -> str:
    """``table.a, table.b, ...``: a select list as SQLAlchemy writes one."""
    return ", ".join(f"{table}.{quote(name)}" for name in names)


#: Column names SQLite (and SQLAlchemy's compiler for it) quotes.
_RESERVED = frozenset({"key", "trigger"})


def quote(name: str) -> str:
    return f'"{name}"' if name in _RESERVED else name


def dicts(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """The rows of ``cursor`` as dicts keyed by column name."""
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    batch: list[int] = []
    for item in ids:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def marks(items: Sequence[object]) -> str:
    """The ``?`` placeholders for an ``IN (...)`` list of ``items``."""
    return ",".join("?" * len(items))
