"""The journal's WAL checkpoints, in a thread of their own, off the path of the requests.

A checkpoint copies the write-ahead log into the database file and syncs it. By default SQLite runs one inside
the commit that takes the WAL past 1,000 pages, in the committing connection: on a large journal whose pages
are not in the page cache, it writes pages all over the database file, and the request behind that commit
waits for it (half a second on a journal of a million commands, while retention removes old commands).

The daemon's connection therefore never checkpoints (``wal_autocheckpoint=0``). A ``Checkpointer`` runs them
on a connection of its own, after a commit asked for one (``nudge``):

- PASSIVE checkpoints copy the WAL into the database without waiting for the writer, which goes on appending
  meanwhile. They follow each other at once while more than ``CAUGHT_UP`` frames are left to copy, every
  ``SHORT`` while fewer are, and once every frame is copied, after ``INTERVAL`` or ``PASS_EVERY`` more
  commits, whichever comes first: under a steady flow of commits no pass has more than those commits' pages to
  copy and sync, which keeps the disk's bursts, and the requests' syncs queued behind them, short.
- SQLite writes the WAL from its start again when a write begins with every frame copied: the daemon pauses
  between requests, the passes catch up in such a pause, and the next commit starts the WAL anew, at no cost
  to the writer. A writer that never pauses never lets them: requests one after another commit every couple
  of milliseconds, and a pass over a long WAL takes tens (the WAL grew to half a GB in ten seconds of commits
  without a pause). So once a pass has copied a WAL of ``RESTART_AT`` frames or more whole, the thread runs a
  RESTART checkpoint at once, without waiting for the writer: it has only the commits since that pass to copy
  (often none), and the writer's next commit starts the WAL anew. When the writer is in a transaction just
  then, a later pass tries again.
- Past ``FORCE_AT`` frames the passes cannot keep up: the checkpointer sets ``restart_wanted``, and the
  writer's handle runs a RESTART checkpoint itself after its next commit (``Journal._wal_grew``), paying for
  what is left to copy (a tenth of a second on a journal of a million commands). Work that can wait (a large
  prune) pauses while the passes are ``behind``, so that this does not happen on its account.
  ``journal_size_limit`` then cuts the file back.

A crash in the middle of a checkpoint loses nothing (that is SQLite's own guarantee). ``paused`` keeps the
thread out of the way of a checkpoint the daemon runs itself (the RESTART above, and the TRUNCATE one that
makes a wiped secret leave the WAL).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Seconds between two checkpoints once the WAL is copied: under a light flow of commits, one sync of the
#: database file per interval, in the background.
INTERVAL = 1.0
#: Frames left to copy past which the next pass follows at once; with fewer left, after ``SHORT`` seconds.
CAUGHT_UP = 256
SHORT = 0.05
#: Commits after which a caught-up thread checkpoints again without waiting for its interval.
PASS_EVERY = 64
#: WAL frames (pages of 4 KiB) from which a pass that copied the WAL whole has it started anew: under a steady
#: flow of requests the WAL stays within about 4 MiB.
RESTART_AT = 1024
#: A restart follows a pass that found at most this many frames new since the one before (at most
#: ``RESTART_TRIES`` passes are tried).
RESTART_NEW = 64
RESTART_TRIES = 4
#: Seconds a pass may take before work that can wait holds back (see ``behind``): a slow pass means the disk
#: is busy with the checkpoints, and every request's sync queues behind them.
SLOW_PASS = 0.005
#: WAL frames past which the writer starts the WAL anew itself, whatever is left to copy: a writer that never
#: pauses pays for the checkpoints, and the WAL stays within about 32 MiB.
FORCE_AT = 8000


class Checkpointer:
    """A thread that checkpoints the journal's WAL when commits ask for it (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, interval: float = INTERVAL) -> None:
        """``connection``: the thread's own connection to the journal (opened by the caller, so that it knows
        whether checkpoints can leave the commits at all); the thread closes it when it ends."""
        self._connection = connection
        self.interval = interval
        self._wanted = threading.Event()
        # Set every PASS_EVERY commits: wakes a caught-up thread before its interval is over.
        self._backlog = threading.Event()
        self._nudges = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: How many checkpoints ran (for the tests and the curious).
        self.runs = 0
        #: Set past FORCE_AT frames: the writer's handle restarts the WAL after its next commit.
        self.restart_wanted = False
        #: WAL frames the last pass left to copy.
        self.left = 0
        #: Whether the last pass took longer than SLOW_PASS.
        self.slow = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A commit added to the WAL: checkpoint it soon."""
        self._nudges += 1
        self._wanted.set()
        if self._nudges % PASS_EVERY == 0:
            self._backlog.set()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread, letting a checkpoint under way finish (SQLite cannot cut one short safely)."""
        self._stopping.set()
        self._wanted.set()
        self._backlog.set()
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
                    nudges = self._nudges  # commits before this point are in the WAL this pass copies
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
                else:
                    # Caught up: the next pass after ``interval``, or sooner once ``PASS_EVERY`` commits are
                    # waiting, so that no pass has more than their pages to copy and sync.
                    self._backlog.clear()
                    if self._nudges - nudges < PASS_EVERY:
                        self._backlog.wait(self.interval)
                    if self._stopping.is_set():
                        return
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> int:
        """One pass: how many WAL frames are left to copy after it."""
        started = time.monotonic()
        _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.slow = time.monotonic() - started > SLOW_PASS
        self.runs += 1
        self.left = max(0, int(frames) - int(copied))
        if frames >= RESTART_AT and not self.left:
            self._restart(connection, int(frames))
        elif frames >= FORCE_AT:
            self.restart_wanted = True
        return self.left

    @staticmethod
    def _restart(connection: sqlite3.Connection, frames: int) -> None:
        """Have the writer's next commit start the WAL anew, unless the writer is in a transaction (then a
        later pass tries again).

        The RESTART holds the write lock while it copies what the WAL gained since the pass before it, so it
        runs only after a pass that found little new (``RESTART_NEW`` frames): on a cold journal a pass over a
        few hundred new pages takes tens of milliseconds, which a request must not wait for.
        """
        for _ in range(RESTART_TRIES):
            _busy, now, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if now < copied or now - frames > RESTART_NEW:
                frames = int(now)
                continue  # the writer added more meanwhile: another pass first
            timeout = connection.execute("PRAGMA busy_timeout").fetchone()[0]
            connection.execute("PRAGMA busy_timeout=0")
            try:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                connection.execute(f"PRAGMA busy_timeout={int(timeout)}")
            return

    @property
    def behind(self) -> bool:
        """Whether work that can wait should, so that the passes catch up: they are far behind the writer, or
        the last one was slow (the disk is busy with them)."""
        return self.left > CAUGHT_UP or self.slow
