"""Engine set-up: the state directory, SQLite settings, the journal file's life, and migrations at start.

SQLite is configured for durability first: WAL with ``synchronous=FULL`` (a committed transition survives a
power cut), ``secure_delete`` (wiped rows do not linger in free pages), a busy timeout (the CLI may read
while the daemon writes), and ``BEGIN IMMEDIATE`` through the pysqlite recipe from SQLAlchemy's
documentation, so a transaction takes the write lock when it starts rather than failing at its first write.

The file itself is never created in place: a new journal is built under a temporary name and linked into
place once its schema is committed, so an interrupted creation cannot leave an empty ``journal.sqlite3``
behind. An existing file that is empty, not a database, not an agent journal or unreadable is moved aside
(``journal.sqlite3.broken-<UTC time>``, with its ``-wal`` and ``-shm``) rather than silently replaced, and the
new journal records where it went.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from agent.errors import JournalError
from agent.journal.models import metadata

log = logging.getLogger(__name__)

DATABASE_NAME = "journal.sqlite3"
#: The newest migration this build ships; a test keeps it equal to the Alembic head.
SCHEMA_REVISION = "0005"
BUSY_TIMEOUT_MS = 10_000
#: The files SQLite keeps beside a WAL database; they belong to it and move with it.
COMPANIONS = ("-wal", "-shm")
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Tables without which a database is not an agent journal.
_REQUIRED_TABLES = frozenset({"alembic_version", "commands", "transitions"})
_PARTIAL = ".new-"
#: SQLite's primary result codes that mean the file's content is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, and
#: SQLITE_ERROR, which a mangled schema gives); any other failure is the environment's.
_DAMAGED = frozenset({1, 11, 26})


def prepare_state_dir(state_dir: Path) -> Path:
    """Create the state directory (0700), keep an existing database 0600, and return the database path."""
    database = state_dir / DATABASE_NAME
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
        if database.exists():
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


def _readonly_uri(database: Path, immutable: bool) -> str:
    mode = "immutable=1" if immutable else "mode=ro"
    return f"file:{quote(str(database.resolve()))}?{mode}"


def _on_connect_readonly(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    dbapi_connection.execute("PRAGMA query_only=ON")


def create_readonly(database: Path) -> tuple[Engine, bool]:
    """A read-only engine on ``database`` that never writes, creates or changes a file.

    With a ``-wal`` beside the database (an agent has it open, or one stopped without closing it), the
    connection reads through it (``mode=ro``) and sees exactly what the agent committed. Without one, the
    database is read as immutable: SQLite would otherwise create the ``-wal`` and ``-shm`` files itself. On a
    read-only file system whose ``-shm`` is missing, ``mode=ro`` cannot open, so the file is read as immutable
    too, without the WAL's latest transactions; the second value says so (True: the WAL was left unread).
    """
    wal = database.with_name(database.name + "-wal")
    immutable = not wal.exists()
    if not immutable:
        try:
            probe = sqlite3.connect(_readonly_uri(database, False), uri=True)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                probe.close()
        except sqlite3.OperationalError:
            immutable = True  # -shm missing and not creatable: a read-only mount
        except sqlite3.DatabaseError:
            pass  # not a database at all: reading it reports that, as for any damaged journal
    unread_wal = immutable and wal.exists() and wal.stat().st_size > 0
    uri = _readonly_uri(database, immutable)
    engine = create_engine("sqlite+pysqlite://", poolclass=NullPool, hide_parameters=True,
                           creator=lambda: sqlite3.connect(uri, uri=True))
    event.listen(engine, "connect", _on_connect_readonly)
    event.listen(engine, "begin", _on_begin)
    return engine, unread_wal


# -- the journal file's life -----------------------------------------------------------------------------

def diagnose(database: Path) -> str | None:
    """Why ``database`` cannot serve as the agent's journal, or None when it can.

    A start-up check, so it stays cheap whatever the journal's size (well under a millisecond): the file's
    header, the schema, the agent's tables, and a read of the newest rows of each, which walks the right edge
    of their B-trees. Damage deeper in the file is what ``journal verify`` (``PRAGMA integrity_check``) finds:
    a full ``quick_check`` costs about 0.13 s on a warm cache and 1.7 s on a cold one for 100,000 commands.

    Only what the file holds makes it broken. What its surroundings cause (a lock held by another process,
    permissions, an I/O error, a full disk) raises JournalError instead: moving a sound journal aside for a
    passing condition would lose it just the same.
    """
    try:
        with database.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise JournalError(f"cannot read the journal {database}: {exc.strerror}") from exc
    if not header:
        return "the file is empty"
    if header != _SQLITE_MAGIC:
        return "the file is not a SQLite database"
    try:
        conn = sqlite3.connect(_readonly_uri(database, False), uri=True)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                return "the database holds no tables"
            missing = _REQUIRED_TABLES - tables
            if missing:
                return f"the database is not an agent journal (no {', '.join(sorted(missing))} table)"
            for table in sorted(tables & {*_REQUIRED_TABLES, "seals", "exchanges", "releases"}):
                conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid DESC LIMIT 1').fetchall()  # noqa: S608
            if not conn.execute("SELECT version_num FROM alembic_version").fetchall():
                return "the database is not an agent journal (no schema revision)"
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _DAMAGED:
            return f"the database cannot be read ({exc})"
        raise JournalError(f"cannot read the journal {database} ({exc}); it was left as it is") from exc
    return None


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def move_aside(database: Path) -> Path:
    """Rename the journal and its companions to ``<name>.broken-<UTC time>``; return the new path.

    The companions go first: a ``-wal`` left beside a new database would be replayed into it.
    """
    stamp = _utc_stamp()
    target = database.with_name(f"{database.name}.broken-{stamp}")
    serial = 1
    while any(target.with_name(target.name + suffix).exists() for suffix in ("", *COMPANIONS)):
        serial += 1
        target = database.with_name(f"{database.name}.broken-{stamp}-{serial}")
    try:
        for suffix in (*COMPANIONS, ""):
            source = database.with_name(database.name + suffix)
            if source.exists():
                os.rename(source, target.with_name(target.name + suffix))
        _fsync_directory(database.parent)
    except OSError as exc:
        raise JournalError(f"cannot move the broken journal {database} aside: {exc.strerror}; move it away "
                           "by hand and start again") from exc
    return target


def _fsync_directory(directory: Path) -> None:
    if os.name == "nt":  # NTFS journals renames itself; a directory cannot be opened for fsync
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_partial_creations(database: Path) -> None:
    """Remove what a creation interrupted by a crash left (its temporary files), never another's live one."""
    if os.name == "nt":
        return
    for partial in database.parent.glob(f"{database.name}{_PARTIAL}*"):
        pid = partial.name[len(database.name) + len(_PARTIAL):].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                partial.unlink()
        except OSError:
            pass  # alive under another user


