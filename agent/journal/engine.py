"""Engine set-up: the state directory, SQLite settings, and migrations at start.

SQLite is configured for durability first: WAL with ``synchronous=FULL`` (a committed transition survives a
power cut), ``secure_delete`` (wiped rows do not linger in free pages), a busy timeout (the CLI may read
while the daemon writes), and ``BEGIN IMMEDIATE`` through the pysqlite recipe from SQLAlchemy's
documentation, so a transaction takes the write lock when it starts rather than failing at its first write.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from agent.errors import JournalError
from agent.journal.models import metadata

log = logging.getLogger(__name__)

DATABASE_NAME = "journal.sqlite3"
#: The newest migration this build ships; a test keeps it equal to the Alembic head.
SCHEMA_REVISION = "0003"
BUSY_TIMEOUT_MS = 10_000


def prepare_state_dir(state_dir: Path) -> Path:
    """Create the state directory (0700) and the database file (0600); return the database path."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
        database = state_dir / DATABASE_NAME
        fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(database, 0o600)
    except OSError as exc:
        raise JournalError(
            f"cannot prepare the state directory {state_dir}: {exc.strerror}; "
            "check its permissions or choose another with --state-dir"
        ) from exc
    return database


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # pysqlite's own BEGIN handling is switched off so that ours (below) is the only one.
    dbapi_connection.isolation_level = None
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "secure_delete=ON",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
    ):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _on_begin(connection: Any) -> None:
    # Writers take the write lock at BEGIN (IMMEDIATE) so they never fail half-way on a busy database;
    # readers use a plain deferred BEGIN and never block the daemon's writes.
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("immediate") else "BEGIN")


def create(database: Path) -> Engine:
    """An engine on ``database`` with the agent's SQLite settings."""
    # NullPool: one process, one writer; a fresh connection per use would cost more than it saves, so
    # callers keep one connection open (see Journal) and the pool never holds stale ones.
    # hide_parameters: SQLAlchemy's error texts would otherwise quote statement parameters, and one of them
    # can be a key exchange's secret.
    engine = create_engine(f"sqlite+pysqlite:///{database}", poolclass=NullPool, hide_parameters=True)
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: this build's newest)."""
    try:
        with engine.connect() as connection:
            current = _current_revision(connection)
            empty = _is_empty(connection)
        if revision == "head" and current == SCHEMA_REVISION:
            return  # the common start: nothing to do, and no need to load Alembic
        if revision == "head" and empty:
            _create_fresh(engine)
            return
        _run_alembic(engine, current, revision)
    except SQLAlchemyError as exc:
        raise JournalError(f"cannot migrate the journal at {engine.url.database}: {exc}") from exc


def _is_empty(connection: Any) -> bool:
    tables: int = connection.execute(text("SELECT count(*) FROM sqlite_master WHERE type='table'")).scalar_one()
    return tables == 0


def _current_revision(connection: Any) -> str | None:
    exists = connection.execute(
        text("SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'")
    ).first()
    if exists is None:
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def _create_fresh(engine: Engine) -> None:
    """A new journal: create the schema from the tables and stamp it at this build's revision.

    This is Alembic's documented way to start a database (create_all, then stamp head), done without
    importing Alembic: a guest's first boot then costs neither its start-up time nor its memory. A test
    keeps the result identical to running every migration.
    """
    with engine.connect() as connection:
        connection.info["immediate"] = True
        with connection.begin():
            if not _is_empty(connection):
                return  # another process created it meanwhile
            metadata.create_all(connection)
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                                    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:revision)"),
                               {"revision": SCHEMA_REVISION})
    log.info("journal created at schema %s", SCHEMA_REVISION)


def _run_alembic(engine: Engine, current: str | None, revision: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    with resources.as_file(resources.files("agent.migrations")) as location:
        config = AlembicConfig()
        config.set_main_option("script_location", str(location))
        known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
        if current is not None and current not in known:
            # A newer agent migrated this journal and was rolled back; migrations are additive.
            log.warning("journal schema %s is newer than this agent knows; using it as it is", current)
            return
        with engine.connect() as connection:
            connection.info["immediate"] = True
            with connection.begin():
                config.attributes["connection"] = connection
                if revision == "base":
                    command.downgrade(config, revision)
                else:
                    command.upgrade(config, revision)
    log.info("journal schema migrated from %s to %s", current or "nothing", revision)
