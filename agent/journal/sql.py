"""Small SQL helpers shared by the journal's modules (all run on the DB-API connection)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

#: Ids per statement where a list of them is bound (SQLite's limit is far above).
CHUNK = 500


class Compiled:
    """A statement built with SQLAlchemy and compiled once, at import, to SQLite SQL with named parameters.

    The request hot path runs these on the DB-API cursor: building and compiling a statement per call cost
    ten times the statement itself (``bench/roundtrip.py``).
    """

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=sqlite_dialect(paramstyle="named"))
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)

    def __call__(self, cursor: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        return cursor.execute(self.sql, {**self.defaults, **params})


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