def create_atomically(database: Path, predecessor: dict[str, str] | None = None) -> bool:
    """Build a new journal beside ``database`` and link it into place; False if another process won.

    The new file is complete (schema, stamp and seals committed, WAL checkpointed into it, fsynced) before
    its name appears, so a crash at any point leaves either no journal or a whole one.
    """
    partial = database.with_name(f"{database.name}{_PARTIAL}{os.getpid()}")
    try:
        for suffix in ("", *COMPANIONS):
            with contextlib.suppress(FileNotFoundError):
                partial.with_name(partial.name + suffix).unlink()
        os.close(os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create(partial)
        try:
            _create_fresh(engine, predecessor)
        finally:
            engine.dispose()  # the last connection's close checkpoints the WAL and removes it
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(partial, database)
        except FileExistsError:
            return False
        except OSError:
            # No hard links on this file system: rename, which can only lose a race it is unlikely to meet.
            if database.exists():
                return False
            os.rename(partial, database)
        _fsync_directory(database.parent)
        return True
    except OSError as exc:
        raise JournalError(f"cannot create the journal {database}: {exc.strerror}; check the state "
                           "directory's permissions and free space") from exc
    except SQLAlchemyError as exc:
        raise JournalError(f"cannot create the journal {database}: {exc}") from exc
    finally:
        for suffix in ("", *COMPANIONS):
            with contextlib.suppress(OSError):
                partial.with_name(partial.name + suffix).unlink()


def open_database(state_dir: Path) -> Path:
    """The journal's path, created if missing and replaced (moved aside, logged, recorded) if broken."""
    database = prepare_state_dir(state_dir)
    _remove_partial_creations(database)
    if database.exists():
        reason = diagnose(database)
    elif any(database.with_name(database.name + suffix).exists() for suffix in COMPANIONS):
        reason = "the database file is missing but its write-ahead log remains"
    else:
        create_atomically(database)
        return database
    if reason is None:
        return database
    moved = move_aside(database)
    log.error("the journal %s is unusable (%s): moved it aside to %s and started a new journal; commands "
              "journaled before are in the old file only", database, reason, moved)
    note = {"path": str(moved), "moved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reason": reason}
    create_atomically(database, note)
    return database


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


def _create_fresh(engine: Engine, predecessor: dict[str, str] | None = None) -> None:
    """A new journal: create the schema from the tables and stamp it at this build's revision.

    This is Alembic's documented way to start a database (create_all, then stamp head), done without
    importing Alembic: a guest's first boot then costs neither its start-up time nor its memory. A test
    keeps the result identical to running every migration. ``predecessor`` records a broken journal this one
    replaces (its new path, when, why).
    """
    from agent.journal import seals

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
            seals.seal_schema(connection, seals.SEALED)
            if predecessor is not None:
                connection.execute(text("INSERT INTO seals (key, value) VALUES (:key, :value)"),
                                   {"key": seals.PREDECESSOR, "value": json.dumps(predecessor, sort_keys=True)})
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
