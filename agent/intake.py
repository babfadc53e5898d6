"""The request being taken in: a note, outside the journal, of the request read but not yet journaled.

Everything after ``received`` is journaled, so a command that crashes the agent is counted by the journal's
attempt counter and given up after ``recovery.max_attempts``. The short stretch before it (parsing the body,
admitting it, building its first row) has no row to count on. If a request kills the process there (a bug
in a library, the kernel's OOM killer), the start-up scan would read it first again and die again, and every
request behind it would wait forever. This note names the request being taken in and how many times in a
row the agent started taking it in, so the next start knows it was fatal before and answers it instead.

The note is written for every new request, so it costs one ``pwrite`` and no fsync: a process crash keeps
it (the page cache survives), and a power cut losing it only restarts the count. A shorter note is padded with
blanks over a longer one before it (JSON allows them), which saves truncating the file on every request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from agent.errors import JournalError

log = logging.getLogger(__name__)

NAME = "intake"


class Intake:
    """The intake note in the state directory; one per agent process, which holds the directory's lock."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / NAME
        try:
            # Never through a link planted in the state directory: the note is truncated and rewritten.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                               | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the intake note {self.path}: {exc.strerror}; the state directory "
                               "must be a writable directory (check --state-dir and its permissions)") from exc
        if hasattr(os, "fchmod"):
            os.fchmod(self._fd, 0o600)  # it names requests: private, like the journal
        #: How many bytes of the file the last note covered (what a shorter one must blank out).
        self._written = os.fstat(self._fd).st_size
        #: What the previous process was taking in last: (request id, digest, attempts), or None. If that
        #: request is still unjournaled when this process meets it, the previous process died taking it in.
        self.inherited: tuple[str, str, int] | None = self._read()

    def _read(self) -> tuple[str, str, int] | None:
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            os.lseek(self._fd, 0, os.SEEK_SET)
            note = json.loads(os.read(self._fd, 65536).decode("utf-8"))
            return str(note["request"]), str(note["digest"]), int(note["attempts"])
        return None

    def begin(self, request_id: str, digest: str) -> int:
        """Note that ``request_id`` is being taken in; return how many processes have started taking it in,
        this one included. Retries within one process (a journal write that failed) do not count."""
        attempts = 1
        if self.inherited is not None and self.inherited[:2] == (request_id, digest):
            attempts = self.inherited[2] + 1
        note = json.dumps({"request": request_id, "digest": digest, "attempts": attempts}, ensure_ascii=True)
        try:
            self._put(note.encode("ascii"))
        except OSError as exc:
            # Without the note a fatal request could stop the agent again at the next start, but refusing
            # every request because a note cannot be written would be worse.
            log.warning("cannot write the intake note %s: %s", self.path, exc.strerror)
        return attempts

    def _put(self, note: bytes) -> None:
        padded = note.ljust(self._written)
        if hasattr(os, "pwrite"):
            os.pwrite(self._fd, padded, 0)
        else:  # Windows has no pwrite
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, padded)
        self._written = max(self._written, len(note))

    def clear(self) -> None:
        """Forget the note (a clean stop, or nothing being taken in): the next process then counts no death
        against any request."""
        with contextlib.suppress(OSError):
            self._put(b"")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
