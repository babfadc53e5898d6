"""One process per state directory: an exclusive lock held for the life of the process.

Two agents on one journal would both answer the same requests: commands would run twice and a key exchange
would be replaced under a password in flight. The lock is an advisory ``flock`` (Windows: a byte-range lock)
on a file in the state directory; the kernel releases it when the process dies, however it dies, so a
crashed agent never leaves a stale lock behind. The file holds the owner's pid, for the error message.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from agent.errors import AlreadyRunning, JournalError

#: Never follow a link planted in the state directory: the file is truncated and rewritten.
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)

#: How often a waiting process tries the lock again (only while it starts, and only when asked to wait).
RETRY_INTERVAL = 0.1


class StateLock:
    """An exclusive lock on ``directory/name``; ``acquire`` it, keep the object while the process serves."""

    def __init__(self, directory: Path, name: str, holder: str) -> None:
        self.path = Path(directory) / name
        #: What holds it, for the messages: "agent" or "supervisor".
        self.holder = holder
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, trying for up to ``wait`` seconds; raise AlreadyRunning if another process keeps it."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the lock file {self.path}: {exc.strerror}; the state directory "
                               "must be a writable directory (check --state-dir and its permissions)") from exc
        deadline = time.monotonic() + wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                owner = _owner(fd)
                os.close(fd)
                raise AlreadyRunning(
                    f"another openstack-agent {self.holder}{f' (pid {owner})' if owner else ''} is using the "
                    f"state directory {self.path.parent}; stop it first, or give this one another --state-dir")
            time.sleep(RETRY_INTERVAL)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (process exit does the same)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _owner(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return str(int(os.read(fd, 32).decode("ascii").strip()))
    return ""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows images only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        # A lock on a byte past the pid the file holds, so that the owner's pid stays readable.
        os.lseek(fd, 64, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
