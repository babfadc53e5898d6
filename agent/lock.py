"""One process per directory: an exclusive lock held for the life of the process.

Two agents on one journal would both answer the same requests: commands would run twice and a key exchange
would be replaced under a password in flight. The agent locks its state directory, the supervisor its
install root, with an advisory ``flock`` on the directory itself (Windows: a byte-range lock on a file in
it); the kernel releases it when the process dies, however it dies, so a crashed agent never leaves a stale
lock behind.

``holding`` is the same lock on a file, for a moment rather than a process's life: the writers of the install
root's pointers take it around a switch (``agent.pointers``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from agent.errors import AlreadyRunning, JournalError

#: Never follow a link planted in the directory: the pid file is truncated and rewritten.
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)

#: How often a waiting process tries the lock again (only while it starts, and only when asked to wait).
RETRY_INTERVAL = 0.1


class StateLock:
    """An exclusive lock on a directory; ``acquire`` it, keep the object while the process serves.

    The lock is on the directory itself, not on a file in it: a file could be deleted or replaced under a
    running agent, and the next process would lock the new one. ``<holder>.pid`` in the directory says who
    holds it, for the messages only.
    """

    def __init__(self, directory: Path, holder: str, what: str = "state directory") -> None:
        self.directory = Path(directory)
        #: What holds it, for the messages: "agent" or "supervisor"; and what the directory is.
        self.holder, self.what = holder, what
        self.pid_path = self.directory / f"{holder}.pid"
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, trying for up to ``wait`` seconds; raise AlreadyRunning if another process keeps it."""
        if sys.platform == "win32":  # the directory's ACL (0700's analogue) before anything is written in it
            from agent.winacl import secure_state_dir

            secure_state_dir(self.directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = _open_lockable(self.directory)
        except OSError as exc:
            raise JournalError(f"cannot lock the {self.what} {self.directory}: {exc.strerror}; it must be a "
                               "directory the agent can write (check its path and permissions)") from exc
        if not _lock_by(fd, time.monotonic() + wait):
            os.close(fd)
            owner = self._owner()
            raise AlreadyRunning(
                f"another openstack-agent {self.holder}{f' (pid {owner})' if owner else ''} is using the "
                f"{self.what} {self.directory}; stop it first, or give this one another "
                f"{'--state-dir' if self.what == 'state directory' else '--install-root'}")
        self._fd = fd
        self._write_pid()

    def _write_pid(self) -> None:
        try:
            pid_fd = os.open(self.pid_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _FLAGS, 0o600)
        except OSError:
            return  # only the messages of a second process would miss it
        try:
            os.write(pid_fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(pid_fd)

    def _owner(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            return str(int(self.pid_path.read_text(encoding="ascii").strip()))
        return ""

    def release(self) -> None:
        """Let go of the lock (process exit does the same)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def holding(path: Path, wait: float) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created if need be) for a ``with`` block, waited for up to ``wait``
    seconds: TimeoutError when another process (or thread) keeps it longer, IsADirectoryError when a directory is
    in its place, OSError when it cannot be opened.

    The file is this module's own, so anything else found in its place (a link, dangling or not, a FIFO, a
    device node) is removed and the file made again rather than followed or opened (``_open_regular``). A lock
    taken on a file that is no longer the one at ``path`` once it is had (replaced meanwhile) is let go and taken
    again on the file there now: two holders never lock two different files.
    """
    deadline = time.monotonic() + wait
    while True:
        fd = _open_regular(path)
        try:
            if not _lock_by(fd, deadline):
                raise TimeoutError(f"{path} stays locked")
            if _same_file(os.fstat(fd), path):
                break
            _unlock(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        try:
            _unlock(fd)
        finally:
            os.close(fd)


def _lock_by(fd: int, deadline: float) -> bool:
    """Take the lock on ``fd``, trying until the monotonic ``deadline``; whether it was taken."""
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(RETRY_INTERVAL)
    return True


def _open_regular(path: Path) -> int:
    """Open (create) the regular file ``path``, removing first whatever else is in its place but a directory,
    which is an operator's to move away (IsADirectoryError). Links are never followed: lstat says what is there
    (on Windows too, where a symbolic link or a junction is a reparse point and O_NOFOLLOW does not exist), and
    fstat after the open that what was opened is a regular file."""
    for _ in range(3):  # a planted file that comes back after each removal is an error below, not a loop
        with contextlib.suppress(FileNotFoundError):
            found = os.lstat(path)
            if _planted(found):
                _remove_planted(path, found)
            elif stat.S_ISDIR(found.st_mode):
                raise IsADirectoryError(errno.EISDIR, "a directory is in place of the lock file", str(path))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link planted between the lstat and the open: removed next time
                continue
            raise
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    raise OSError(errno.EEXIST, "something other than a regular file keeps being put in place of the lock file",
                  str(path))


def _planted(found: os.stat_result) -> bool:
    """Whether what lstat found is neither a regular file nor a directory proper: a link, or a special file."""
    if getattr(found, "st_file_attributes", 0) & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0):
        return True  # Windows: a symbolic link or a junction, to a file or a directory
    return not (stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode))


def _remove_planted(path: Path, found: os.stat_result) -> None:
    with contextlib.suppress(FileNotFoundError):  # another process removed it first
        if stat.S_ISDIR(found.st_mode):
            os.rmdir(path)  # a junction or a directory link: the link goes, what it names is untouched
        else:
            os.unlink(path)


def _same_file(opened: os.stat_result, path: Path) -> bool:
    """Whether ``path`` still names the file ``opened`` describes."""
    try:
        there = os.lstat(path)
    except FileNotFoundError:
        return False
    return (there.st_dev, there.st_ino) == (opened.st_dev, opened.st_ino)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows images only
    import msvcrt

    def _open_lockable(directory: Path) -> int:
        # Windows cannot lock a directory: a file in it stands in.
        return os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        # _locking's documentation asks for a region to be unlocked before its file is closed.
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _open_lockable(directory: Path) -> int:
        # The directory may itself be a link an operator made; only files in it are never followed.
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
