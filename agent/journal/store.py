"""The Journal: every write the agent makes to its database, and the queries for audit and recovery.

Each public write is one ``BEGIN IMMEDIATE`` transaction that commits before it returns: when a method
returns, the fact is on disk. Each command's transition rows carry a SHA-256 chain that starts from the
command's identity (id, request id, digest, arrival time) and runs over every row's content, so ``verify``
detects a row edited, inserted or removed after the fact. Chains are per command so that retention can
delete whole old commands without breaking the chain of any other.

The statements of the request hot path (receive, transition, deliver, lookup by request id) are built with
SQLAlchemy once, compiled to SQLite's SQL at import, and run on the connection's DB-API cursor: building and
compiling a statement per call cost ten times the statement itself (``bench/roundtrip.py``). Everything
else (listing, recovery queries, retention, verification) goes through SQLAlchemy Core as usual.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from agent.errors import CommandNotFound, JournalError
from agent.journal import engine as engine_setup
from agent.journal.models import commands as _commands
from agent.journal.models import exchanges as _exchanges
from agent.journal.models import releases as _releases
from agent.journal.models import transitions as _transitions

log = logging.getLogger(__name__)

#: States a command ends in. "committed" is agentupdate's success, reached by the release it installed.
TERMINAL_STATES = frozenset({"done", "failed", "rolled_back", "committed"})



class _Compiled:
    """A statement compiled once to SQLite SQL with named parameters, plus its literal parameters."""

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=sqlite_dialect(paramstyle="named"))
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)

    def __call__(self, cursor: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        return cursor.execute(self.sql, {**self.defaults, **params})


_MUTABLE = ("state", "attempts", "updated_at", "finished_at", "reply_code", "reply_message", "replied_at",
            "last_seq", "last_hash")
_INSERT_COMMAND = _Compiled(insert(_commands).values(
    {c.name: bindparam(c.name) for c in _commands.columns if c.name != "id"}))
_INSERT_TRANSITION = _Compiled(insert(_transitions).values(
    {c.name: bindparam(c.name) for c in _transitions.columns if c.name != "id"}))
_UPDATE_COMMAND = _Compiled(
    update(_commands).where(_commands.c.id == bindparam("cid"), _commands.c.last_seq == bindparam("expected"))
    .values({c: bindparam(c) for c in _MUTABLE}))
_OPEN = _exchanges.c.state == "open"
_CLOSE_OPEN_EXCHANGES = _Compiled(update(_exchanges).where(_OPEN, _exchanges.c.expires_at <= bindparam("until"))
                                  .values(state=bindparam("state"), secret=None, closed_at=bindparam("at")))
_CLOSE_EXCHANGE = _Compiled(update(_exchanges).where(_OPEN, _exchanges.c.id == bindparam("id"))
                            .values(state=bindparam("state"), secret=None, closed_at=bindparam("at"),
                                    applied_digest=bindparam("digest"), derivation=bindparam("derivation"),
                                    applied_by=bindparam("command")))
_INSERT_EXCHANGE = _Compiled(insert(_exchanges).values(
    {c.name: bindparam(c.name) for c in _exchanges.columns if c.name != "id"}))
_UPSERT_RELEASE = _Compiled(
    sqlite_insert(_releases).values({c.name: bindparam(c.name) for c in _releases.columns})
    .on_conflict_do_update(index_elements=["version"], set_={
        "state": bindparam("state"), "reason": bindparam("reason"), "marked_at": bindparam("marked_at")}))
_FIND_REQUEST = _Compiled(select(_commands).where(_commands.c.request_id == bindparam("request_id"))
                          .order_by(_commands.c.id.desc()).limit(1))


#: Later than any expiry: closes every open exchange.
_FOREVER = "9999"


def iso(moment: datetime) -> str:
    """The journal's timestamp format: UTC, microseconds, a trailing Z (text order is time order)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """The inverse of ``iso``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def utcnow() -> str:
    return iso(datetime.now(UTC))


