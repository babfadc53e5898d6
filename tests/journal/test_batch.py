"""Group commit: the writes of a batch share one transaction, each still whole or absent."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import JournalError
from agent.journal import CommandRecord, Journal, RecordWrite
from agent.journal.engine import DATABASE_NAME, configure


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal.open(tmp_path / "state")
    yield journal
    journal.close()


def receive(journal: Journal, request_id: str) -> CommandRecord:
    return journal.receive(request_id, "/local/domain/5", "version", "version", "d" * 64, '"agent"')


def on_disk(journal: Journal) -> list[str]:
    """The request ids another connection sees committed."""
    with sqlite3.connect(journal.path) as other:
        return [row[0] for row in other.execute("SELECT request_id FROM commands ORDER BY id")]


def test_a_batch_is_committed_when_it_ends_and_not_before(journal: Journal) -> None:
    """Inside a batch, other connections see none of its writes; when it ends, they see them all, and the
    journal's chains verify."""
    with journal.batch():
        first = receive(journal, "r1")
        journal.transition(first, "answer", "done", reply={"returncode": "0", "message": "1"})
        receive(journal, "r2")
        assert on_disk(journal) == []
    assert on_disk(journal) == ["r1", "r2"]
    assert journal.verify().ok


def test_a_failed_write_is_undone_alone(journal: Journal) -> None:
    """A write that fails inside a batch leaves no trace, raises to its caller, and the batch's other writes
    are committed."""
    def broken(_cursor: sqlite3.Connection, _command: CommandRecord, _at: str) -> None:
        raise RuntimeError("the records module failed")

    with journal.batch():
        first = receive(journal, "r1")
        with pytest.raises(RuntimeError):
            journal.transition(first, "answer", "done", records=RecordWrite(broken))
        receive(journal, "r2")
    assert on_disk(journal) == ["r1", "r2"]
    assert [t.trigger for t in journal.transitions(first.id)] == ["receive"]
    assert journal.get(first.id).state == "received"
    assert journal.verify().ok


def test_the_writes_are_committed_when_the_block_ends_by_an_exception(journal: Journal) -> None:
    """What was written before an error in the block (a lost XenStore connection, say) is journaled."""
    with pytest.raises(ConnectionError), journal.batch():
        receive(journal, "r1")
        raise ConnectionError("XenStore went away")
    assert on_disk(journal) == ["r1"]


def test_what_follows_a_commit_waits_for_the_batch(journal: Journal) -> None:
    """A records module's ``committed`` runs after the batch's commit, not when its write is made."""
    seen: list[list[str]] = []
    with journal.batch():
        record = receive(journal, "r1")
        journal.transition(record, "answer", "done",
                           records=RecordWrite(lambda *_: None, committed=lambda j: seen.append(on_disk(j))))
        assert seen == []
    assert seen == [["r1"]]


def test_what_follows_a_commit_runs_also_when_the_block_ends_by_an_exception(journal: Journal) -> None:
    """The writes of a block that raised are committed, and so is what they do next (a wipe, a records
    module's view): a secret's wipe is never skipped because the block ended badly."""
    seen: list[str] = []
    with pytest.raises(ConnectionError), journal.batch():
        record = receive(journal, "r1")
        journal.transition(record, "answer", "done",
                           records=RecordWrite(lambda *_: None, committed=lambda _j: seen.append("committed")))
        raise ConnectionError("XenStore went away")
    assert seen == ["committed"]
    assert journal.get(record.id).state == "done"


def test_a_failed_commit_journals_nothing_and_says_so(journal: Journal) -> None:
    """When the commit itself fails, none of the batch is journaled, JournalError says so, and the handle
    goes on journaling correctly afterwards."""
    with pytest.raises(JournalError, match="journal write failed"), journal.batch():
        receive(journal, "r1")
        _fail_the_commit(journal)
    assert on_disk(journal) == []
    receive(journal, "r2")
    assert on_disk(journal) == ["r2"]
    assert journal.verify().ok


