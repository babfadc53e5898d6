"""The journal's WAL checkpoints, in a thread of their own, off the path of the requests.

A checkpoint copies the write-ahead log into the database file and syncs it. By default SQLite runs one inside
the commit that takes the WAL past 1,000 pages, in the committing connection: on a large journal whose pages
are not in the page cache, it writes pages all over the database file, and the request behind that commit
waits for it (half a second on a journal of a million commands, while retention removes old commands).

The daemon's connection therefore never checkpoints (``wal_autocheckpoint=0``). A ``Checkpointer`` runs them
on a connection of its own, after a commit asked for one (``nudge``):

- PASSIVE checkpoints copy the WAL into the database without waiting for the writer, which goes on appending
  meanwhile; they follow each other at once while the WAL holds more than ``CAUGHT_UP`` frames not yet
  copied, and at most one per ``INTERVAL`` once it does not.
- SQLite writes the WAL from its start again only when a write begins with every frame copied, which a writer
  that keeps committing never lets a concurrent checkpoint reach: the WAL would grow without end (half a GB
  in ten seconds of commits). So once the WAL holds ``RESTART_AT`` frames and a passive pass has left at most
  ``CAUGHT_UP`` to copy, the checkpointer sets ``restart_wanted``, and the writer's handle, after its next
  commit, runs a RESTART checkpoint itself (``Journal._wal_grew``): it copies those last few frames, and the
  next commit starts the WAL anew. The writer spends that short copy, not the bulk, unless it outruns the
  checkpoints: past ``FORCE_AT`` frames it restarts the WAL whatever is left. ``journal_size_limit`` then
  cuts the file back.

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
#: Frames left to copy that count as caught up (a passive pass follows at once while more are left).
CAUGHT_UP = 256
#: WAL frames (pages of 4 KiB) past which the WAL is started anew once caught up (SQLite's own checkpoints
#: come at 1,000).
RESTART_AT = 1000
#: WAL frames past which the writer starts it anew however much is left to copy: a writer faster than the
#: checkpoints (a flood on a slow disk) then pays for them, and the WAL stays within about 32 MiB.
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
        #: Set when the WAL is long and nearly all copied: the writer's handle restarts it after its next commit.
        self.restart_wanted = False

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
                    self._wanted.set()  # behind the writer: the next pass at once
                elif self._stopping.wait(self.interval):
                    return
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> int:
        """One pass: how many WAL frames are left to copy after it."""
        _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        if frames >= FORCE_AT or (frames >= RESTART_AT and frames - copied <= CAUGHT_UP):
            self.restart_wanted = True
        return max(0, int(frames) - int(copied))
