"""The journal's connection: the state directory, SQLite settings, the journal file's life, and migrations.

SQLite is configured for durability first: WAL with ``synchronous=FULL`` (a committed transition survives a
power cut), ``secure_delete`` (wiped rows do not linger in free pages), a busy timeout (the CLI may read
while the daemon writes), and the driver's own transaction handling off (``isolation_level=None``), so that
the journal's ``BEGIN IMMEDIATE`` takes the write lock when a transaction starts rather than failing at its
first write (``Journal.transaction``; the pysqlite recipe from SQLAlchemy's documentation does the same for a
SQLAlchemy connection, ``agent.journal.alchemy``).

Nothing here loads SQLAlchemy or Alembic: the daemon opens, creates and checks its journal with ``sqlite3``
alone. A new journal is created from ``agent.journal.ddl`` (generated from the models). A journal written by
an older release is migrated by Alembic in a child process (``agent.journal.migrate``), so the daemon never
carries Alembic's and SQLAlchemy's memory.

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
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from agent.errors import JournalError

log = logging.getLogger(__name__)

DATABASE_NAME = "journal.sqlite3"
#: Every migration this build ships, oldest first; a test keeps them equal to Alembic's.
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")
#: The newest migration this build ships.
SCHEMA_REVISION = REVISIONS[-1]
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
    if sys.platform == "win32":  # SYSTEM and Administrators only (agent.winacl): 0700's analogue there
        from agent.winacl import secure_state_dir

        secure_state_dir(state_dir)
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


def configure(connection: sqlite3.Connection) -> None:
    """The agent's settings on a new connection to its journal."""
    # pysqlite's own BEGIN handling is switched off so that ours (``Journal.transaction``) is the only one.
    connection.isolation_level = None
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "secure_delete=ON",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
    ):
        connection.execute(f"PRAGMA {pragma}")


def connect(database: Path) -> sqlite3.Connection:
    """A connection to ``database`` with the agent's SQLite settings."""
    # check_same_thread off, as SQLAlchemy set it for a file database: the handle's user keeps to one thread
    # at a time, not always the one that opened it.
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        configure(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _readonly_uri(database: Path, immutable: bool) -> str:
    mode = "immutable=1" if immutable else "mode=ro"
    return f"file:{quote(str(database.resolve()))}?{mode}"


def configure_readonly(connection: sqlite3.Connection) -> None:
    connection.isolation_level = None
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA query_only=ON")


def connect_readonly(database: Path) -> tuple[Callable[[], sqlite3.Connection], bool]:
    """How to open a read-only connection to ``database`` that never writes, creates or changes a file.

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

    def opener() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True)
        try:
            configure_readonly(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    return opener, unread_wal


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
        connection = connect(partial)
        try:
            _create_fresh(connection, predecessor)
        finally:
            connection.close()  # the last connection's close checkpoints the WAL and removes it
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
    except sqlite3.Error as exc:
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


def migrate(database: Path, revision: str = "head") -> None:
    """Bring the schema of the journal at ``database`` to ``revision`` (default: this build's newest).

    An empty database gets the schema whole (``_create_fresh``); one at an older revision is migrated by
    Alembic in a child process (``agent.journal.migrate``); one at a revision this build does not know (a newer
    release migrated it, then was rolled back) is used as it is, since migrations are additive.
    """
    try:
        connection = sqlite3.connect(database, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            current = _current_revision(connection)
            if revision == "head" and current == SCHEMA_REVISION:
                return  # the common start: nothing to do
            if revision == "head" and _is_empty(connection):
                configure(connection)
                _create_fresh(connection)
                return
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise JournalError(f"cannot migrate the journal at {database}: {exc}") from exc
    if current is not None and current not in REVISIONS:
        log.warning("journal schema %s is newer than this agent knows; using it as it is", current)
        return
    _run_alembic(database, current, revision)


def _is_empty(connection: sqlite3.Connection) -> bool:
    tables: int = connection.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    return tables == 0


def _current_revision(connection: sqlite3.Connection) -> str | None:
    exists = connection.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'").fetchone()
    if exists is None:
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def _create_fresh(connection: sqlite3.Connection, predecessor: dict[str, str] | None = None) -> None:
    """A new journal: create the schema from ``agent.journal.ddl`` and stamp it at this build's revision.

    This is Alembic's documented way to start a database (create_all, then stamp head), done without
    SQLAlchemy or Alembic: a guest's first boot then costs neither's start-up time nor memory. Tests keep the
    DDL what the models generate, and the result identical to running every migration. ``predecessor``
    records a broken journal this one replaces (its new path, when, why).
    """
    from agent.journal import ddl, seals

    connection.execute("BEGIN IMMEDIATE")
    try:
        if not _is_empty(connection):
            connection.execute("ROLLBACK")
            return  # another process created it meanwhile
        for statement in ddl.STATEMENTS:
            connection.execute(statement)
        connection.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (SCHEMA_REVISION,))
        seals.seal_schema(connection, seals.SEALED)
        if predecessor is not None:
            connection.execute('INSERT INTO seals ("key", value) VALUES (?, ?)',
                               (seals.PREDECESSOR, json.dumps(predecessor, sort_keys=True)))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    log.info("journal created at schema %s", SCHEMA_REVISION)


#: What the child process runs: ``agent.journal.migrate`` from the very package this process runs.
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from agent.journal.migrate import main; "
          "sys.exit(main(sys.argv[2:]))")


def _run_alembic(database: Path, current: str | None, revision: str) -> None:
    """Migrate with Alembic in a child process, so that neither Alembic nor SQLAlchemy is ever loaded here;
    the child's failure becomes a JournalError with its last words."""
    import subprocess

    failure = f"cannot migrate the journal at {database} from schema {current or 'nothing'} to {revision}"
    if getattr(sys, "frozen", False):  # a frozen build has no interpreter to start: migrate in this process
        from agent.journal import migrate as migration

        try:
            migration.run(database, revision)
        except Exception as exc:
            raise JournalError(f"{failure}: {type(exc).__name__}: {exc}") from exc
    else:
        package_root = Path(__file__).resolve().parents[2]
        try:
            result = subprocess.run([sys.executable, "-c", _CHILD, str(package_root), str(database), revision],
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        except OSError as exc:  # no interpreter to start (sys.executable missing or empty)
            raise JournalError(f"{failure}: cannot start {sys.executable or 'a Python interpreter'} to run the "
                               f"migration ({exc.strerror or exc}); start the agent with a Python that exists") from exc
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            raise JournalError(f"{failure}: {lines[-1] if lines else f'exit status {result.returncode}'}")
    log.info("journal schema migrated from %s to %s", current or "nothing", revision)
