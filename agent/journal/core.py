"""The journal core: the agent's handle on its database, the commands and their transitions.

Every write is one ``BEGIN IMMEDIATE`` transaction, run by ``transaction``, the one write helper, and
committed before the method returns: when a method returns, the fact is on disk. Inside ``batch`` (group
commit), the writes of the block share one transaction instead, each of them still whole or absent, and the
facts are committed when the block ends (on disk, unless the batch was asked not to wait for it).

The handle is one DB-API (``sqlite3``) connection, and everything the daemon asks of it, writes and reads
alike, is literal SQL run on that connection: the daemon never loads SQLAlchemy (``agent.journal.sql`` says
how the literal statements are held to the models). SQLAlchemy is loaded only when something asks for it:
``read`` and ``records`` take SQLAlchemy statements for the inspection commands and tests, and ``engine`` and
``conn`` give a SQLAlchemy engine and connection over the handle's own connection (``agent.journal.alchemy``).

What a command is, for this module: a row that ``receive`` creates, moved by ``transition`` (with the
machine's audit detail, its typed working data, its reply, and any rows of its own tables, in one
transaction), until it has a reply; ``finished`` means that. Which states exist and which are final is each
machine's business (``agent.machines``), not the journal's. A command type's own tables live in their own
modules (``agent.journal.exchanges``, ``agent.journal.releases``), which write through ``RecordWrite``.

The chains, seals, retention and verification are in ``chain``, ``seals``, ``retention`` and ``verify``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent.errors import CommandNotFound, JournalError
from agent.journal import engine as engine_setup
from agent.journal import seals, times
from agent.journal.chain import ROOT_LINK, canonical, chain_hash, genesis_hash, storable, storable_or_none
from agent.journal.checkpoint import Checkpointer, checkpoint_without_waiting
from agent.journal.records import (
    COMMAND_COLUMNS,
    TRANSITION_COLUMNS,
    CommandRecord,
    Predecessor,
    RecordWrite,
    TransitionRecord,
    Verification,
)
from agent.journal.sql import Statement, columns, dicts, quote

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

T = TypeVar("T")

_MUTABLE = ("state", "attempts", "updated_at", "finished_at", "reply_code", "reply_message", "replied_at",
            "reply_removed_at", "last_seq", "last_hash", "data")
#: Every command column, as ``CommandRecord`` takes them (the select list ``select(models.commands)`` has).
SELECT_COMMANDS = f"SELECT {columns('commands', COMMAND_COLUMNS)} FROM commands"  # noqa: S608 - fixed names
SELECT_TRANSITIONS = f"SELECT {columns('transitions', TRANSITION_COLUMNS)} FROM transitions"  # noqa: S608 - fixed names
#: Bytes a WAL file is cut back to after the daemon's checkpointer started it anew.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
_NEW_COMMAND = COMMAND_COLUMNS[1:]
_NEW_TRANSITION = TRANSITION_COLUMNS[1:]
# The id is never below the head's successor: ids the chain has used are not handed out again, even when
# the newest rows were deleted outside the agent. ``AS anon_1`` here and ``OFFSET 0`` in _FIND_REQUEST are
# SQLAlchemy's own compiled text, kept so that tests/journal/test_sql.py can compare the two texts exactly.
_INSERT_COMMAND = Statement(f"""
    INSERT INTO commands ({", ".join(COMMAND_COLUMNS)})
    VALUES (max(:floor, (SELECT coalesce(max(commands.id), 0) + 1 AS anon_1 FROM commands)),
    {", ".join(f":{c}" for c in _NEW_COMMAND)})""")  # noqa: S608 - fixed names
_INSERT_TRANSITION = Statement(f"""
    INSERT INTO transitions ({", ".join(map(quote, _NEW_TRANSITION))})
    VALUES ({", ".join(f":{c}" for c in _NEW_TRANSITION)})""")  # noqa: S608 - fixed names
_UPDATE_COMMAND = Statement(f"""
    UPDATE commands SET {", ".join(f"{c}=:{c}" for c in _MUTABLE)}
    WHERE commands.id = :cid AND commands.last_seq = :expected""")  # noqa: S608 - fixed names
_ADVANCE_HEAD = Statement(f"""
    UPDATE seals SET value=:new WHERE seals."key" = '{seals.HEAD}' AND seals.value = :old""")  # noqa: S608 - fixed names
_FIND_REQUEST = Statement(f"""
    {SELECT_COMMANDS} WHERE commands.request_id = :request_id ORDER BY commands.id DESC LIMIT 1 OFFSET 0""")


def command_filter(name: str | None = None, state: str | None = None,
                   since: str | None = None) -> tuple[str, dict[str, Any]]:
    """The conditions on the commands table that ``journal list`` and ``journal timing`` filter with: a
    ``WHERE`` clause (empty for none) and its parameters."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if name:
        conditions.append("commands.name = :name")
        params["name"] = storable(name)
    if state:
        conditions.append("commands.state = :state")
        params["state"] = state
    if since:
        # Journal times are fixed-width UTC text, so text order is time order.
        conditions.append("commands.received_at >= :since")
        params["since"] = since
    return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), params


