"""The journal file's life: created whole or not at all, a broken one moved aside (never silently replaced),
and inspection that never writes, even on a read-only mount."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import JournalError
from agent.journal import Journal
from agent.journal import engine as setup
from agent.journal.engine import DATABASE_NAME


def finished(journal: Journal, request_id: str) -> int:
    record = journal.receive(request_id, "", "version", "version", "d" * 64, '"agent"')
    return journal.mark_replied(journal.transition(record, "answer", "done",
                                                   reply={"returncode": "0", "message": "1.0"})).id


def crash_while_open(state_dir: Path, request_id: str) -> None:
    """Journal a command from a process that dies without closing: its -wal and -shm stay, holding it."""
    script = ("import os, sys, pathlib; from agent.journal import Journal;"
              "j = Journal.open(pathlib.Path(sys.argv[1]));"
              "r = j.receive(sys.argv[2], '', 'version', 'version', 'd' * 64, None); os._exit(0)")
    subprocess.run([sys.executable, "-c", script, str(state_dir), request_id], check=True)


def files(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mode, p.stat().st_size) for p in directory.iterdir()}


BROKEN = [
    pytest.param(b"", "the file is empty", id="empty"),
    pytest.param(b"not a database at all, just text" * 200, "the file is not a SQLite database", id="garbage"),
    pytest.param(None, "the database is not an agent journal (no alembic_version, commands, transitions table)",
                 id="foreign"),
]


@pytest.mark.parametrize(("content", "reason"), BROKEN)
def test_broken_journal_is_moved_aside_and_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    content: bytes | None, reason: str) -> None:
    """A journal that is empty, not a database or not an agent's is moved aside with an ERROR naming both
    paths and why; the agent goes on with a new journal, which records its predecessor."""
    tmp_path.chmod(0o700)
    database = tmp_path / DATABASE_NAME
    if content is None:
        with sqlite3.connect(database) as conn:
            conn.execute("CREATE TABLE other (x)")
    else:
        database.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        journal = Journal.open(tmp_path)
    [moved] = tmp_path.glob(f"{DATABASE_NAME}.broken-*")
    assert moved.read_bytes() == content if content is not None else moved.stat().st_size > 0
    [record] = caplog.records
    assert str(database) in record.getMessage() and str(moved) in record.getMessage()
    assert reason in record.getMessage()
    predecessor = journal.predecessor()
    assert predecessor is not None and (predecessor.path, predecessor.reason) == (str(moved), reason)
    assert journal.receive("r", "", "version", "version", "d" * 64, None).id == 1
    assert journal.verify().ok
    journal.close()
    assert Journal.open_readonly(tmp_path).predecessor() == predecessor


def test_emptied_journal_moves_with_its_wal(tmp_path: Path) -> None:
    """': > journal.sqlite3' behind an agent that died: the emptied file goes aside with its -wal and -shm, so
    the old write-ahead log is never replayed into the new journal."""
    crash_while_open(tmp_path, "lost")
    database = tmp_path / DATABASE_NAME
    assert (tmp_path / f"{DATABASE_NAME}-wal").stat().st_size > 0
    database.write_bytes(b"")
    journal = Journal.open(tmp_path)
    [moved] = tmp_path.glob(f"{DATABASE_NAME}.broken-*[!lm]")
    assert {p.name for p in tmp_path.glob(f"{moved.name}*")} == {moved.name, f"{moved.name}-wal", f"{moved.name}-shm"}
    assert journal.commands() == []
    assert journal.verify().ok
    journal.close()


def test_wal_without_its_database_is_moved_aside(tmp_path: Path) -> None:
    """A deleted journal whose write-ahead log remains is recorded as such, not silently started over."""
    crash_while_open(tmp_path, "lost")
    (tmp_path / DATABASE_NAME).unlink()
    journal = Journal.open(tmp_path)
    predecessor = journal.predecessor()
    assert predecessor is not None and "missing but its write-ahead log remains" in predecessor.reason
    assert Path(predecessor.path + "-wal").exists()
    assert journal.commands() == []
    journal.close()


def test_journal_with_uncheckpointed_commands_is_kept(tmp_path: Path) -> None:
    """An agent killed with its commands still in the WAL: the journal is healthy and keeps them."""
    crash_while_open(tmp_path, "kept")
    journal = Journal.open(tmp_path)
    assert [c.request_id for c in journal.commands()] == ["kept"]
    assert journal.predecessor() is None
    assert not list(tmp_path.glob("*.broken-*"))
    journal.close()


def test_locked_journal_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal another process holds locked is not judged broken: start-up fails, the file stays."""
    Journal.open(tmp_path).close()
    monkeypatch.setattr(setup, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(tmp_path / DATABASE_NAME)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(JournalError, match=r"database is locked.*it was left as it is"):
            Journal.open(tmp_path)
    finally:
        holder.close()
    assert not list(tmp_path.glob("*.broken-*"))
    Journal.open(tmp_path).close()


def test_interrupted_creation_leaves_no_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A creation that fails half-way leaves no journal.sqlite3 (an empty one would look broken next time)."""
    def fail(engine: object, predecessor: object = None) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(setup, "_create_fresh", fail)
    with pytest.raises(JournalError, match="cannot create the journal"):
        Journal.open(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_creation_killed_before_the_journal_appears(tmp_path: Path) -> None:
    """A process killed after building the new journal but before linking it leaves no journal.sqlite3; the
    next start removes the leftover and creates the journal."""
    script = ("import os, sys, pathlib; from agent.journal import Journal;"
              "os.link = lambda *a: os._exit(9);"
              "Journal.open(pathlib.Path(sys.argv[1]))")
    assert subprocess.run([sys.executable, "-c", script, str(tmp_path)]).returncode == 9
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [f"{DATABASE_NAME}.new"]
    journal = Journal.open(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if ".new-" in p.name] == []
    assert journal.predecessor() is None and journal.verify().ok
    journal.close()


def test_new_journal_is_private(tmp_path: Path) -> None:
    """The journal is created 0600 in a 0700 directory, whatever the umask."""
    old = os.umask(0o022)
    try:
        Journal.open(tmp_path / "state").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / DATABASE_NAME).stat().st_mode) == 0o600


# -- inspection -------------------------------------------------------------------------------------------

def inspect_everything(state_dir: Path) -> list[str]:
    journal = Journal.open_readonly(state_dir)
    try:
        ids = [c.id for c in journal.commands()]
        for command_id in ids:
            journal.get(command_id)
            journal.transitions(command_id)
        result = journal.verify()
        assert result.ok, result
        return [c.request_id for c in journal.commands()]
    finally:
        journal.close()


def test_inspection_never_writes(tmp_path: Path) -> None:
    """Reading a closed journal creates no -wal or -shm, changes no mode, and migrates nothing."""
    journal = Journal.open(tmp_path)
    finished(journal, "r1")
    journal.close()
    os.chmod(tmp_path, 0o750)
    os.chmod(tmp_path / DATABASE_NAME, 0o640)
    with sqlite3.connect(tmp_path / DATABASE_NAME) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    before = files(tmp_path)
    assert inspect_everything(tmp_path) == ["r1"]
    assert files(tmp_path) == before
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_inspection_of_a_missing_journal_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        Journal.open_readonly(tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs mounted at a scratch directory, which the test remounts read-only."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


def test_inspection_on_a_read_only_mount(read_only_mount: Path) -> None:
    """A journal closed cleanly, on a read-only file system, is listed and verified."""
    journal = Journal.open(read_only_mount)
    finished(journal, "r1")
    journal.close()
    remount_read_only(read_only_mount)
    assert inspect_everything(read_only_mount) == ["r1"]


def test_inspection_on_a_read_only_mount_reads_the_wal(read_only_mount: Path) -> None:
    """An agent that died with commands in its WAL: on a read-only mount they are still seen."""
    journal = Journal.open(read_only_mount)
    finished(journal, "r1")
    journal.close()
    crash_while_open(read_only_mount, "r2")
    remount_read_only(read_only_mount)
    before = files(read_only_mount)
    assert inspect_everything(read_only_mount) == ["r2", "r1"]
    assert files(read_only_mount) == before


def test_inspection_on_a_read_only_mount_without_shm(read_only_mount: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Without its -shm a WAL cannot be read on a read-only mount: the journal is shown as of its last
    checkpoint, with a warning, rather than not at all."""
    journal = Journal.open(read_only_mount)
    finished(journal, "r1")
    journal.close()
    crash_while_open(read_only_mount, "r2")
    (read_only_mount / f"{DATABASE_NAME}-shm").unlink()
    remount_read_only(read_only_mount)
    with caplog.at_level(logging.WARNING):
        assert inspect_everything(read_only_mount) == ["r1"]
    assert "as of its last checkpoint" in caplog.text
