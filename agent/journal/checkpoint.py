"""The journal's WAL checkpoints, in a thread of their own, off the path of the requests.

A checkpoint copies the write-ahead log into the database file and syncs it. By default SQLite runs one inside
the commit that takes the WAL past 1,000 pages, in the committing connection: on a large journal whose pages
are not in the page cache, it writes pages all over the database file, and the request behind that commit
waits for it (half a second on a journal of a million commands, while retention removes old commands).

The daemon's connection therefore never checkpoints (``wal_autocheckpoint=0``). A ``Checkpointer`` runs
PASSIVE checkpoints on a connection of its own, at most one per ``INTERVAL`` and only after a commit asked for
one (``nudge``). A passive checkpoint never waits for the writer, which goes on appending to the WAL meanwhile,
and SQLite writes the WAL from its start again once a checkpoint has caught up with it; a crash in the middle
of one loses nothing (that is SQLite's own guarantee). ``paused`` keeps it out of the way of a checkpoint the
daemon runs itself (the TRUNCATE one that makes a wiped secret leave the WAL).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Seconds between two checkpoints at most: under a steady flow of commits, one sync of the database file per
#: interval, in the background.
INTERVAL = 1.0


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
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        self.runs += 1
                    except sqlite3.Error as exc:  # a full disk, say: the next commit asks again
                        log.warning("journal checkpoint failed (%s); it is tried again after the next commit",
                                    exc)
                if self._stopping.wait(self.interval):
                    return
        finally:
            connection.close()