def _fail_the_commit(journal: Journal) -> None:
    """A deferred foreign key that the commit checks: the commit fails (as a full disk would make it fail),
    and SQLite leaves the transaction open."""
    journal.driver.execute("PRAGMA defer_foreign_keys=ON")
    journal.driver.execute("INSERT INTO transitions (command_id, seq, trigger, source, dest, at, detail, "
                           "prev_hash, hash) VALUES (999, 1, 't', NULL, 'd', 'now', '{}', '', '')")


class _Refusing(sqlite3.Connection):
    """A connection on which the statements in ``refused`` fail with an I/O error, as SQLite's can (a
    rollback or a checkpoint that meets a bad disk): those statements alone are faked."""

    refused: frozenset[str] = frozenset()

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        if sql in self.refused:
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)  # type: ignore[arg-type]


def _refusing(tmp_path: Path, *statements: str) -> Journal:
    """A journal handle in ``tmp_path`` whose connections refuse ``statements``."""
    Journal.open(tmp_path).close()
    database = tmp_path / DATABASE_NAME
    factory = type("Refusing", (_Refusing,), {"refused": frozenset(statements)})

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False, factory=factory)
        configure(connection)
        return connection

    return Journal(connect, database)


def _in_a_batch(durable: bool) -> Any:
    """A batch (waiting for the disk or not) with a command in it, whose commit fails."""

    def write(journal: Journal) -> None:
        with journal.batch(durable=durable):
            receive(journal, "r1")
            _fail_the_commit(journal)
    return write


def _in_a_transaction(journal: Journal) -> None:
    """One transaction (``Journal.transaction``) whose commit fails."""
    journal.transaction(lambda _cursor: _fail_the_commit(journal))


@pytest.mark.parametrize("write", [_in_a_batch(durable=False), _in_a_batch(durable=True), _in_a_transaction],
                         ids=["batch-not-waiting-for-the-disk", "batch", "transaction"])
def test_a_write_left_open_by_a_failed_rollback_is_dropped_with_its_connection(tmp_path: Path, write: Any) -> None:
    """A write whose commit fails and whose rollback fails too: the commit's error is the one reported, and
    the connection SQLite left in the transaction is dropped. The next write opens a new one, waits for the
    disk, keeps the checkpoints off the commits, and is journaled alone; inspection works on it too."""
    from sqlalchemy import select

    from agent.journal import models

    journal = _refusing(tmp_path, "ROLLBACK")
    journal.checkpoint_in_background()
    try:
        assert journal.read(select(models.commands)) == []  # an engine built over the first connection
        with pytest.raises(JournalError, match="journal write failed"):
            write(journal)
        assert journal.driver.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert journal.driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        receive(journal, "r2")
        assert on_disk(journal) == ["r2"]
        assert [row.request_id for row in journal.read(select(models.commands))] == ["r2"]
    finally:
        journal.close()
    again = Journal.open(tmp_path)
    try:
        assert again.verify().ok
    finally:
        again.close()


def test_a_commit_stands_when_the_wal_restart_after_it_fails(tmp_path: Path) -> None:
    """The writer's own WAL restart (asked for past FORCE_AT) runs after the commit: when it fails (a full
    disk), the commit is still reported as done, what follows it runs, and the restart is tried again later."""
    journal = _refusing(tmp_path, "PRAGMA wal_checkpoint(RESTART)")
    journal.checkpoint_in_background()
    checkpointer = journal._checkpointer
    assert checkpointer is not None
    try:
        followed: list[str] = []
        for name in ("r1", "r2"):
            checkpointer.restart_wanted = True
            with journal.batch():
                receive(journal, name)
                journal._committed(lambda name=name: followed.append(name))
        assert on_disk(journal) == ["r1", "r2"] and followed == ["r1", "r2"]
        assert checkpointer.restart_wanted
    finally:
        journal.close()


@pytest.mark.parametrize(("durable", "inside"), [(True, 2), (False, 1)])
def test_only_a_batch_asked_not_to_wait_for_the_disk_does_not(journal: Journal, durable: bool, inside: int) -> None:
    """A delivery batch commits with synchronous=NORMAL (1), any other with FULL (2); after either, the
    connection is back at FULL."""
    with journal.batch(durable=durable):
        receive(journal, "r1")
        assert journal.driver.execute("PRAGMA synchronous").fetchone()[0] == inside
    assert journal.driver.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert on_disk(journal) == ["r1"]
