"""The Journal: every write the agent makes to its database, and the queries for audit and recovery.

Each public write is one ``BEGIN IMMEDIATE`` transaction that commits before it returns: when a method
returns, the fact is on disk.

What ``verify`` can check, and how:

- Each command's transition rows carry a SHA-256 chain. It starts from the command's genesis hash, which
  covers the command's identity (id, request id, domain path, name, machine, value, digest, arrival time) and
  a link: the genesis of the command journaled before it. Commands are thereby chained to each other, so a
  command deleted with its transitions breaks its successor's link, and the newest command is named in the
  ``seals`` table (``head``), updated in the transaction that journals it, so deleting the newest commands is
  seen too.
- Every other column of a command is what its chain says: state and chain position (the last transition),
  ``updated_at`` (its time), ``attempts`` (one plus the "recover" transitions), ``finished_at`` (the first
  transition into a terminal state), the reply (journaled in the terminal transition's detail),
  ``replied_at`` (the last "deliver") and ``reply_removed_at`` (the last "collect").
- Retention removes old commands, not always a contiguous run (unfinished ones stay). A command whose
  predecessor it removed keeps its link in an ``anchor:<id>`` seal; anchors exist only for commands still
  in the journal, so they never outnumber them.
- The ``exchanges`` and ``releases`` tables and the anchors are covered by digests in ``seals``: the sum,
  modulo 2**256, of a SHA-256 per row, adjusted in the same transaction as every write to them. A key
  exchange's secret never enters a hash, only whether it is still there.
- ``PRAGMA integrity_check`` reports damage to the file's pages.

These hashes prove that the journal was not changed by mistake or by a careless hand (an edited column, a
deleted row, a damaged page). They are not signatures: someone with write access who recomputes every hash
can rewrite history, and nothing stored beside the data can prevent that.

Commands journaled before the chain linked commands (``chain_from``, recorded by the migration that added
it) keep the rules they were written under: a chain per command from its identity, and state and reply
checked against it.

The statements of the request hot path (receive, transition, deliver, lookup by request id) are built with
SQLAlchemy once, compiled to SQLite's SQL at import, and run on the connection's DB-API cursor: building and
compiling a statement per call cost ten times the statement itself (``bench/roundtrip.py``). Everything
else (listing, recovery queries, retention, verification) goes through SQLAlchemy Core or plain SQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from agent.errors import CommandNotFound, JournalError
from agent.journal import engine as engine_setup
from agent.journal.models import commands as _commands
from agent.journal.models import exchanges as _exchanges
from agent.journal.models import releases as _releases
from agent.journal.models import seals as _seals
from agent.journal.models import transitions as _transitions

log = logging.getLogger(__name__)

#: States a command ends in. "committed" is agentupdate's success, reached by the release it installed.
TERMINAL_STATES = frozenset({"done", "failed", "rolled_back", "committed"})

#: The link of the first command of the chain.
ROOT_LINK = "0" * 64
SEAL_CHAIN_FROM = "chain_from"
SEAL_HEAD = "head"
SEAL_EXCHANGES = "exchanges"
SEAL_RELEASES = "releases"
SEAL_ANCHORS = "anchors"
SEAL_PREDECESSOR = "predecessor"
ANCHOR_PREFIX = "anchor:"
#: The columns each table digest covers, fixed here rather than taken from the models: a column added later
#: must not silently change every row's hash (a test keeps them equal to the models).
EXCHANGE_SEALED = ("id", "command_id", "opened_at", "expires_at", "public_key", "group_bits", "secret", "state",
                   "closed_at", "applied_digest", "derivation", "applied_by")
RELEASE_SEALED = ("version", "state", "reason", "marked_at")
#: Schema revisions that predate the seals: their commands are all under the per-command rules.
UNSEALED_REVISIONS = frozenset({"0001", "0002", "0003"})
_MODULUS = 1 << 256
#: Ids per statement where a list of them is bound (SQLite's limit is far above).
_CHUNK = 500
#: Problems ``verify`` lists before it only counts them.
MAX_PROBLEMS = 20


class _Compiled:
    """A statement compiled once to SQLite SQL with named parameters, plus its literal parameters."""

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=sqlite_dialect(paramstyle="named"))
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)

    def __call__(self, cursor: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        return cursor.execute(self.sql, {**self.defaults, **params})


_MUTABLE = ("state", "attempts", "updated_at", "finished_at", "reply_code", "reply_message", "replied_at",
            "reply_removed_at", "last_seq", "last_hash")
# The id is never below the head's successor: ids the chain has used are not handed out again, even when
# the newest rows were deleted outside the agent.
_INSERT_COMMAND = _Compiled(insert(_commands).values({
    "id": func.max(bindparam("floor"), select(func.coalesce(func.max(_commands.c.id), 0) + 1).scalar_subquery()),
    **{c.name: bindparam(c.name) for c in _commands.columns if c.name != "id"}}))
_INSERT_TRANSITION = _Compiled(insert(_transitions).values(
    {c.name: bindparam(c.name) for c in _transitions.columns if c.name != "id"}))
_UPDATE_COMMAND = _Compiled(
    update(_commands).where(_commands.c.id == bindparam("cid"), _commands.c.last_seq == bindparam("expected"))
    .values({c: bindparam(c) for c in _MUTABLE}))
_ADVANCE_HEAD = _Compiled(update(_seals).where(_seals.c.key == SEAL_HEAD, _seals.c.value == bindparam("old"))
                          .values(value=bindparam("new")))
_OPEN = _exchanges.c.state == "open"
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
_UPSERT_SEAL = _Compiled(
    sqlite_insert(_seals).values(key=bindparam("key"), value=bindparam("value"))
    .on_conflict_do_update(index_elements=["key"], set_={"value": bindparam("value")}))
_FIND_REQUEST = _Compiled(select(_commands).where(_commands.c.request_id == bindparam("request_id"))
                          .order_by(_commands.c.id.desc()).limit(1))
_EXCHANGE_COLUMNS_SQL = ", ".join(EXCHANGE_SEALED)
_RELEASE_COLUMNS_SQL = ", ".join(RELEASE_SEALED)
_COMMAND_COLUMNS = tuple(c.name for c in _commands.columns)
_TRANSITION_COLUMNS = tuple(c.name for c in _transitions.columns)


# -- time -------------------------------------------------------------------------------------------------

def iso(moment: datetime) -> str:
    """The journal's timestamp format: UTC, microseconds, a trailing Z (text order is time order)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """The inverse of ``iso``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def wall_clock() -> datetime:
    """The wall clock, in one place: every journal time and every deadline derived from one comes from here."""
    return datetime.now(UTC)


