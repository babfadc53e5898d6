"""The journal on disk: file modes, SQLite settings, transitions, and tamper detection."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from agent.errors import CommandNotFound, JournalError
from agent.journal import Journal, retention
from agent.journal.engine import DATABASE_NAME


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    journal = Journal.open(tmp_path / "state")
    yield journal
    journal.close()


def finished_command(journal: Journal, request_id: str = "r1") -> int:
    record = journal.receive(request_id, "/local/domain/5", "version", "version", "d" * 64, '"agent"')
    record = journal.transition(record, "answer", "done", reply={"returncode": "0", "message": "1.0"})
    journal.mark_replied(record)
    return record.id


def raw(journal: Journal) -> sqlite3.Connection:
    return sqlite3.connect(journal.path)


def test_state_directory_and_database_are_private(tmp_path: Path) -> None:
    """The state directory is 0700 and the database 0600, even when the directory existed before."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    Journal.open(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / DATABASE_NAME).stat().st_mode) == 0o600


def test_sqlite_is_configured_for_durability(journal: Journal) -> None:
    """WAL, synchronous=FULL, secure_delete and a busy timeout are in force on the agent's connection."""
    conn = journal.conn.connection.dbapi_connection
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_write_takes_the_lock_at_begin(journal: Journal) -> None:
    """BEGIN IMMEDIATE: while the agent writes, another writer cannot even begin, before any statement ran."""
    errors: list[str] = []

    def work(_conn: object) -> None:
        other = sqlite3.connect(journal.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            errors.append(str(exc))
        finally:
            other.close()

    journal.transaction(work)
    assert errors == ["database is locked"]


def test_reads_do_not_take_the_write_lock(journal: Journal) -> None:
    """Queries (the CLI, lookups) use a deferred BEGIN: while one is open, another writer begins and commits."""
    finished_command(journal)
    other = sqlite3.connect(journal.path, timeout=0, isolation_level=None)
    blocked = None
    try:
        with journal.conn.begin():
            assert journal.conn.exec_driver_sql("SELECT count(*) FROM commands").scalar() == 1
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("CREATE TABLE probe (x)")
                other.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                blocked = str(exc)
        assert blocked is None, f"an open read kept another writer out: {blocked}"
        assert other.execute("SELECT count(*) FROM sqlite_master WHERE name = 'probe'").fetchone() == (1,)
    finally:
        other.close()


def test_command_path_is_journaled_in_order(journal: Journal) -> None:
    """receive, answer and deliver become three chained rows and the command ends done and replied."""
    command_id = finished_command(journal)
    command = journal.get(command_id)
    assert (command.state, command.reply, command.attempts) == ("done", {"returncode": "0", "message": "1.0"}, 1)
    assert command.replied_at is not None and command.finished_at is not None
    rows = journal.transitions(command_id)
    assert [(r.seq, r.trigger, r.source, r.dest) for r in rows] == [
        (1, "receive", None, "received"), (2, "answer", "received", "done"), (3, "deliver", "done", "done")]
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert journal.verify().ok


def test_transition_from_a_stale_record_is_refused(journal: Journal) -> None:
    """A transition based on an outdated view of the command (another writer moved it) changes nothing."""
    stale = journal.receive("r1", "", "version", "version", "d" * 64, None)
    journal.transition(stale, "answer", "done", reply={"returncode": "0", "message": "1.0"})
    with pytest.raises(JournalError, match="changed by another writer"):
        journal.transition(stale, "fail", "failed", reply={"returncode": "500", "message": "x"})
    assert journal.get(stale.id).state == "done"
    assert len(journal.transitions(stale.id)) == 2


def test_attempts_are_counted_and_journaled(journal: Journal) -> None:
    """Each recovery increments the attempt counter and leaves a 'recover' row."""
    record = journal.receive("r1", "", "version", "version", "d" * 64, None)
    record = journal.record_attempt(record)
    assert record.attempts == 2
    assert journal.record_attempt(record).attempts == 3
    assert [r.trigger for r in journal.transitions(record.id)] == ["receive", "recover", "recover"]
    assert journal.get(record.id).attempts == 3


def test_unknown_command_id_is_a_clear_error(journal: Journal) -> None:
    """Asking for a command that does not exist names the way to find real ids."""
    with pytest.raises(CommandNotFound, match="journal list"):
        journal.get(42)


TAMPERING = [
    pytest.param("UPDATE transitions SET detail = '{\"x\":1}' WHERE command_id = 1 AND seq = 2", "was altered",
                 id="edit-detail"),
    pytest.param("UPDATE transitions SET dest = 'failed' WHERE command_id = 1 AND seq = 2", "was altered",
                 id="edit-dest"),
    pytest.param("DELETE FROM transitions WHERE command_id = 1 AND seq = 2", "missing or out of place",
                 id="delete-row"),
    pytest.param("UPDATE commands SET state = 'received' WHERE id = 1", "not where its transitions lead",
                 id="edit-state"),
    pytest.param("UPDATE commands SET request_id = 'other' WHERE id = 1", "missing or out of place",
                 id="edit-request"),
    pytest.param("UPDATE transitions SET command_id = 2, seq = 4 WHERE command_id = 1 AND seq = 3",
                 "not where its transitions lead", id="move-row"),
    pytest.param("UPDATE commands SET reply_message = 'forged' WHERE id = 1", "stored reply differs",
                 id="edit-reply"),
]


@pytest.mark.parametrize(("sql", "problem"), TAMPERING)
def test_verify_detects_tampering(journal: Journal, sql: str, problem: str) -> None:
    """Any edit of the journal outside the agent breaks verification, with the place named."""
    finished_command(journal)
    finished_command(journal, "r2")
    with raw(journal) as conn:
        assert conn.execute(sql).rowcount == 1
    result = journal.verify()
    assert not result.ok
    assert problem in result.problem
    assert result.problem.startswith("command 1")


def test_prune_removes_only_old_delivered_commands(journal: Journal) -> None:
    """Retention deletes finished, replied commands before the cutoff and keeps the chains of the rest."""
    old = finished_command(journal, "old")
    unfinished = journal.receive("open", "", "version", "version", "d" * 64, None).id
    assert retention.prune(journal, "9999-12-31T00:00:00.000000Z", keep_min=1, max_commands=100).count == 1
    assert [c.id for c in journal.commands()] == [unfinished]
    assert old not in [c.id for c in journal.commands()]
    assert journal.verify().ok