def canonical(detail: dict[str, Any] | None) -> str:
    """Detail as the compact, key-sorted JSON that the hash chain covers."""
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def genesis_hash(command: dict[str, Any]) -> str:
    """The chain's anchor: the command's identity, so an edited command row breaks its chain too."""
    fields = (command["request_id"], command["domain_path"], command["name"] or "", command["digest"],
              command["received_at"])
    return hashlib.sha256("\x1f".join(["command", *map(str, fields)]).encode()).hexdigest()


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    fields = (row["command_id"], row["seq"], row["trigger"], row["source"] or "", row["dest"], row["at"],
              row["detail"])
    material = "\x1f".join([prev_hash, *map(str, fields)])
    return hashlib.sha256(material.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class CommandRecord:
    """A command row as the rest of the agent sees it."""

    id: int
    request_id: str
    domain_path: str
    name: str | None
    machine: str
    value: str | None
    digest: str
    state: str
    attempts: int
    received_at: str
    updated_at: str
    finished_at: str | None
    reply_code: str | None
    reply_message: str | None
    replied_at: str | None
    reply_removed_at: str | None
    #: Position of the command's hash chain: the sequence number and hash of its last transition.
    last_seq: int
    last_hash: str

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def reply(self) -> dict[str, str] | None:
        if self.reply_code is None:
            return None
        return {"returncode": self.reply_code, "message": self.reply_message or ""}


@dataclasses.dataclass(frozen=True)
class TransitionRecord:
    id: int
    command_id: int
    seq: int
    trigger: str
    source: str | None
    dest: str
    at: str
    detail: str
    prev_hash: str
    hash: str


@dataclasses.dataclass(frozen=True)
class ExchangeRecord:
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


@dataclasses.dataclass(frozen=True)
class SideWrite:
    """Rows a machine writes in the same transaction as one of its transitions (see ``Journal.transition``).

    ``apply(cursor, command, at)`` runs after the transition row is written. ``wipes`` says that it erased a
    secret, so the WAL is checkpointed after the commit to take the old content out of the files too.
    """

    apply: Callable[[sqlite3.Connection, CommandRecord, str], None]
    wipes: bool = False


@dataclasses.dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    problem: str = ""


class Journal:
    """The agent's handle on its database; holds one connection for the life of the process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        #: When (``time.monotonic``) a wipe's checkpoint was last held off by a reader, or None when no wipe is
        #: pending; the daemon retries it with ``wipe``.
        self.wipe_deferred_at: float | None = None
        self._expiry: str | None = None
        self._expiry_known = False

    @classmethod
    def open(cls, state_dir: Path) -> Journal:
        """Prepare the state directory, migrate the schema, and open the journal."""
        database = engine_setup.prepare_state_dir(state_dir)
        engine = engine_setup.create(database)
        engine_setup.migrate(engine)
        return cls(engine)

    @property
    def path(self) -> str:
        return str(self.engine.url.database)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            try:
                self._conn = self.engine.connect()
            except SQLAlchemyError as exc:
                raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        return self._conn

    @property
    def _driver(self) -> sqlite3.Connection:
        """The DB-API connection under ``conn``, for the hot path's precompiled statements."""
        driver = self.conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return driver

    def _write_failed(self, exc: BaseException) -> JournalError:
        cause = getattr(exc, "orig", None) or exc
        return JournalError(f"journal write failed ({type(cause).__name__}): check the disk and permissions "
                            f"of {self.path}")

    def _write(self, work: Any) -> Any:
        """Run ``work(cursor)`` on the DB-API connection in one BEGIN IMMEDIATE transaction, committed."""
        driver = self._driver
        try:
            driver.execute("BEGIN IMMEDIATE")
            try:
                result = work(driver)
                driver.execute("COMMIT")
            except BaseException:
                if driver.in_transaction:
                    driver.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc
        return result

    def _write_core(self, work: Any) -> Any:
        """Run ``work(connection)`` with SQLAlchemy Core in one BEGIN IMMEDIATE transaction, committed."""
        conn = self.conn
        conn.info["immediate"] = True  # see engine._on_begin: writers take the lock at BEGIN
        try:
            with conn.begin():
                return work(conn)
        except SQLAlchemyError as exc:
            raise self._write_failed(exc) from exc
        finally:
            conn.info["immediate"] = False

    def _read(self, statement: Any) -> Any:
        try:
            result = self.conn.execute(statement)
            rows = result.all()
            self.conn.rollback()  # end the implicit read transaction so the WAL can be checkpointed
            return rows
        except SQLAlchemyError as exc:
            raise JournalError(f"journal read failed: {exc}") from exc

    # -- writes ---------------------------------------------------------------------------------------

    def _step(self, cursor: sqlite3.Connection, record: CommandRecord, trigger: str, dest: str,
              detail: dict[str, Any] | None, at: str, **changes: Any) -> CommandRecord:
        """Append one transition row and move the command row with it, guarded by the chain position."""
        seq = record.last_seq + 1
        row: dict[str, Any] = {"command_id": record.id, "seq": seq, "trigger": trigger,
               "source": record.state if record.last_seq else None, "dest": dest, "at": at,
               "detail": canonical(detail)}
        digest = chain_hash(record.last_hash, row)
        moved = dataclasses.replace(record, state=dest, last_seq=seq, last_hash=digest, updated_at=at,
                                    **changes)
        params = {c: getattr(moved, c) for c in _MUTABLE}
        if _UPDATE_COMMAND(cursor, {**params, "cid": record.id, "expected": record.last_seq}).rowcount != 1:
            raise JournalError(f"command {record.id} was changed by another writer; reload it from the journal")
        _INSERT_TRANSITION(cursor, {**row, "prev_hash": record.last_hash, "hash": digest})
        return moved

    def receive(self, request_id: str, domain_path: str, name: str | None, machine: str, digest: str,
                value: str | None, detail: dict[str, Any] | None = None) -> CommandRecord:
        """Journal a new request in state ``received``: the first durable fact about it."""
        at = utcnow()
        identity = {"request_id": request_id, "domain_path": domain_path, "name": name, "digest": digest,
                    "received_at": at}

        def work(cursor: sqlite3.Connection) -> CommandRecord:
            values: dict[str, Any] = {
                **identity, "machine": machine, "value": value, "state": "received", "attempts": 1,
                "updated_at": at, "finished_at": None, "reply_code": None, "reply_message": None,
                "replied_at": None, "reply_removed_at": None, "last_seq": 0, "last_hash": genesis_hash(identity)}
            command_id = _INSERT_COMMAND(cursor, values).lastrowid
            assert command_id is not None
            return self._step(cursor, CommandRecord(id=command_id, **values), "receive", "received", detail, at)

        created: CommandRecord = self._write(work)
        return created

    def transition(self, record: CommandRecord, trigger: str, dest: str, detail: dict[str, Any] | None = None,
                   reply: dict[str, str] | None = None, also: SideWrite | None = None) -> CommandRecord:
        """Journal a state change (and, when the command finishes, its reply) in one transaction.

        ``also`` adds a machine's own rows (a key exchange) to that transaction: both are durable, or neither.
        """
        at = utcnow()
        changes: dict[str, Any] = {}
        if dest in TERMINAL_STATES:
            changes["finished_at"] = at
        if reply is not None:
            changes["reply_code"] = reply["returncode"]
            changes["reply_message"] = reply["message"]
            detail = {**(detail or {}), "reply": reply}  # the chain covers the reply too

        def work(cursor: sqlite3.Connection) -> CommandRecord:
            moved = self._step(cursor, record, trigger, dest, detail, at, **changes)
            if also is not None:
                also.apply(cursor, moved, at)
            return moved

        moved: CommandRecord = self._write(work)
        if also is not None:
            self._expiry_known = False
            if also.wipes:
                self.wipe()
        return moved

    def record_attempt(self, record: CommandRecord) -> CommandRecord:
        """Count one more start of an unfinished command (a recovery)."""
        attempts = record.attempts + 1
        moved: CommandRecord = self._write(lambda cursor: self._step(
            cursor, record, "recover", record.state, {"attempt": attempts}, utcnow(), attempts=attempts))
        return moved

    def mark_replied(self, record: CommandRecord) -> CommandRecord:
        """Journal that the reply was written and the request deleted."""
        at = utcnow()
        moved: CommandRecord = self._write(lambda cursor: self._step(
            cursor, record, "deliver", record.state, None, at, replied_at=at))
        return moved

    def mark_replies_removed(self, command_ids: list[int]) -> None:
        """Journal that these commands' replies were garbage-collected from data/guest."""
        if not command_ids:
            return
        at = utcnow()
        self._write_core(lambda conn: conn.execute(
            update(_commands).where(_commands.c.id.in_(command_ids)).values(reply_removed_at=at)
        ))

    def prune(self, finished_before: str) -> int:
        """Delete commands finished and replied before the cutoff; return how many went."""
        def work(conn: Connection) -> int:
            old = select(_commands.c.id).where(
                _commands.c.finished_at < finished_before, _commands.c.replied_at.is_not(None)
            )
            conn.execute(_transitions.delete().where(_transitions.c.command_id.in_(old)))
            return int(conn.execute(_commands.delete().where(_commands.c.id.in_(old))).rowcount)

        count: int = self._write_core(work)
        return count

    # -- key exchanges --------------------------------------------------------------------------------

    @staticmethod
    def opens_exchange(public_key: str, secret: str, expires_at: str, group_bits: int) -> SideWrite:
        """Open a key exchange for the command; every earlier open one is replaced and its secret wiped."""
        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            _CLOSE_OPEN_EXCHANGES(cursor, {"until": _FOREVER, "state": "replaced", "at": at})
            _INSERT_EXCHANGE(cursor, {
                "command_id": command.id, "opened_at": at, "expires_at": expires_at, "public_key": public_key,
                "group_bits": group_bits, "secret": secret, "state": "open", "closed_at": None,
                "applied_digest": None, "derivation": None, "applied_by": None})

        return SideWrite(apply, wipes=True)

    @staticmethod
    def consumes_exchange(exchange_id: int, applied_digest: str, derivation: str) -> SideWrite:
        """Close an exchange whose password was applied: wipe its secret, remember what was applied."""
        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            changed = _CLOSE_EXCHANGE(cursor, {"id": exchange_id, "state": "consumed", "at": at,
                                               "digest": applied_digest, "derivation": derivation,
                                               "command": command.id}).rowcount
            if changed != 1:
                raise JournalError(f"key exchange {exchange_id} is no longer open")

        return SideWrite(apply, wipes=True)

    @staticmethod
    def expires_exchange(exchange_id: int) -> SideWrite:
        """Close an exchange found expired when a password came for it, wiping its secret."""
        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            _CLOSE_EXCHANGE(cursor, {"id": exchange_id, "state": "expired", "at": at, "digest": None,
                                     "derivation": None, "command": None})

        return SideWrite(apply, wipes=True)

    def expire_exchanges(self, now: str) -> int:
        """Close every open exchange whose lifetime is over and wipe its secret; return how many."""
        count: int = self._write(lambda cursor: _CLOSE_OPEN_EXCHANGES(
            cursor, {"until": now, "state": "expired", "at": now}).rowcount)
        self._expiry_known = False
        if count:
            self.wipe()
        return count

    def wipe(self) -> None:
        """Checkpoint the WAL into the database and truncate it, so that wiped secrets leave the files.

        ``secure_delete`` zeroes the old content inside the database file, but a WAL still holds the frames
        written before. A reader (``openstack-agent journal``) can hold the checkpoint off: then the wipe stays
        pending and the daemon retries it every second until it runs.
        """
        driver = self._driver
        try:
            # A TRUNCATE checkpoint waits in the busy handler for readers to finish: without this, a reader
            # would stall the daemon for the whole busy timeout. Blocked, it returns busy at once instead.
            driver.execute("PRAGMA busy_timeout=0")
            try:
                busy, _log, _done = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                driver.execute(f"PRAGMA busy_timeout={engine_setup.BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc
        retried = self.wipe_deferred_at is not None
        self.wipe_deferred_at = time.monotonic() if busy else None
        if busy and not retried:
            log.warning("journal checkpoint deferred by a reader; a wiped secret stays in the WAL until it runs")
        elif retried and not busy:
            log.info("deferred journal checkpoint done; wiped secrets have left the WAL")

    def _exchanges(self, query: Any) -> list[ExchangeRecord]:
        return [ExchangeRecord(**row._asdict()) for row in self._read(query)]

    def latest_exchange(self) -> ExchangeRecord | None:
        """The most recent key exchange, open or closed."""
        found = self._exchanges(select(_exchanges).order_by(_exchanges.c.id.desc()).limit(1))
        return found[0] if found else None

    def exchange_of(self, command_id: int) -> ExchangeRecord | None:
        """The exchange a keyinit command opened."""
        found = self._exchanges(select(_exchanges).where(_exchanges.c.command_id == command_id))
        return found[0] if found else None

    def exchanges(self) -> list[ExchangeRecord]:
        return self._exchanges(select(_exchanges).order_by(_exchanges.c.id))

    def next_expiry(self) -> str | None:
        """When the earliest open exchange expires (cached between the writes that change it)."""
        if not self._expiry_known:
            rows = self._read(select(_exchanges.c.expires_at).where(_exchanges.c.state == "open")
                              .order_by(_exchanges.c.expires_at).limit(1))
            self._expiry = rows[0][0] if rows else None
            self._expiry_known = True
        return self._expiry

    # -- releases -------------------------------------------------------------------------------------

    @staticmethod
    def marks_release(version: str, state: str, reason: str = "") -> SideWrite:
        """Record a release as "good" or "bad" (with why) in the same transaction as a transition."""
        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            _UPSERT_RELEASE(cursor, {"version": version, "state": state, "reason": reason, "marked_at": at})

        return SideWrite(apply)

    def mark_release(self, version: str, state: str, reason: str = "") -> None:
        """Record a release as "good" or "bad" (the supervisor's and the installer's verdicts)."""
        self._write(lambda cursor: _UPSERT_RELEASE(cursor, {"version": version, "state": state, "reason": reason,
                                                            "marked_at": utcnow()}))

    def release(self, version: str) -> tuple[str, str] | None:
        """A release's (state, reason), or None when nothing is known of it."""
        rows = self._read(select(_releases.c.state, _releases.c.reason).where(_releases.c.version == version))
        return (rows[0][0], rows[0][1] or "") if rows else None

    # -- queries --------------------------------------------------------------------------------------

    def _records(self, query: Any) -> list[CommandRecord]:
        return [CommandRecord(**row._asdict()) for row in self._read(query)]

    def get(self, command_id: int) -> CommandRecord:
        records = self._records(select(_commands).where(_commands.c.id == command_id))
        if not records:
            raise CommandNotFound(f"no command {command_id} in the journal; 'openstack-agent journal list' "
                                  "shows the ids")
        return records[0]

    def find_request(self, request_id: str) -> CommandRecord | None:
        """The latest command journaled for this request id."""
        try:
            cursor = _FIND_REQUEST(self._driver, {"request_id": request_id})
            # fetchall steps the statement to its end, so no read transaction outlives the call (an open
            # one would hold off the checkpoint that wipes a secret).
            rows = cursor.fetchall()
            names = [d[0] for d in cursor.description]
            row = rows[0] if rows else None
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed ({type(exc).__name__}) in {self.path}") from exc
        return CommandRecord(**dict(zip(names, row, strict=True))) if row else None

    def unfinished(self) -> list[CommandRecord]:
        return self._records(select(_commands).where(_commands.c.state.not_in(TERMINAL_STATES))
                             .order_by(_commands.c.id))

    def undelivered(self) -> list[CommandRecord]:
        """Finished commands whose reply delivery was not journaled (a crash in the reply protocol)."""
        return self._records(select(_commands).where(_commands.c.state.in_(TERMINAL_STATES),
                                                     _commands.c.replied_at.is_(None)).order_by(_commands.c.id))

    def replies_older_than(self, cutoff: str) -> list[CommandRecord]:
        return self._records(select(_commands).where(_commands.c.replied_at < cutoff,
                                                     _commands.c.reply_removed_at.is_(None)))

    def commands(self, limit: int | None = None, name: str | None = None,
                 state: str | None = None) -> list[CommandRecord]:
        """Commands, newest first."""
        query = select(_commands).order_by(_commands.c.id.desc())
        if name:
            query = query.where(_commands.c.name == name)
        if state:
            query = query.where(_commands.c.state == state)
        if limit:
            query = query.limit(limit)
        return self._records(query)

    def transitions(self, command_id: int) -> list[TransitionRecord]:
        rows = self._read(select(_transitions).where(_transitions.c.command_id == command_id)
                          .order_by(_transitions.c.seq))
        return [TransitionRecord(**r._asdict()) for r in rows]

    def verify(self) -> Verification:
        """Recompute every command's hash chain from its identity, and check each state and reply against it."""
        count = 0
        for command in self._read(select(_commands).order_by(_commands.c.id)):
            prev = genesis_hash(command._asdict())
            last: TransitionRecord | None = None
            chained_reply = None
            for expected_seq, row in enumerate(self.transitions(command.id), start=1):
                if row.seq != expected_seq or row.prev_hash != prev:
                    return Verification(False, count, f"command {command.id}: transition {expected_seq} is "
                                                      "missing or out of place, or the command row was altered")
                if chain_hash(prev, dataclasses.asdict(row)) != row.hash:
                    return Verification(False, count, f"command {command.id}: transition {row.seq} "
                                                      f"(row {row.id}) was altered")
                prev, last = row.hash, row
                chained_reply = json.loads(row.detail).get("reply", chained_reply)
                count += 1
            if last is None or last.dest != command.state or (last.seq, last.hash) != (command.last_seq,
                                                                                      command.last_hash):
                return Verification(False, count, f"command {command.id}: its state {command.state!r} is not "
                                                  "where its transitions lead")
            stored_reply = CommandRecord(**command._asdict()).reply
            if chained_reply != stored_reply:
                return Verification(False, count, f"command {command.id}: its stored reply differs from the "
                                                  "reply its transitions journaled")
        return Verification(True, count)