class _StaleHead(Exception):
    """The head seal is not what this handle remembered: reload it and journal the command again."""


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception: the one SQLAlchemy wraps (its ``orig``), or ``exc`` itself."""
    return getattr(exc, "orig", None) or exc


def _cause(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement text and links."""
    cause = _driver_error(exc)
    return f"{type(cause).__name__}: {cause}"


class Journal:
    """The agent's handle on its database; holds one connection for the life of the process.

    ``connect`` opens that connection (``agent.journal.engine``): the handle opens it on first use.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], path: Path, readonly: bool = False) -> None:
        self._connect = connect
        self.readonly = readonly
        self._path = path
        self._driver: sqlite3.Connection | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        #: When (``time.monotonic``) a wipe's checkpoint was last held off by a reader, or None when no wipe is
        #: pending; the daemon retries it with ``wipe``.
        self.wipe_deferred_at: float | None = None
        # The chain's newest command (id, genesis), as this process last wrote or read it.
        self._head: tuple[int, str] | None = None
        # The journal's tally (``seals.Tally``), as this process last wrote or read it.
        self._tally: seals.Tally | None = None
        #: What a command type's records module keeps in memory for this handle (exchange deadlines, say),
        #: by module name; see ``agent.journal.exchanges``.
        self.cache: dict[str, Any] = {}
        #: Runs the WAL checkpoints off the commits, once ``checkpoint_in_background`` started it.
        self._checkpointer: Checkpointer | None = None
        #: Inside ``batch``: what the batch's writes do once it is committed, in order; None outside a batch.
        self._after_commit: list[Callable[[], None]] | None = None

    @classmethod
    def open(cls, state_dir: Path) -> Journal:
        """Open the agent's journal for writing: create it if missing, replace it if broken, migrate it.

        A broken journal (empty, not a database, not an agent journal, unreadable) is moved aside, an ERROR
        names both files, and the new journal records it (see ``predecessor``).
        """
        database = engine_setup.open_database(state_dir)
        engine_setup.migrate(database)
        return cls(lambda: engine_setup.connect(database), database)

    @classmethod
    def open_readonly(cls, state_dir: Path) -> Journal:
        """Open an existing journal for inspection: no file, schema, mode or migration is ever written."""
        database = state_dir / engine_setup.DATABASE_NAME
        if not database.is_file():
            raise JournalError(f"no journal at {database}")
        connect, unread_wal = engine_setup.connect_readonly(database)
        if unread_wal:
            log.warning("the journal's write-ahead log %s-wal cannot be read on this read-only file system; "
                        "showing the journal as of its last checkpoint", database)
        return cls(connect, database, readonly=True)

    @property
    def path(self) -> str:
        return str(self._path)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._release_sqlalchemy()
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    @property
    def driver(self) -> sqlite3.Connection:
        """The handle's DB-API connection: every write and every read of the daemon runs on it."""
        if self._driver is None:
            try:
                driver = self._connect()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot open the journal {self.path}: {_cause(exc)}") from exc
            if self._checkpointer is not None:  # a connection opened again (see ``_drop``)
                try:
                    self._leave_checkpoints_to_the_thread(driver)
                except JournalError:
                    driver.close()
                    raise
            self._driver = driver
        return self._driver

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine whose one connection is ``driver`` (loads SQLAlchemy: never on the daemon's
        path)."""
        if self._engine is None:
            from agent.journal.alchemy import engine_over

            driver = self.driver
            self._engine = engine_over(lambda: driver, self.path)
        return self._engine

    @property
    def conn(self) -> Connection:
        """A SQLAlchemy connection on ``driver``, for ``read`` (loads SQLAlchemy: never on the daemon's path)."""
        if self._conn is None:
            from sqlalchemy.exc import SQLAlchemyError

            try:
                self._conn = self.engine.connect()
            except SQLAlchemyError as exc:
                raise JournalError(f"cannot open the journal {self.path}: {_cause(exc)}") from exc
        return self._conn

    def write_failed(self, exc: BaseException) -> JournalError:
        cause = _driver_error(exc)
        return JournalError(f"journal write failed ({type(cause).__name__}): check the disk and permissions "
                            f"of {self.path}")

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(cursor)`` in one BEGIN IMMEDIATE transaction and commit it: the one way to write.
        Inside ``batch`` it runs in a savepoint of the batch's transaction instead."""
        driver = self.driver
        if self._after_commit is not None:
            return self._in_savepoint(driver, work)
        try:
            driver.execute("BEGIN IMMEDIATE")
            try:
                result = work(driver)
                driver.execute("COMMIT")
            except BaseException:
                self._tally = None  # the seal rolled back with the write: read it again
                self._undo(driver)
                raise
        except sqlite3.Error as exc:
            raise self.write_failed(exc) from exc
        self._wal_grew()
        return result

    def _in_savepoint(self, driver: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            driver.execute("SAVEPOINT write")
            try:
                result = work(driver)
            except BaseException:
                self._tally = None  # the seal rolled back with the write: read it again
                # A full disk or an I/O error can make SQLite roll the whole transaction back itself: then
                # there is no savepoint left to undo, and the write's own error is the one to report.
                with contextlib.suppress(sqlite3.Error):
                    driver.execute("ROLLBACK TO write")
                    driver.execute("RELEASE write")
                raise
            driver.execute("RELEASE write")
        except sqlite3.Error as exc:
            raise self.write_failed(exc) from exc
        return result

    @contextlib.contextmanager
    def batch(self, durable: bool = True) -> Iterator[None]:
        """Group commit: every write inside the block joins one transaction, committed when the block ends.

        Each write is still whole or absent (a savepoint): one that fails is undone alone and raises to its
        caller, and the others stay. The block's writes are committed also when it ends by an exception (they
        are facts all the same), then the exception goes on. What a write does once committed (a records
        module's ``committed``, a wipe) runs after the commit, in both cases. If the commit fails, none of the
        block's writes is journaled, and JournalError says so.

        ``durable=False`` commits without waiting for the disk (SQLite's ``synchronous=NORMAL``): only for
        facts whose loss in a power cut merely repeats harmless work, such as a reply's delivery (delivered
        again at the next start). The next durable commit takes them to the disk with its own. A block inside
        another batch joins it, and with it the outer batch's durability.
        """
        if self._after_commit is not None:
            yield  # already in a batch: its commit is this block's too
            return
        driver = self.driver
        after: list[Callable[[], None]] = []
        try:
            if not durable:
                driver.execute("PRAGMA synchronous=NORMAL")
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                driver.execute("PRAGMA synchronous=FULL")
            raise self.write_failed(exc) from exc
        self._after_commit = after
        try:
            yield
        finally:
            self._after_commit = None
            try:
                driver.execute("COMMIT")
            except sqlite3.Error as exc:
                self._undo(driver)
                # What this handle remembers of the chain may be ahead of the journal now: read it again.
                self._head, self._tally = None, None
                raise self.write_failed(exc) from exc
            finally:
                if not durable:
                    self._durable_again(driver)
            self._wal_grew()
            # Committed: what the writes do next is due, also when the block itself ended by an exception.
            for callback in after:
                callback()

    def _durable_again(self, driver: sqlite3.Connection) -> None:
        """Back to ``synchronous=FULL`` after a batch that did not wait for the disk. SQLite refuses while a
        transaction is open (one whose commit and rollback both failed): then the connection is dropped, which
        ends that transaction, and the next write opens a new one at FULL, rather than every later commit
        going without a sync."""
        if self._driver is not driver:
            return  # dropped already (``_undo``): the next connection starts at FULL
        try:
            driver.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            self._drop(driver, f"it could not wait for the disk again ({_cause(exc)})")

    def _undo(self, driver: sqlite3.Connection) -> None:
        """Roll back what a failed write left. When SQLite cannot (the rollback fails too), the connection is
        dropped, which ends that transaction: otherwise every later write would fail to begin one, and every
        read of this handle would see the failed write."""
        if driver.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the write's own error is the one to report
                driver.execute("ROLLBACK")
        if driver.in_transaction:
            self._drop(driver, "a failed write could not be rolled back")

    def _drop(self, driver: sqlite3.Connection, why: str) -> None:
        """Close ``driver`` and what was built over it; the next use of the handle opens a new connection."""
        log.warning("journal connection reopened: %s", why)
        with contextlib.suppress(Exception):  # the failure being handled is the one to report
            self._release_sqlalchemy()
        with contextlib.suppress(sqlite3.Error):
            driver.close()
        if self._driver is driver:
            self._driver = None
        self._head, self._tally = None, None

    def _release_sqlalchemy(self) -> None:
        """Close the SQLAlchemy connection and engine built over the handle's connection (``conn``,
        ``engine``); both are let go and both are closed, even when the first close fails."""
        conn, engine, self._conn, self._engine = self._conn, self._engine, None, None
        try:
            if conn is not None:
                conn.close()
        finally:
            if engine is not None:
                engine.dispose()

    def checkpoint_in_background(self) -> None:
        """Take the WAL checkpoints out of this handle's commits and run them in a thread of their own
        (``agent.journal.checkpoint``): the daemon's journal, where a request must never wait for one. When the
        thread's connection cannot be opened, the commits keep checkpointing, as SQLite does by default."""
        if self._checkpointer is not None or self.readonly:
            return
        try:
            connection = self._connect()
        except sqlite3.Error as exc:
            log.warning("journal checkpoints stay in the commits: cannot open a connection for them (%s)",
                        _cause(exc))
            return
        try:
            self._leave_checkpoints_to_the_thread(self.driver)
        except JournalError:
            connection.close()
            raise
        self._checkpointer = Checkpointer(connection)
        self._checkpointer.start()

    def _leave_checkpoints_to_the_thread(self, driver: sqlite3.Connection) -> None:
        """The settings of the handle's connection while a checkpointer runs."""
        try:
            driver.execute("PRAGMA wal_autocheckpoint=0")
            # A WAL that grew (a burst, an older release's) is cut back to this once a checkpoint restarts it.
            driver.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            raise JournalError(f"journal setting failed ({_cause(exc)}) in {self.path}") from exc

    def checkpoints_behind(self) -> bool:
        """Whether writes that can wait (a large prune) should hold back a moment: the background checkpoints
        are far behind this handle's commits, or their last pass was slow (``Checkpointer.behind``)."""
        return self._checkpointer is not None and self._checkpointer.behind

    def checkpoints_held_by_reader(self) -> bool:
        """Whether a reader (``journal verify``, a backup) keeps the background checkpoints from copying what
        was committed after its snapshot (``Checkpointer.held_by_reader``): until it is done, the WAL keeps
        every page written meanwhile."""
        return self._checkpointer is not None and self._checkpointer.held_by_reader

    def checkpoint_soon(self) -> None:
        """Have the background checkpointer pass at once, also when it is caught up: after a commit that wrote
        pages all over the file (a prune's batch, a reply collection's), so that they are copied and synced
        before the next such batch adds more; a pass that had many to sync would hold up every request's sync
        queued behind it."""
        if self._checkpointer is not None:
            self._checkpointer.pass_now()

    def _wal_grew(self) -> None:
        """After a commit: ask the checkpointer for a pass, or start a long WAL anew when it asks, past
        ``checkpoint.FORCE_AT`` frames that its own restarts did not keep it under (see
        ``agent.journal.checkpoint``)."""
        checkpointer = self._checkpointer
        if checkpointer is None:
            return
        if checkpointer.restart_wanted and self._after_commit is None:
            checkpointer.restart_wanted = False
            driver = self.driver
            with checkpointer.paused():
                # Without waiting: a reader (journal inspection) that holds the WAL makes it a passive pass.
                try:
                    checkpoint_without_waiting(driver, "RESTART")
                except sqlite3.Error as exc:
                    # The commit before it stands: a full disk, say, only leaves the WAL long a while longer.
                    checkpointer.restart_wanted = True
                    log.warning("journal WAL restart failed (%s); it is tried again after the next commit",
                                _cause(exc))
        checkpointer.nudge()

    def _committed(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current write is committed: now, or at the end of the batch."""
        if self._after_commit is not None:
            self._after_commit.append(callback)
        else:
            callback()

    def read(self, statement: Any) -> Any:
        """The rows of a SQLAlchemy statement, ending the read transaction at once (an open one would hold off
        the checkpoint that wipes a secret). For inspection and tests: it loads SQLAlchemy."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            result = self.conn.execute(statement)
            rows = result.all()
            self.conn.rollback()
            return rows
        except SQLAlchemyError as exc:
            raise JournalError(f"journal read failed ({_cause(exc)}) in {self.path}") from exc

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """The rows of a literal SQL query, as dicts, read to the end at once: no read transaction outlives the
        call (an open one would hold off the checkpoint that wipes a secret). Inside ``batch``, it sees the
        batch's writes."""
        try:
            return list(dicts(self.driver.execute(sql, params)))
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed ({_cause(exc)}) in {self.path}") from exc

    def command_records(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[CommandRecord]:
        """The commands a literal query (starting with ``SELECT_COMMANDS``) selects."""
        return [CommandRecord(**row) for row in self.query(sql, params)]

    # -- writes ---------------------------------------------------------------------------------------

    def step(self, cursor: sqlite3.Connection, record: CommandRecord, trigger: str, dest: str,
             detail: dict[str, Any] | None, at: str, data: str | None = None, **changes: Any) -> CommandRecord:
        """Append one transition row and move the command row with it, guarded by the chain position.

        ``data``: the machine's new working data (JSON), or None to keep what the command has.
        """
        seq = record.last_seq + 1
        row: dict[str, Any] = {"command_id": record.id, "seq": seq, "trigger": trigger,
                               "source": record.state if record.last_seq else None, "dest": dest, "at": at,
                               "detail": canonical(detail), "data": data}
        digest = chain_hash(record.last_hash, row)
        moved = dataclasses.replace(record, state=dest, last_seq=seq, last_hash=digest, updated_at=at,
                                    data=record.data if data is None else data, **changes)
        params = {c: getattr(moved, c) for c in _MUTABLE}
        if _UPDATE_COMMAND(cursor, {**params, "cid": record.id, "expected": record.last_seq}).rowcount != 1:
            raise JournalError(f"command {record.id} was changed by another writer; reload it from the journal")
        _INSERT_TRANSITION(cursor, {**row, "prev_hash": record.last_hash, "hash": digest})
        return moved

    def _load_head(self, cursor: sqlite3.Connection) -> tuple[int, str]:
        value = seals.read(cursor, seals.HEAD) or ""
        command_id, _, link = value.partition(":")
        if command_id.isdigit() and len(link) == len(ROOT_LINK):
            return int(command_id), link
        # The seal was removed or edited outside the agent. The agent goes on serving with a chain that
        # restarts here; verify reports the break.
        log.warning("the journal's head seal is missing or unreadable; 'journal verify' will report the break "
                    "in the command chain")
        last = int(cursor.execute("SELECT coalesce(max(id), 0) FROM commands").fetchone()[0])
        seals.UPSERT(cursor, {"key": seals.HEAD, "value": seals.head_text(last, ROOT_LINK)})
        return last, ROOT_LINK

    def receive(self, request_id: str, domain_path: str, name: str | None, machine: str, digest: str,
                value: str | None, detail: dict[str, Any] | None = None) -> CommandRecord:
        """Journal a new request in state ``received``: the first durable fact about it."""
        at = times.utcnow()
        identity: dict[str, Any] = {
            "request_id": storable(request_id), "domain_path": storable(domain_path),
            "name": storable_or_none(name), "machine": storable(machine), "value": storable_or_none(value),
            "digest": storable(digest), "received_at": at}
        head: list[tuple[int, str]] = []

        def work(cursor: sqlite3.Connection) -> CommandRecord:
            head_id, link = self._head or self._load_head(cursor)
            before = self.current_tally(cursor)
            values: dict[str, Any] = {
                **identity, "state": "received", "attempts": 1, "updated_at": at, "finished_at": None,
                "reply_code": None, "reply_message": None, "replied_at": None, "reply_removed_at": None,
                "last_seq": 0, "last_hash": "", "data": None}
            command_id = _INSERT_COMMAND(cursor, {**values, "floor": head_id + 1}).lastrowid
            assert command_id is not None
            genesis = genesis_hash({**identity, "id": command_id}, link)
            created = self.step(cursor, CommandRecord(id=command_id, **{**values, "last_hash": genesis}),
                                "receive", "received", detail, at)
            if _ADVANCE_HEAD(cursor, {"old": seals.head_text(head_id, link),
                                      "new": seals.head_text(command_id, genesis)}).rowcount != 1:
                raise _StaleHead
            head.append((command_id, genesis))
            # Kept here, as current_tally and count_removed keep it: a write that fails drops it (``transaction``).
            self._tally = seals.put_tally(cursor, seals.Tally(before.count + 1, before.oldest or command_id,
                                                              command_id))
            return created

        try:
            created = self.transaction(work)
        except _StaleHead:
            self._head = None  # another handle journaled a command: read where the chain is, once
            try:
                created = self.transaction(work)
            except _StaleHead:
                raise JournalError("the journal's command chain keeps moving under this agent: is another "
                                   f"agent writing {self.path}?") from None
        self._head = head[-1]
        return created

    def transition(self, record: CommandRecord, trigger: str, dest: str, detail: dict[str, Any] | None = None,
                   reply: dict[str, str] | None = None, records: RecordWrite | None = None,
                   data: str | None = None) -> CommandRecord:
        """Journal a state change in one transaction, with what comes with it: the audit ``detail``, the
        machine's new working ``data``, the ``reply`` (which finishes the command), and ``records``, rows of
        the command type's own tables (a key exchange). All of it is durable, or none of it.
        """
        at = times.utcnow()
        changes: dict[str, Any] = {}
        if reply is not None:
            reply = {key: storable(value) for key, value in reply.items()}
            changes["reply_code"] = reply["returncode"]
            changes["reply_message"] = reply["message"]
            if record.finished_at is None:
                changes["finished_at"] = at
            detail = {**(detail or {}), "reply": reply}  # the chain covers the reply too

        def work(cursor: sqlite3.Connection) -> CommandRecord:
            moved = self.step(cursor, record, trigger, dest, detail, at, data=data, **changes)
            if records is not None:
                records.apply(cursor, moved, at)
            return moved

        moved = self.transaction(work)
        if records is not None:
            if records.committed is not None:
                committed = records.committed
                self._committed(lambda: committed(self))
            if records.wipes:
                self._committed(self.wipe)
        return moved

    def record_attempt(self, record: CommandRecord) -> CommandRecord:
        """Count one more start of an unfinished command (a recovery)."""
        attempts = record.attempts + 1
        return self.transaction(lambda cursor: self.step(
            cursor, record, "recover", record.state, {"attempt": attempts}, times.utcnow(), attempts=attempts))

    def mark_replied(self, record: CommandRecord, written: bool = True) -> CommandRecord:
        """Journal that the reply was written and the request deleted; ``written`` False records a reply
        that could not be written (its path is too long for XenStore) and a request removed unanswered.

        A delivery puts the reply back in data/guest also when an earlier one was collected (a request sent
        again after that): it is to be collected again (an unwritten one only has the collection delete a
        missing node, which is harmless)."""
        at = times.utcnow()
        detail = None if written else {"reply_written": False}
        return self.transaction(lambda cursor: self.step(
            cursor, record, "deliver", record.state, detail, at, replied_at=at, reply_removed_at=None))

    def wipe(self) -> None:
        """Checkpoint the WAL into the database and truncate it, so that wiped secrets leave the files.

        ``secure_delete`` zeroes the old content inside the database file, but a WAL still holds the frames
        written before. A reader (``openstack-agent journal``) can hold the checkpoint off: then the wipe stays
        pending and the daemon retries it every second until it runs.
        """
        driver = self.driver
        # The background checkpointer would make this one return busy, as a reader does: it waits meanwhile.
        paused = self._checkpointer.paused() if self._checkpointer is not None else contextlib.nullcontext()
        try:
            # Blocked by a reader, it returns busy at once rather than stall the daemon for the busy timeout.
            with paused:
                busy = not checkpoint_without_waiting(driver, "TRUNCATE")
        except sqlite3.Error as exc:
            raise self.write_failed(exc) from exc
        retried = self.wipe_deferred_at is not None
        self.wipe_deferred_at = time.monotonic() if busy else None
        if busy and not retried:
            log.warning("journal checkpoint deferred by a reader; a wiped secret stays in the WAL until it runs")
        elif retried and not busy:
            log.info("deferred journal checkpoint done; wiped secrets have left the WAL")

    # -- queries --------------------------------------------------------------------------------------

    def records(self, query: Any) -> list[CommandRecord]:
        """The commands a SQLAlchemy statement selects (loads SQLAlchemy; ``command_records`` does not)."""
        return [CommandRecord(**row._asdict()) for row in self.read(query)]

    def get(self, command_id: int) -> CommandRecord:
        found = self.command_records(f"{SELECT_COMMANDS} WHERE commands.id = ?", (command_id,))
        if not found:
            raise CommandNotFound(f"no command {command_id} in the journal; 'openstack-agent journal list' "
                                  "shows the ids")
        return found[0]

    def find_request(self, request_id: str) -> CommandRecord | None:
        """The latest command journaled for this request id (on the hot path)."""
        found = self.command_records(_FIND_REQUEST.sql, {"request_id": storable(request_id)})
        return found[0] if found else None

    # Every query for commands not finished or not delivered also says ``reply_removed_at IS NULL`` (true of
    # them all: a reply is collected only after its delivery), so SQLite reads the partial index of open
    # commands (ix_commands_open) instead of every command.
    def unfinished(self) -> list[CommandRecord]:
        return self.command_records(f"{SELECT_COMMANDS} WHERE commands.reply_removed_at IS NULL "
                                    "AND commands.finished_at IS NULL ORDER BY commands.id")

    def undelivered(self) -> list[CommandRecord]:
        """Finished commands whose reply delivery was not journaled (a crash in the reply protocol)."""
        return self.command_records(f"{SELECT_COMMANDS} WHERE commands.reply_removed_at IS NULL "
                                    "AND commands.finished_at IS NOT NULL AND commands.replied_at IS NULL "
                                    "ORDER BY commands.id")

    def commands(self, limit: int | None = None, name: str | None = None, state: str | None = None,
                 since: str | None = None) -> list[CommandRecord]:
        """Commands, newest first; ``since`` (a journal time) keeps those received at or after it."""
        where, params = command_filter(name, state, since)
        sql = f"{SELECT_COMMANDS} {where} ORDER BY commands.id DESC"
        if limit:
            sql += " LIMIT :limit"
            params["limit"] = limit
        return self.command_records(sql, params)

    def by_request(self, request_id: str) -> list[CommandRecord]:
        """Every command journaled for this request id, oldest first: the host may reuse an id for a new
        request once the agent has answered the old one."""
        return self.command_records(f"{SELECT_COMMANDS} WHERE commands.request_id = ? ORDER BY commands.id",
                                    (storable(request_id),))

    def journaled(self, column: str) -> set[str]:
        """The distinct values of a commands column (``name``, ``state``) in the journal, NULL left out."""
        if column not in COMMAND_COLUMNS:
            raise ValueError(f"no column {column!r} in commands")
        rows = self.query(f"SELECT DISTINCT {column} AS value FROM commands WHERE {column} IS NOT NULL")  # noqa: S608
        return {row["value"] for row in rows}

    def transitions(self, command_id: int) -> list[TransitionRecord]:
        rows = self.query(f"{SELECT_TRANSITIONS} WHERE transitions.command_id = ? ORDER BY transitions.seq",
                          (command_id,))
        return [TransitionRecord(**row) for row in rows]

    def last_transition(self) -> int:
        """The newest transition row's id (0 for none). Rows are appended in time order, so this is a
        position in time that no change of the wall clock moves."""
        return int(self.query("SELECT max(id) AS id FROM transitions")[0]["id"] or 0)

    def command_count(self) -> int:
        """How many commands the journal holds: read from its ``count`` seal once (counted only when the seal
        is missing or stale), then kept by this handle's receives and prunes. The daemon prunes as soon as a
        flood takes it past ``journal.max_commands``; a journal of a million commands is never counted on a
        request's path."""
        if self._tally is None:
            try:
                self._tally = seals.tally(self.driver)
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed ({_cause(exc)}) in {self.path}") from exc
        return self._tally.count

    def current_tally(self, cursor: sqlite3.Connection) -> seals.Tally:
        """The tally as the journal has it now, inside a write: this handle's copy while the seal still says
        the same (one read of a row the commits keep in the cache), else the seal's, or a count (another
        handle changed the journal meanwhile)."""
        if self._tally is not None and seals.read(cursor, seals.COUNT) == self._tally.text():
            return self._tally
        self._tally = seals.tally(cursor)
        return self._tally

    def count_removed(self, cursor: sqlite3.Connection, before: seals.Tally, count: int) -> None:
        """Retention has just removed ``count`` commands, never the newest, from a journal whose tally was
        ``before``, in the transaction of ``cursor``: keep the tally right, in the same transaction."""
        oldest = cursor.execute("SELECT coalesce(min(id), 0) FROM commands").fetchone()[0]
        self._tally = seals.put_tally(cursor, seals.Tally(before.count - count, int(oldest), before.newest))

    def predecessor(self) -> Predecessor | None:
        """The broken journal this one replaced when it was created, if it replaced one."""
        try:
            tables = {row["name"] for row in self.query("SELECT name FROM sqlite_master WHERE type='table'")}
            if "seals" not in tables:
                return None
            rows = self.query('SELECT value FROM seals WHERE "key" = ?', (seals.PREDECESSOR,))
        except JournalError:
            return None
        if not rows:
            return None
        value = rows[0]["value"]
        try:
            note = json.loads(value)
            return Predecessor(path=str(note["path"]), moved_at=str(note["moved_at"]), reason=str(note["reason"]))
        except (ValueError, KeyError, TypeError):
            return Predecessor(path="?", moved_at="?", reason=str(value))

    def verify(self) -> Verification:
        """Check the whole journal in one snapshot (see ``agent.journal.verify``)."""
        from agent.journal.verify import verify

        return verify(self)
