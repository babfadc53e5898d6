"""The journal's WAL checkpoints, in a thread of their own, off the path of the requests.

A checkpoint copies the write-ahead log into the database file and syncs it. By default SQLite runs one inside
the commit that takes the WAL past 1,000 pages, in the committing connection: on a large journal whose pages
are not in the page cache, it writes pages all over the database file, and the request behind that commit
waits for it (half a second on a journal of a million commands, while retention removes old commands).

The daemon's connection therefore never checkpoints (``wal_autocheckpoint=0``). A ``Checkpointer`` runs them
on a connection of its own, after a commit asked for one (``nudge``):

- PASSIVE checkpoints copy the WAL into the database without waiting for the writer, which goes on appending
  meanwhile. They follow each other at once while more than ``CAUGHT_UP`` frames are left to copy, every
  ``SHORT`` while fewer are, and at most one per ``INTERVAL`` once every frame is copied.
- SQLite writes the WAL from its start again when a write begins with every frame copied: the daemon pauses
  between requests, the passes catch up in such a pause, and the next commit starts the WAL anew, at no cost
  to the writer. A writer that never pauses would never let them (the WAL grew to half a GB in ten seconds
  of commits without a pause): past ``FORCE_AT`` frames the checkpointer sets ``restart_wanted``, and the
  writer's handle runs a RESTART checkpoint itself after its next commit (``Journal._wal_grew``), paying for
  what is left to copy. ``journal_size_limit`` then cuts the file back.

A crash in the middle of a checkpoint loses nothing (that is SQLite's own guarantee). ``paused`` keeps the
thread out of the way of a checkpoint the daemon runs itself (the RESTART above, and the TRUNCATE one that
makes a wiped secret leave the WAL).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Seconds between two checkpoints once the WAL is copied: under a light flow of commits, one sync of the
#: database file per interval, in the background.
INTERVAL = 1.0
#: Frames left to copy past which the next pass follows at once; with fewer left, after ``SHORT`` seconds.
CAUGHT_UP = 256
SHORT = 0.05
#: WAL frames (pages of 4 KiB) past which the writer starts the WAL anew itself, whatever is left to copy: a
#: writer that never pauses pays for the checkpoints, and the WAL stays within about 32 MiB.
FORCE_AT = 8000


class Checkpointer:
    """A thread that checkpoints the journal's WAL when commits ask for it (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, interval: float = INTERVAL) -> None:
        """``connection``: the thread's own connection to the journal (opened by the caller, so that it knows
        whether checkpoints can leave the commits at all); the thread closes it when it ends."""
        self._connection = connection
        self.interval = interval
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: How many checkpoints ran (for the tests and the curious).
        self.runs = 0
        #: Set past FORCE_AT frames: the writer's handle restarts the WAL after its next commit.
        self.restart_wanted = False
        #: WAL frames the last pass left to copy.
        self.left = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A commit added to the WAL: checkpoint it soon."""
        self._wanted.set()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread, letting a checkpoint under way finish (SQLite cannot cut one short safely)."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No background checkpoint runs inside the block (one under way is waited for)."""
        with self._lock:
            yield

    def _run(self) -> None:
        connection = self._connection
        try:
            while True:
                self._wanted.wait()
                if self._stopping.is_set():
                    return
                self._wanted.clear()
                with self._lock:
                    try:
                        left = self._checkpoint(connection)
                    except sqlite3.Error as exc:  # a full disk, say: the next commit asks again
                        log.warning("journal checkpoint failed (%s); it is tried again after the next commit",
                                    exc)
                        left = 0
                if left > CAUGHT_UP:
                    self._wanted.set()  # far behind the writer: the next pass at once
                elif left:
                    self._wanted.set()  # nearly there: the next pass soon, to catch up in a pause
                    if self._stopping.wait(SHORT):
                        return
                elif self._stopping.wait(self.interval):
                    return
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> int:
        """One pass: how many WAL frames are left to copy after it."""
        _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        if frames >= FORCE_AT:
            self.restart_wanted = True
        self.left = max(0, int(frames) - int(copied))
        return self.left

    @property
    def behind(self) -> bool:
        """Whether the passes are far behind the writer (work that can wait should, so that they catch up)."""
        return self.left > CAUGHT_UP