def utcnow() -> str:
    return iso(wall_clock())


# -- hashing ----------------------------------------------------------------------------------------------

def storable(value: str) -> str:
    """``value`` as SQLite can store it: a lone surrogate (valid in JSON, not in UTF-8) becomes its escape."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _storable_or_none(value: str | None) -> str | None:
    return None if value is None else storable(value)


def _material(*fields: Any) -> bytes:
    """An unambiguous encoding of ``fields`` that exists for any Python value of the journal (escaped JSON)."""
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def canonical(detail: dict[str, Any] | None) -> str:
    """Detail as the compact, key-sorted JSON that the hash chain covers."""
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def genesis_hash(command: Mapping[str, Any], link: str) -> str:
    """The anchor of a command's chain: its identity, and ``link`` (the genesis of the command before it)."""
    return hashlib.sha256(_material(
        "command/2", command["id"], link, command["request_id"], command["domain_path"], command["name"],
        command["machine"], command["value"], command["digest"], command["received_at"])).hexdigest()


def legacy_genesis_hash(command: Mapping[str, Any]) -> str:
    """The anchor of a command journaled before ``chain_from``: its identity without machine, value or link."""
    fields = (command["request_id"], command["domain_path"], command["name"] or "", command["digest"],
              command["received_at"])
    material = "\x1f".join(["command", *map(str, fields)])
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def chain_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    fields = (row["command_id"], row["seq"], row["trigger"], row["source"] or "", row["dest"], row["at"],
              row["detail"])
    material = "\x1f".join([prev_hash, *map(str, fields)])
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def _as_number(material: bytes) -> int:
    return int.from_bytes(hashlib.sha256(material).digest(), "big")


def exchange_row_hash(row: Mapping[str, Any]) -> int:
    """A key exchange's share of the table digest: every column, but of the secret only whether it is set."""
    fields = [row[c] for c in EXCHANGE_SEALED if c != "secret"]
    return _as_number(_material("exchange", *fields, row["secret"] is None))


def release_row_hash(row: Mapping[str, Any]) -> int:
    return _as_number(_material("release", *(row[c] for c in RELEASE_SEALED)))


def anchor_hash(command_id: int, link: str) -> int:
    return _as_number(_material("anchor", command_id, link))


def digest_text(total: int) -> str:
    return f"{total % _MODULUS:064x}"


def _head_text(command_id: int, link: str) -> str:
    return f"{command_id}:{link}"


def seal_schema(connection: Connection) -> None:
    """Create the seals of a journal that has none: a new one, or one migrated from before them.

    Commands already there stay under the per-command rules; the linked chain starts after them.
    """
    last = connection.execute(text("SELECT coalesce(max(id), 0) FROM commands")).scalar_one()
    exchanges_sum = sum(exchange_row_hash(dict(row._mapping)) for row in connection.execute(
        text(f"SELECT {_EXCHANGE_COLUMNS_SQL} FROM exchanges")))  # noqa: S608 - fixed column names
    releases_sum = sum(release_row_hash(dict(row._mapping)) for row in connection.execute(
        text(f"SELECT {_RELEASE_COLUMNS_SQL} FROM releases")))  # noqa: S608 - fixed column names
    connection.execute(text("INSERT INTO seals (key, value) VALUES (:key, :value)"), [
        {"key": SEAL_CHAIN_FROM, "value": str(last + 1)},
        {"key": SEAL_HEAD, "value": _head_text(last, ROOT_LINK)},
        {"key": SEAL_EXCHANGES, "value": digest_text(exchanges_sum)},
        {"key": SEAL_RELEASES, "value": digest_text(releases_sum)},
        {"key": SEAL_ANCHORS, "value": digest_text(0)},
    ])


# -- records ----------------------------------------------------------------------------------------------

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
    ``committed(journal)`` runs once the transaction is committed (the journal's in-memory view follows).
    """

    apply: Callable[[sqlite3.Connection, CommandRecord, str], None]
    wipes: bool = False
    committed: Callable[[Journal], None] | None = None


@dataclasses.dataclass(frozen=True)
class Verification:
    """What ``verify`` found: ``rows`` transitions checked, and every problem (the first in ``problem``)."""

    ok: bool
    rows: int
    problem: str = ""
    #: The first ``MAX_PROBLEMS`` problems; ``problem_count`` counts them all.
    problems: tuple[str, ...] = ()
    problem_count: int = 0
    commands: int = 0


@dataclasses.dataclass(frozen=True)
class Predecessor:
    """A broken journal that this one replaced at start-up: where it was moved, when, and why."""

    path: str
    moved_at: str
    reason: str


class _StaleHead(Exception):
    """The head seal is not what this handle remembered: reload it and journal the command again."""


# -- writes shared by the journal and the machines' side writes ------------------------------------------

def _dicts(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    batch: list[int] = []
    for item in ids:
        batch.append(item)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _in(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))


def _seal(cursor: sqlite3.Connection, key: str) -> str | None:
    row = cursor.execute("SELECT value FROM seals WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _add_to_seal(cursor: sqlite3.Connection, key: str, delta: int) -> None:
    """Adjust a table digest by the hashes of rows added (positive) and removed (negative)."""
    if delta % _MODULUS == 0:
        return
    current = _seal(cursor, key)
    try:
        total = int(current, 16) if current is not None else 0
    except ValueError:
        total = 0  # an edited seal: verify reports it; the agent goes on
    _UPSERT_SEAL(cursor, {"key": key, "value": digest_text(total + delta)})


def _exchange_rows(cursor: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    return list(_dicts(cursor.execute(
        f"SELECT {_EXCHANGE_COLUMNS_SQL} FROM exchanges WHERE {where}", params)))  # noqa: S608 - fixed SQL


def _close_exchanges(cursor: sqlite3.Connection, ids: list[int], state: str, at: str, digest: str | None = None,
                     derivation: str | None = None, command: int | None = None) -> int:
    """Close the open exchanges among ``ids`` (secret wiped), keeping the table digest right; return how many."""
    closed = 0
    for batch in _chunks(ids):
        before = _exchange_rows(cursor, f"id IN ({_in(batch)})", tuple(batch))
        for exchange_id in batch:
            closed += _CLOSE_EXCHANGE(cursor, {"id": exchange_id, "state": state, "at": at, "digest": digest,
                                               "derivation": derivation, "command": command}).rowcount
        after = _exchange_rows(cursor, f"id IN ({_in(batch)})", tuple(batch))
        _add_to_seal(cursor, SEAL_EXCHANGES, sum(map(exchange_row_hash, after)) - sum(map(exchange_row_hash, before)))
    return closed


def _upsert_release(cursor: sqlite3.Connection, version: str, state: str, reason: str, at: str) -> None:
    def current() -> list[dict[str, Any]]:
        return list(_dicts(cursor.execute(
            f"SELECT {_RELEASE_COLUMNS_SQL} FROM releases WHERE version = ?", (version,))))  # noqa: S608

    before = current()
    _UPSERT_RELEASE(cursor, {"version": storable(version), "state": storable(state), "reason": storable(reason),
                             "marked_at": at})
    _add_to_seal(cursor, SEAL_RELEASES, sum(map(release_row_hash, current())) - sum(map(release_row_hash, before)))


def _lifetime(opened_at: str, expires_at: str) -> float:
    try:
        return max(0.0, (parse_iso(expires_at) - parse_iso(opened_at)).total_seconds())
    except ValueError:
        return 0.0


def _remaining(opened_at: str, expires_at: str, now: datetime) -> float:
    """What is left of an exchange opened by an earlier process: never more than its whole lifetime, so a
    wall clock set back cannot lengthen it, and nothing once the wall clock says it is over."""
    try:
        left = (parse_iso(expires_at) - now).total_seconds()
    except ValueError:
        return 0.0
    return min(max(left, 0.0), _lifetime(opened_at, expires_at))


def _deadline(opened_at: str, expires_at: str, now: datetime) -> float:
    """The monotonic deadline of an exchange opened by an earlier process; one already over is due at once."""
    remaining = _remaining(opened_at, expires_at, now)
    return time.monotonic() + remaining if remaining > 0 else 0.0


# -- the journal ------------------------------------------------------------------------------------------

class Journal:
    """The agent's handle on its database; holds one connection for the life of the process."""

    def __init__(self, engine: Engine, readonly: bool = False, path: Path | None = None) -> None:
        self.engine = engine
        self.readonly = readonly
        self._path = path
        self._conn: Connection | None = None
        #: When (``time.monotonic``) a wipe's checkpoint was last held off by a reader, or None when no wipe is
        #: pending; the daemon retries it with ``wipe``.
        self.wipe_deferred_at: float | None = None
        # The chain's newest command (id, genesis), as this process last wrote or read it.
        self._head: tuple[int, str] | None = None
        self._count: int | None = None
        # The monotonic deadline of each open key exchange; None until first needed.
        self._deadlines: dict[int, float] | None = None
        #: Request ids of the commands the last ``prune`` removed while their replies were still in data/guest.
        self.pruned_replies: list[str] = []

    @classmethod
    def open(cls, state_dir: Path) -> Journal:
        """Open the agent's journal for writing: create it if missing, replace it if broken, migrate it.

        A broken journal (empty, not a database, not an agent journal, unreadable) is moved aside, an ERROR
        names both files, and the new journal records it (see ``predecessor``).
        """
        database = engine_setup.open_database(state_dir)
        engine = engine_setup.create(database)
        engine_setup.migrate(engine)
        return cls(engine, path=database)

    @classmethod
    def open_readonly(cls, state_dir: Path) -> Journal:
        """Open an existing journal for inspection: no file, schema, mode or migration is ever written."""
        database = state_dir / engine_setup.DATABASE_NAME
        if not database.is_file():
            raise JournalError(f"no journal at {database}")
        engine, unread_wal = engine_setup.create_readonly(database)
        if unread_wal:
            log.warning("the journal's write-ahead log %s-wal cannot be read on this read-only file system; "
                        "showing the journal as of its last checkpoint", database)
        return cls(engine, readonly=True, path=database)

    @property
    def path(self) -> str:
        return str(self._path) if self._path is not None else str(self.engine.url.database)

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
                raise JournalError(f"cannot open the journal {self.path}: {_cause(exc)}") from exc
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

    def _read(self, statement: Any) -> Any:
        try:
            result = self.conn.execute(statement)
            rows = result.all()
            self.conn.rollback()  # end the implicit read transaction so the WAL can be checkpointed
            return rows
        except SQLAlchemyError as exc:
            raise JournalError(f"journal read failed ({_cause(exc)}) in {self.path}") from exc

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

    def _load_head(self, cursor: sqlite3.Connection) -> tuple[int, str]:
        value = _seal(cursor, SEAL_HEAD) or ""
        command_id, _, link = value.partition(":")
        if command_id.isdigit() and len(link) == len(ROOT_LINK):
            return int(command_id), link
        # The seal was removed or edited outside the agent. The agent goes on serving with a chain that
        # restarts here; verify reports the break.
        log.warning("the journal's head seal is missing or unreadable; 'journal verify' will report the break "
                    "in the command chain")
        last = int(cursor.execute("SELECT coalesce(max(id), 0) FROM commands").fetchone()[0])
        _UPSERT_SEAL(cursor, {"key": SEAL_HEAD, "value": _head_text(last, ROOT_LINK)})
        return last, ROOT_LINK

    def receive(self, request_id: str, domain_path: str, name: str | None, machine: str, digest: str,
                value: str | None, detail: dict[str, Any] | None = None) -> CommandRecord:
        """Journal a new request in state ``received``: the first durable fact about it."""
        at = utcnow()
        identity: dict[str, Any] = {
            "request_id": storable(request_id), "domain_path": storable(domain_path),
            "name": _storable_or_none(name), "machine": storable(machine), "value": _storable_or_none(value),
            "digest": storable(digest), "received_at": at}
        head: list[tuple[int, str]] = []

        def work(cursor: sqlite3.Connection) -> CommandRecord:
            head_id, link = self._head or self._load_head(cursor)
            values: dict[str, Any] = {
                **identity, "state": "received", "attempts": 1, "updated_at": at, "finished_at": None,
                "reply_code": None, "reply_message": None, "replied_at": None, "reply_removed_at": None,
                "last_seq": 0, "last_hash": ""}
            command_id = _INSERT_COMMAND(cursor, {**values, "floor": head_id + 1}).lastrowid
            assert command_id is not None
            genesis = genesis_hash({**identity, "id": command_id}, link)
            created = self._step(cursor, CommandRecord(id=command_id, **{**values, "last_hash": genesis}),
                                 "receive", "received", detail, at)
            if _ADVANCE_HEAD(cursor, {"old": _head_text(head_id, link),
                                      "new": _head_text(command_id, genesis)}).rowcount != 1:
                raise _StaleHead
            head.append((command_id, genesis))
            return created

        try:
            created: CommandRecord = self._write(work)
        except _StaleHead:
            self._head = None  # another handle journaled a command: read where the chain is, once
            try:
                created = self._write(work)
            except _StaleHead:
                raise JournalError("the journal's command chain keeps moving under this agent: is another "
                                   f"agent writing {self.path}?") from None
        self._head = head[-1]
        if self._count is not None:
            self._count += 1
        return created

    def transition(self, record: CommandRecord, trigger: str, dest: str, detail: dict[str, Any] | None = None,
                   reply: dict[str, str] | None = None, also: SideWrite | None = None) -> CommandRecord:
        """Journal a state change (and, when the command finishes, its reply) in one transaction.

        ``also`` adds a machine's own rows (a key exchange) to that transaction: both are durable, or neither.
        """
        at = utcnow()
        changes: dict[str, Any] = {}
        if dest in TERMINAL_STATES and record.finished_at is None:
            changes["finished_at"] = at
        if reply is not None:
            reply = {key: storable(value) for key, value in reply.items()}
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
            if also.committed is not None:
                also.committed(self)
            if also.wipes:
                self.wipe()
        return moved

    def record_attempt(self, record: CommandRecord) -> CommandRecord:
        """Count one more start of an unfinished command (a recovery)."""
        attempts = record.attempts + 1
        moved: CommandRecord = self._write(lambda cursor: self._step(
            cursor, record, "recover", record.state, {"attempt": attempts}, utcnow(), attempts=attempts))
        return moved

    def mark_replied(self, record: CommandRecord, written: bool = True) -> CommandRecord:
        """Journal that the reply was written and the request deleted; ``written`` False records a reply
        that could not be written (its path is too long for XenStore) and a request removed unanswered."""
        at = utcnow()
        detail = None if written else {"reply_written": False}
        moved: CommandRecord = self._write(lambda cursor: self._step(
            cursor, record, "deliver", record.state, detail, at, replied_at=at))
        return moved

    def last_transition(self) -> int:
        """The newest transition row's id (0 for none). Rows are appended in time order, so this is a
        position in time that no change of the wall clock moves."""
        return int(self._read(select(func.max(_transitions.c.id)))[0][0] or 0)

    def replies_to_collect(self, delivered_upto: int, earlier: str, start_row: int) -> list[CommandRecord]:
        """Commands whose reply is still in data/guest and old enough to remove: delivered at or before
        transition row ``delivered_upto``, or delivered by an earlier process (at or before ``start_row``)
        before the wall-clock time ``earlier``."""
        last = _transitions.alias("last")
        delivered = last.c.id
        query = (select(_commands).join(last, (last.c.command_id == _commands.c.id)
                                        & (last.c.seq == _commands.c.last_seq))
                 .where(_commands.c.replied_at.is_not(None), _commands.c.reply_removed_at.is_(None),
                        last.c.trigger == "deliver",
                        (delivered <= delivered_upto) | ((delivered <= start_row) & (_commands.c.replied_at < earlier)))
                 .order_by(_commands.c.id))
        return self._records(query)

    def mark_replies_removed(self, command_ids: list[int]) -> None:
        """Journal that these commands' replies were garbage-collected from data/guest: one "collect"
        transition each, all in one transaction."""
        if not command_ids:
            return
        at = utcnow()

        def work(cursor: sqlite3.Connection) -> None:
            for batch in _chunks(command_ids):
                rows = list(_dicts(cursor.execute(
                    f"SELECT * FROM commands WHERE id IN ({_in(batch)}) ORDER BY id", batch)))  # noqa: S608
                for row in rows:
                    record = CommandRecord(**{c: row[c] for c in _COMMAND_COLUMNS})
                    self._step(cursor, record, "collect", record.state, None, at, reply_removed_at=at)

        self._write(work)

    def command_count(self) -> int:
        """How many commands the journal holds (counted once, then kept by this handle's receives and
        prunes): the daemon prunes as soon as a flood takes it past ``journal.max_commands``."""
        if self._count is None:
            self._count = int(self._read(select(func.count()).select_from(_commands))[0][0])
        return self._count

    def prune(self, finished_before: str, keep_min: int, max_commands: int) -> int:
        """Remove old commands; return how many went.

        Only commands that are finished and whose reply was delivered can go: those finished before
        ``finished_before``, then the oldest while more than ``max_commands`` remain. The newest ``keep_min``
        commands always stay, whatever the clock says, and so does a keyinit whose exchange is still open.
        The chain stays checkable: a remaining command whose predecessor goes keeps its link as an anchor.
        """
        keep_min = max(keep_min, 1)  # the newest command is the chain's head
        self.pruned_replies = []

        def work(cursor: sqlite3.Connection) -> int:
            ids = [row[0] for row in cursor.execute("SELECT id FROM commands ORDER BY id")]
            if len(ids) <= keep_min:
                return 0
            terminal = tuple(sorted(TERMINAL_STATES))
            candidates = cursor.execute(
                "SELECT id, finished_at, request_id, reply_removed_at IS NULL FROM commands "  # noqa: S608
                f"WHERE id < ? AND state IN ({_in(terminal)}) "
                "AND finished_at IS NOT NULL AND replied_at IS NOT NULL "
                "AND id NOT IN (SELECT command_id FROM exchanges WHERE state = 'open') ORDER BY id",
                (ids[-keep_min], *terminal)).fetchall()
            doomed = {command_id for command_id, finished_at, *_ in candidates if finished_at < finished_before}
            excess = len(ids) - len(doomed) - max_commands
            for command_id, *_ in candidates:
                if excess <= 0:
                    break
                if command_id not in doomed:
                    doomed.add(command_id)
                    excess -= 1
            if doomed:
                self._anchor_survivors(cursor, ids, doomed)
                self._delete_commands(cursor, sorted(doomed))
            # The journal forgets these commands while their replies are still in data/guest: the daemon
            # removes those replies now, or nothing ever would.
            self.pruned_replies = [request_id for command_id, _, request_id, present in candidates
                                   if command_id in doomed and present]
            return len(doomed)

        count: int = self._write(work)
        if self._count is not None:
            self._count -= count
        return count

    @staticmethod
    def _anchor_survivors(cursor: sqlite3.Connection, ids: list[int], doomed: set[int]) -> None:
        """Keep the link of each remaining command whose predecessor in the chain is about to go."""
        try:
            chain_from = int(_seal(cursor, SEAL_CHAIN_FROM) or "")
        except ValueError:
            return  # no chain to keep (an edited seal); verify reports it
        anchored = {int(key[len(ANCHOR_PREFIX):]): value for key, value in cursor.execute(
            "SELECT key, value FROM seals WHERE key LIKE ?", (ANCHOR_PREFIX + "%",))}
        needed: dict[int, int] = {}  # survivor -> its predecessor that goes
        previous: int | None = None
        for command_id in ids:
            if command_id < chain_from:
                continue
            if previous in doomed and command_id not in doomed and command_id not in anchored:
                needed[command_id] = previous
            previous = command_id
        genesis: dict[int, str] = {}
        for batch in _chunks(needed.values()):
            genesis.update(cursor.execute(
                f"SELECT command_id, prev_hash FROM transitions WHERE seq = 1 AND command_id IN ({_in(batch)})",  # noqa: S608
                batch).fetchall())
        added = {survivor: genesis[predecessor] for survivor, predecessor in needed.items()
                 if predecessor in genesis}
        removed = {command_id: link for command_id, link in anchored.items() if command_id in doomed}
        for survivor, link in added.items():
            _UPSERT_SEAL(cursor, {"key": f"{ANCHOR_PREFIX}{survivor}", "value": link})
        for batch in _chunks(removed):
            cursor.execute(f"DELETE FROM seals WHERE key IN ({_in(batch)})",  # noqa: S608
                           [f"{ANCHOR_PREFIX}{command_id}" for command_id in batch])
        _add_to_seal(cursor, SEAL_ANCHORS, sum(anchor_hash(i, link) for i, link in added.items())
                     - sum(anchor_hash(i, link) for i, link in removed.items()))

    @staticmethod
    def _delete_commands(cursor: sqlite3.Connection, doomed: list[int]) -> None:
        for batch in _chunks(doomed):
            marks = _in(batch)
            gone = _exchange_rows(cursor, f"command_id IN ({marks})", tuple(batch))
            _add_to_seal(cursor, SEAL_EXCHANGES, -sum(map(exchange_row_hash, gone)))
            cursor.execute(f"DELETE FROM exchanges WHERE command_id IN ({marks})", batch)  # noqa: S608
            cursor.execute(f"DELETE FROM transitions WHERE command_id IN ({marks})", batch)  # noqa: S608
            cursor.execute(f"DELETE FROM commands WHERE id IN ({marks})", batch)  # noqa: S608

    # -- key exchanges --------------------------------------------------------------------------------

    @staticmethod
    def opens_exchange(public_key: str, secret: str, expires_at: str, group_bits: int) -> SideWrite:
        """Open a key exchange for the command; every earlier open one is replaced and its secret wiped.

        Its lifetime (``expires_at`` less the transition's time) is then measured on the monotonic clock from
        the commit, so a wall clock set back while the agent runs cannot lengthen it.
        """
        opened: list[tuple[int, float]] = []

        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            still_open = [row[0] for row in cursor.execute("SELECT id FROM exchanges WHERE state = 'open'")]
            _close_exchanges(cursor, still_open, "replaced", at)
            row: dict[str, Any] = {
                "command_id": command.id, "opened_at": at, "expires_at": expires_at, "public_key": public_key,
                "group_bits": group_bits, "secret": secret, "state": "open", "closed_at": None,
                "applied_digest": None, "derivation": None, "applied_by": None}
            exchange_id = _INSERT_EXCHANGE(cursor, row).lastrowid
            assert exchange_id is not None
            _add_to_seal(cursor, SEAL_EXCHANGES, exchange_row_hash({**row, "id": exchange_id}))
            opened.append((exchange_id, _lifetime(at, expires_at)))

        def committed(journal: Journal) -> None:
            exchange_id, lifetime = opened[-1]
            journal._deadlines = {exchange_id: time.monotonic() + lifetime}

        return SideWrite(apply, wipes=True, committed=committed)

    @staticmethod
    def _closes_exchange(exchange_id: int, state: str, applied_digest: str | None = None,
                         derivation: str | None = None, must_be_open: bool = False) -> SideWrite:
        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            changed = _close_exchanges(cursor, [exchange_id], state, at, applied_digest, derivation,
                                       command.id if applied_digest is not None else None)
            if must_be_open and changed != 1:
                raise JournalError(f"key exchange {exchange_id} is no longer open")

        def committed(journal: Journal) -> None:
            if journal._deadlines is not None:
                journal._deadlines.pop(exchange_id, None)

        return SideWrite(apply, wipes=True, committed=committed)

    @staticmethod
    def consumes_exchange(exchange_id: int, applied_digest: str, derivation: str) -> SideWrite:
        """Close an exchange whose password was applied: wipe its secret, remember what was applied."""
        return Journal._closes_exchange(exchange_id, "consumed", applied_digest, derivation, must_be_open=True)

    @staticmethod
    def expires_exchange(exchange_id: int) -> SideWrite:
        """Close an exchange found expired when a password came for it, wiping its secret."""
        return Journal._closes_exchange(exchange_id, "expired")

    @staticmethod
    def abandons_exchange(exchange_id: int) -> SideWrite:
        """Close an open exchange as "abandoned", wiping its secret: its password will not be applied by it
        (the password command gave up after a crash loop)."""
        return Journal._closes_exchange(exchange_id, "abandoned")

    def _open_deadlines(self) -> dict[int, float]:
        if self._deadlines is None:
            rows = self._read(select(_exchanges.c.id, _exchanges.c.opened_at, _exchanges.c.expires_at)
                              .where(_OPEN))
            now = wall_clock()
            self._deadlines = {row.id: _deadline(row.opened_at, row.expires_at, now) for row in rows}
        return self._deadlines

    def next_expiry(self) -> float | None:
        """When (``time.monotonic``) the earliest open exchange's lifetime ends, or None when none is open."""
        deadlines = self._open_deadlines()
        return min(deadlines.values()) if deadlines else None

    def exchange_expired(self, exchange: ExchangeRecord, now: float | None = None) -> bool:
        """Whether an open exchange's lifetime is over at ``now`` (``time.monotonic``, default: now).

        A closed exchange is never "expired" here: its state says what happened to it.
        """
        if exchange.state != "open":
            return False
        deadlines = self._open_deadlines()
        deadline = deadlines.get(exchange.id)
        if deadline is None:
            deadline = deadlines[exchange.id] = _deadline(exchange.opened_at, exchange.expires_at, wall_clock())
        return deadline <= (time.monotonic() if now is None else now)

    def expire_exchanges(self, now: float) -> int:
        """Close every open exchange whose lifetime is over at ``now`` (``time.monotonic``) and wipe its secret;
        return how many."""
        deadlines = self._open_deadlines()
        due = sorted(exchange_id for exchange_id, deadline in deadlines.items() if deadline <= now)
        if not due:
            return 0
        at = utcnow()
        count: int = self._write(lambda cursor: _close_exchanges(cursor, due, "expired", at))
        for exchange_id in due:
            deadlines.pop(exchange_id, None)
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

    # -- releases -------------------------------------------------------------------------------------

    @staticmethod
    def marks_release(version: str, state: str, reason: str = "") -> SideWrite:
        """Record a release as "good" or "bad" (with why) in the same transaction as a transition."""
        def apply(cursor: sqlite3.Connection, command: CommandRecord, at: str) -> None:
            _upsert_release(cursor, version, state, reason, at)

        return SideWrite(apply)

    def mark_release(self, version: str, state: str, reason: str = "") -> None:
        """Record a release as "good" or "bad" (the supervisor's and the installer's verdicts)."""
        at = utcnow()
        self._write(lambda cursor: _upsert_release(cursor, version, state, reason, at))

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
            cursor = _FIND_REQUEST(self._driver, {"request_id": storable(request_id)})
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

    def predecessor(self) -> Predecessor | None:
        """The broken journal this one replaced when it was created, if it replaced one."""
        try:
            tables = {row[0] for row in self._read(text("SELECT name FROM sqlite_master WHERE type='table'"))}
            if "seals" not in tables:
                return None
            rows = self._read(select(_seals.c.value).where(_seals.c.key == SEAL_PREDECESSOR))
        except JournalError:
            return None
        if not rows:
            return None
        try:
            note = json.loads(rows[0][0])
            return Predecessor(path=str(note["path"]), moved_at=str(note["moved_at"]), reason=str(note["reason"]))
        except (ValueError, KeyError, TypeError):
            return Predecessor(path="?", moved_at="?", reason=str(rows[0][0]))

    def verify(self) -> Verification:
        """Check the whole journal in one read transaction (one consistent snapshot, even while the agent
        writes): the file's pages, every command's chain and the columns it vouches for, the links between
        commands and the head, and the exchange and release tables."""
        checker = _Verifier()
        try:
            driver = self._driver
        except JournalError as exc:
            checker.fail(f"the journal cannot be opened ({exc})")
            return checker.result()
        try:
            driver.execute("BEGIN")
            try:
                checker.run(driver)
            finally:
                if driver.in_transaction:
                    driver.execute("ROLLBACK")
        except sqlite3.Error as exc:
            checker.fail(f"the journal cannot be read ({type(exc).__name__}: {exc}); the file is damaged or is "
                         "not an agent journal")
        return checker.result()


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's statement text and links."""
    cause = getattr(exc, "orig", None) or exc
    return f"{type(cause).__name__}: {cause}"


class _Verifier:
    """One pass over a snapshot of the journal, collecting problems rather than stopping at the first."""

    def __init__(self) -> None:
        self.rows = 0
        self.commands = 0
        self.problems: list[str] = []
        self.problem_count = 0

    def fail(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def result(self) -> Verification:
        return Verification(ok=self.problem_count == 0, rows=self.rows,
                            problem=self.problems[0] if self.problems else "", problems=tuple(self.problems),
                            problem_count=self.problem_count, commands=self.commands)

    def run(self, cursor: sqlite3.Connection) -> None:
        tables = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"commands", "transitions", "alembic_version"} - tables
        if missing:
            self.fail(f"the database is not an agent journal (no {', '.join(sorted(missing))} table)")
            return
        damage = [str(row[0]) for row in cursor.execute("PRAGMA integrity_check(10)")]
        if damage != ["ok"]:
            self.fail(f"the database file is damaged (SQLite's integrity check: {'; '.join(damage[:3])})")
        revision = cursor.execute("SELECT version_num FROM alembic_version").fetchone()
        seals: dict[str, str] = {}
        if "seals" in tables:
            seals = {str(key): str(value) for key, value in cursor.execute("SELECT key, value FROM seals")}
        elif revision is None or revision[0] not in UNSEALED_REVISIONS:
            self.fail("the seals table is missing: it was removed outside the agent")
        chain_from = self._chain_from(seals, tables)
        anchors = self._anchors(seals)
        last = self._commands(cursor, chain_from, anchors)
        if chain_from is not None:
            self._head(seals, chain_from, last)
            self._table_digest(cursor, seals, "exchanges", exchange_row_hash, EXCHANGE_SEALED)
            self._table_digest(cursor, seals, "releases", release_row_hash, RELEASE_SEALED)

    def _chain_from(self, seals: dict[str, str], tables: set[str]) -> int | None:
        if "seals" not in tables:
            return None  # a journal from before the seals: every command is under the per-command rules
        try:
            return int(seals[SEAL_CHAIN_FROM])
        except (KeyError, ValueError):
            self.fail("the chain_from seal is missing or altered: the journal was edited outside the agent")
            return 1

    def _anchors(self, seals: dict[str, str]) -> dict[int, str]:
        anchors: dict[int, str] = {}
        for key, link in seals.items():
            if key.startswith(ANCHOR_PREFIX):
                try:
                    anchors[int(key[len(ANCHOR_PREFIX):])] = link
                except ValueError:
                    self.fail(f"seal {key!r} is not one the agent writes: the journal was edited outside the agent")
        if seals and digest_text(sum(anchor_hash(i, link) for i, link in anchors.items())) != seals.get(SEAL_ANCHORS):
            self.fail("the anchors of commands whose predecessors retention removed were changed outside the agent")
        return anchors

    def _commands(self, cursor: sqlite3.Connection, chain_from: int | None,
                  anchors: dict[int, str]) -> tuple[int, str] | None:
        """Walk every command with its transitions (two ordered cursors, merged); return the chain's last
        command (id, genesis)."""
        transitions = _dicts(cursor.execute(
            f"SELECT {', '.join(_TRANSITION_COLUMNS)} FROM transitions ORDER BY command_id, seq"))  # noqa: S608
        pending = next(transitions, None)
        link = ROOT_LINK
        last: tuple[int, str] | None = None
        for command in _dicts(cursor.execute(
                f"SELECT {', '.join(_COMMAND_COLUMNS)} FROM commands ORDER BY id")):  # noqa: S608
            self.commands += 1
            orphans: set[int] = set()
            while pending is not None and pending["command_id"] < command["id"]:
                orphans.add(pending["command_id"])
                pending = next(transitions, None)
            self._orphans(orphans)
            rows: list[dict[str, Any]] = []
            while pending is not None and pending["command_id"] == command["id"]:
                rows.append(pending)
                pending = next(transitions, None)
            if chain_from is not None and command["id"] >= chain_from:
                genesis = genesis_hash(command, anchors.get(command["id"], link))
                self._command(command, rows, genesis, linked=True)
                # The next command links to the genesis this one was journaled with: an edit here is reported
                # here, not again at its successor.
                link = rows[0]["prev_hash"] if rows else genesis
                last = (command["id"], link)
            else:
                self._command(command, rows, legacy_genesis_hash(command), linked=False)
        orphans = set()
        while pending is not None:
            orphans.add(pending["command_id"])
            pending = next(transitions, None)
        self._orphans(orphans)
        return last

    def _orphans(self, command_ids: set[int]) -> None:
        for command_id in sorted(command_ids):
            self.fail(f"command {command_id}: its transitions are in the journal but the command is not; it was "
                      "deleted outside the agent")

    def _command(self, command: dict[str, Any], rows: list[dict[str, Any]], genesis: str, linked: bool) -> None:
        cid = command["id"]
        prev = genesis
        last: dict[str, Any] | None = None
        reply: Any = None
        attempts, finished_at, replied_at, removed_at = 1, None, None, None
        for expected_seq, row in enumerate(rows, start=1):
            self.rows += 1
            if row["seq"] != expected_seq or row["prev_hash"] != prev:
                if expected_seq == 1 and linked and row["prev_hash"] == legacy_genesis_hash(command):
                    self.fail(f"command {cid}: it is not in the command chain: journaled by an agent that does "
                              "not keep the chain (an older release after a rollback) or added outside the agent")
                elif expected_seq == 1 and linked:
                    self.fail(f"command {cid}: transition 1 is missing or out of place, or the command row was "
                              "altered, or the command before it was deleted")
                else:
                    self.fail(f"command {cid}: transition {expected_seq} is missing or out of place, or the "
                              "command row was altered")
                return
            if chain_hash(prev, row) != row["hash"]:
                self.fail(f"command {cid}: transition {row['seq']} (row {row['id']}) was altered")
                return
            prev, last = row["hash"], row
            with contextlib.suppress(ValueError, AttributeError):  # a detail the agent wrote as such
                reply = json.loads(row["detail"]).get("reply", reply)
            if row["trigger"] == "recover":
                attempts += 1
            if finished_at is None and row["dest"] in TERMINAL_STATES:
                finished_at = row["at"]
            if row["trigger"] == "deliver":
                replied_at = row["at"]
            elif row["trigger"] == "collect":
                removed_at = row["at"]
        if last is None or last["dest"] != command["state"] or (last["seq"], last["hash"]) != (
                command["last_seq"], command["last_hash"]):
            self.fail(f"command {cid}: its state {command['state']!r} is not where its transitions lead")
            return
        stored_reply = None if command["reply_code"] is None else {
            "returncode": command["reply_code"], "message": command["reply_message"] or ""}
        if reply != stored_reply:
            self.fail(f"command {cid}: its stored reply differs from the reply its transitions journaled")
        if not linked:
            return
        expected = {"updated_at": last["at"], "attempts": attempts, "finished_at": finished_at,
                    "replied_at": replied_at, "reply_removed_at": removed_at}
        for column, value in expected.items():
            if command[column] != value:
                self.fail(f"command {cid}: its {column} {command[column]!r} is not what its transitions say "
                          f"({value!r})")

    def _head(self, seals: dict[str, str], chain_from: int, last: tuple[int, str] | None) -> None:
        try:
            head_id, head_link = seals[SEAL_HEAD].split(":")
            head = (int(head_id), head_link)
        except (KeyError, ValueError):
            self.fail("the head seal is missing or altered: the journal was edited outside the agent")
            return
        expected = last or (chain_from - 1, ROOT_LINK)
        if head == expected:
            return
        if head[0] > expected[0]:
            self.fail(f"the newest commands are missing: the journal ended at command {head[0]}, it now ends at "
                      f"{expected[0] if last else 'none'}; they were deleted outside the agent")
        elif head[0] < expected[0]:
            self.fail(f"commands after {head[0]} are not in the command chain: added outside the agent, or "
                      "journaled by an older release of the agent")
        else:
            self.fail(f"command {head[0]}: the newest command was replaced outside the agent")

    def _table_digest(self, cursor: sqlite3.Connection, seals: dict[str, str], table: str,
                      row_hash: Callable[[Mapping[str, Any]], int], columns: tuple[str, ...]) -> None:
        total = sum(map(row_hash, _dicts(cursor.execute(
            f"SELECT {', '.join(columns)} FROM {table}"))))  # noqa: S608 - fixed names
        if digest_text(total) != seals.get(table):
            self.fail(f"the {table} table was changed outside the agent (a row edited, added or removed)")
