"""The journal through SQLAlchemy: for the inspection commands, the migrations and the tests, never the daemon.

The daemon runs literal SQL on its ``sqlite3`` connection (``agent.journal.core``). What reads the journal with
SQLAlchemy statements (``Journal.read``) gets an engine over that same connection (``engine_over``), so its
reads see exactly what the handle sees. The migrations (``agent.journal.migrate``) and the tests open an
engine of their own with the agent's settings (``create``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool, StaticPool

from agent.journal import engine as engine_setup


def _on_begin(connection: Any) -> None:
    # The pysqlite recipe from SQLAlchemy's documentation: the driver's own BEGIN is off (isolation_level None,
    # set by agent.journal.engine), and this is the only one. Writers take the write lock at BEGIN (IMMEDIATE)
    # so they never fail half-way on a busy database; readers use a plain deferred BEGIN and never block the
    # daemon's writes.
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("immediate") else "BEGIN")


def engine_over(driver: Callable[[], sqlite3.Connection], path: str) -> Engine:
    """An engine whose one connection is ``driver()``, already configured (a ``Journal``'s own connection)."""
    # StaticPool: the one connection, handed out again and again; the journal closes it itself.
    # hide_parameters: SQLAlchemy's error texts would otherwise quote statement parameters, and one of them
    # can be a key exchange's secret.
    engine = create_engine("sqlite+pysqlite://", poolclass=StaticPool, creator=driver, hide_parameters=True)
    engine.url = engine.url.set(database=path)
    event.listen(engine, "begin", _on_begin)
    return engine


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    engine_setup.configure(dbapi_connection)


def create(database: Path) -> Engine:
    """An engine on ``database`` with the agent's SQLite settings (a connection of its own per use)."""
    engine = create_engine(f"sqlite+pysqlite:///{database}", poolclass=NullPool, hide_parameters=True)
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine
