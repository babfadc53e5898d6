"""The state directory's lock: one process at a time, released by the kernel however the holder dies."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from agent import lock as lock_module
from agent.errors import AlreadyRunning, JournalError
from agent.lock import StateLock
from tests.conftest import wait_for

HOLD = "import sys, time; from agent.lock import StateLock; StateLock(sys.argv[1], 'agent').acquire(); " \
       "print('held', flush=True); time.sleep(60)"


def holder(directory: Path) -> subprocess.Popen[str]:
    """Another process that takes the lock and keeps it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    """While one process holds the lock, another cannot take it; the error names the holder and the fix."""
    other = holder(tmp_path)
    try:
        with pytest.raises(AlreadyRunning) as refused:
            StateLock(tmp_path, "agent").acquire()
        assert str(refused.value) == (f"another openstack-agent agent (pid {other.pid}) is using the state directory "
                                      f"{tmp_path}; stop it first, or give this one another --state-dir")
        assert refused.value.exit_code == 11
    finally:
        other.kill()
        other.wait()


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    """SIGKILL leaves no stale lock: the next process takes it at once, and writes its own pid."""
    other = holder(tmp_path)
    other.send_signal(signal.SIGKILL)
    other.wait()
    lock = StateLock(tmp_path, "agent")
    lock.acquire()
    assert (tmp_path / "agent.pid").read_text().strip() == str(os.getpid())
    lock.release()


def test_waiting_takes_the_lock_once_the_holder_is_gone(tmp_path: Path) -> None:
    """A process asked to wait gets the lock when its predecessor exits within the wait."""
    other = holder(tmp_path)
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {other.pid}"])
    lock = StateLock(tmp_path, "agent")
    lock.acquire(wait=20)
    wait_for(lambda: other.poll() is not None)
    killer.wait()
    lock.release()


def test_within_one_process_a_second_lock_is_refused_too(tmp_path: Path) -> None:
    """Two agents in one process (tests run agents in threads) exclude each other as well."""
    first = StateLock(tmp_path, "agent")
    first.acquire()
    with pytest.raises(AlreadyRunning):
        StateLock(tmp_path, "agent").acquire(wait=0.3)
    first.release()
    StateLock(tmp_path, "agent").acquire()


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    """A symbolic link in place of the pid file is not written through: what it points at stays untouched."""
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "agent.pid").symlink_to(target)
    lock = StateLock(tmp_path, "agent")
    lock.acquire()
    assert target.read_text() == "keep me\n"
    lock.release()


def test_deleting_what_the_directory_holds_does_not_free_the_lock(tmp_path: Path) -> None:
    """The lock is the directory's own: removing every file in it does not let a second process in."""
    other = holder(tmp_path)
    try:
        for path in tmp_path.iterdir():
            path.unlink()
        with pytest.raises(AlreadyRunning):
            StateLock(tmp_path, "agent").acquire()
    finally:
        other.kill()
        other.wait()


def test_a_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    """A state directory path that is a file gives an error naming it and the fix, not a traceback."""
    (tmp_path / "file").write_text("")
    with pytest.raises(JournalError, match=r"cannot lock the state directory .*file: File exists; it must be a"):
        StateLock(tmp_path / "file", "agent").acquire()


@pytest.mark.parametrize("where", ["lock", "journal"])
def test_on_windows_the_state_directory_gets_its_acl_before_anything_is_in_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """On Windows the first to create the state directory (the lock, or the journal) gives it the ACL of
    ``agent.winacl`` (SYSTEM and Administrators only) before anything is written in it."""
    import agent.winacl
    from agent.journal import engine

    directory = tmp_path / "state"
    secured: list[tuple[Path, bool]] = []

    def secure(path: Path) -> None:
        secured.append((path, path.exists() and any(path.iterdir())))
        path.mkdir(mode=0o700, exist_ok=True)

    monkeypatch.setattr(agent.winacl, "secure_state_dir", secure)
    monkeypatch.setattr(sys, "platform", "win32")
    if where == "lock":
        lock = StateLock(directory, "agent")
        lock.acquire()
        lock.release()
    else:
        engine.prepare_state_dir(directory)
    assert secured == [(directory, False)]


# -- holding: the lock of a moment on a file (the pointers' writers) ---------------------------------------------

def test_a_lock_file_replaced_while_waited_for_is_taken_again(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock file replaced while a process waits for it (a planted link repaired by another) is let go once had,
    and the lock taken on the file there now: two holders never hold two different files."""
    path = tmp_path / ".pointers.lock"
    locked: list[int] = []
    try_lock = lock_module._try_lock

    def replacing_first(fd: int) -> bool:
        locked.append(os.fstat(fd).st_ino)
        if len(locked) == 1:
            (tmp_path / "new").write_bytes(b"")
            os.replace(tmp_path / "new", path)
        return try_lock(fd)

    monkeypatch.setattr(lock_module, "_try_lock", replacing_first)
    with lock_module.holding(path, 0.0):
        assert locked[-1] == os.lstat(path).st_ino
    assert len(locked) == 2 and locked[0] != locked[1]


@pytest.mark.parametrize(("mode", "attributes", "planted"), [
    (stat.S_IFREG, 0, False),
    (stat.S_IFDIR, 0, False),                                         # refused, never removed
    (stat.S_IFLNK, 0, True),
    (stat.S_IFIFO, 0, True),
    (stat.S_IFDIR, stat.FILE_ATTRIBUTE_REPARSE_POINT, True),          # a junction, as Windows' lstat reports it
    (stat.S_IFREG, stat.FILE_ATTRIBUTE_REPARSE_POINT, True),          # a file symbolic link, likewise
])
def test_what_counts_as_planted_in_place_of_a_lock_file(mode: int, attributes: int, planted: bool) -> None:
    """A link, a special file, or on Windows any reparse point (a junction lstat reports as a directory) is
    planted and removed; a regular file or a real directory is not."""
    found = types.SimpleNamespace(st_mode=mode | 0o600, st_file_attributes=attributes)
    assert lock_module._planted(found) is planted  # type: ignore[arg-type]
