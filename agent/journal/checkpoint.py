"""The daemon's WAL checkpoints, in a thread of their own, so that no request's commit runs one.

SQLite checkpoints by default inside the commit that takes the WAL past 1,000 pages; on a large, cold journal
that held the request behind it for half a second. The daemon's connection therefore never checkpoints
(``wal_autocheckpoint=0``); a ``Checkpointer`` does, on a connection of its own, when commits ``nudge`` it:

- Passes are PASSIVE (they never wait for the writer): at once while more than ``CAUGHT_UP`` frames are left
  to copy, every ``SHORT`` seconds while a few are, and once caught up after ``INTERVAL`` seconds or after
  ``PASS_EVERY`` more commits, whichever comes first, or at once when the writer asks for it (``pass_now``,
  after a commit that wrote pages all over the file: a prune's or a reply collection's). Under a steady flow
  of commits no pass then has more than those commits' pages to copy and sync: the disk's bursts stay short,
  and so do the waits of the requests' own syncs queued behind them.
- The WAL must also start anew now and then. SQLite does that by itself when a write begins with every frame
  copied, which needs a pause in the writes longer than a pass. For a writer that never pauses (requests one
  after another, a prune), once a pass has copied a WAL of ``RESTART_AT`` frames or more whole, the thread
  runs a RESTART checkpoint that does not wait for the writer (``_restart``): it has only the few frames
  committed since to copy, and the writer's next commit starts the WAL anew. Past ``FORCE_AT`` frames, when
  that has not happened, it sets ``restart_wanted`` and the writer runs the RESTART itself after its next
  commit (``Journal._wal_grew``), paying for what is left to copy. ``journal_size_limit`` then cuts the file
  back.
- ``behind`` tells work that can wait (a large prune) to hold back for a moment: the passes are far behind,
  or the last one was slow (the disk is busy with them). Passes that a reader holds back (``held_by_reader``:
  a ``journal verify`` keeps its snapshot while it reads) follow each other every ``SHORT`` seconds, not at
  once, and ``behind`` does not count them (waiting would not let the passes catch up). The daemon asks
  ``held_by_reader`` separately (``Journal.checkpoints_held_by_reader``) to hold back a prune, whose pages
  would otherwise pile up in the WAL until the reader is done.

A crash in the middle of a checkpoint loses nothing (that is SQLite's own guarantee). ``paused`` keeps the
thread clear of the checkpoints the writer runs itself: the forced RESTART, and the TRUNCATE one that makes a
wiped secret leave the WAL (``Journal.wipe``).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Literal

log = logging.getLogger(__name__)

#: Seconds between two checkpoints once the WAL is copied: under a light flow of commits, one sync of the
#: database file per interval, in the background.
INTERVAL = 1.0
#: Frames left to copy past which the next pass follows at once; with fewer left, after ``SHORT`` seconds.
CAUGHT_UP = 256
SHORT = 0.05
#: Commits after which a caught-up thread checkpoints again without waiting for its interval.
PASS_EVERY = 64
#: WAL frames (pages of 4 KiB, so 4 MiB) from which a pass that copied the WAL whole has it started anew.
RESTART_AT = 1024
#: A restart follows a pass that found at most this many frames new since the one before (at most
#: ``RESTART_TRIES`` passes are tried).
RESTART_NEW = 64
RESTART_TRIES = 4
#: Seconds a pass may take before work that can wait holds back (see ``behind``) for ``SLOW_HOLD`` seconds
#: after it: a slow pass means the disk is busy with the checkpoints, and every request's sync queues behind
#: them.
SLOW_PASS = 0.005
SLOW_HOLD = 0.05
#: WAL frames past which the writer starts the WAL anew itself, whatever is left to copy: a writer that never
#: pauses pays for the checkpoints, and the WAL stays within about 32 MiB.
FORCE_AT = 8000


def checkpoint_without_waiting(connection: sqlite3.Connection, mode: Literal["RESTART", "TRUNCATE"]) -> bool:
    """Run a ``mode`` checkpoint on ``connection`` without waiting in the busy handler: those wait for the
    writer and the readers, and would hold the caller up for the whole busy timeout; a writer or a reader in
    the way makes it return at once instead. Whether it ran whole. The connection's busy timeout is left as it
    was."""
    timeout = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
    connection.execute("PRAGMA busy_timeout=0")
    try:
        busy, _frames, _copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        connection.execute(f"PRAGMA busy_timeout={timeout}")
    return not busy


class Checkpointer:
    """A thread that checkpoints the journal's WAL when commits ask for it (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, interval: float = INTERVAL) -> None:
        """``connection``: the thread's own connection to the journal (opened by the caller, so that it knows
        whether checkpoints can leave the commits at all); the thread closes it when it ends."""
        self._connection = connection
        self.interval = interval
        self._wanted = threading.Event()
        # Commits so far, and when the last pass began; ``_wake_early`` is set once PASS_EVERY commits came
        # after that, or by ``pass_now`` or ``stop``, and wakes a caught-up thread before its interval is over.
        self._nudges = 0
        self._nudges_at_pass = 0
        # The writer asked for a pass at once (``pass_now``) since the last pass began.
        self._now = False
        self._wake_early = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: How many checkpoints ran (for the tests and the curious).
        self.runs = 0
        #: Set past FORCE_AT frames: the writer's handle restarts the WAL after its next commit.
        self.restart_wanted = False
        #: WAL frames the last pass left to copy.
        self.left = 0
        #: Whether the last pass left frames and copied none that the pass before had not: a reader holds
        #: them (``journal verify``, a backup), and passing again at once cannot help until it is done.
        self.held_by_reader = False
        self._last_pass = (0, 0)  # (frames, copied) of the last pass
        #: Whether the last pass took longer than SLOW_PASS, and when (``time.monotonic``) it ended.
        self.slow = False
        self._passed_at = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A commit added to the WAL: checkpoint it soon."""
        self._nudges += 1
        self._wanted.set()
        if self._pass_due():
            self._wake_early.set()

    def pass_now(self) -> None:
        """Checkpoint at once, even when caught up (after ``SHORT`` seconds when the last pass left a few
        frames): the commits since the last pass wrote pages all over the file, which must not pile up for one
        long pass."""
        self._now = True
        self._wanted.set()
        self._wake_early.set()

    def _pass_due(self) -> bool:
        """Whether the commits since the last pass began call for a pass before the interval is over."""
        return self._now or self._nudges - self._nudges_at_pass >= PASS_EVERY

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread, letting a checkpoint under way finish (SQLite cannot cut one short safely)."""
        self._stopping.set()
        self._wanted.set()
        self._wake_early.set()
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
                    # Commits before this point are in the WAL this pass copies.
                    self._nudges_at_pass, self._now = self._nudges, False
                    try:
                        left = self._checkpoint(connection)
                    except sqlite3.Error as exc:  # a full disk, say: the next commit asks again
                        log.warning("journal checkpoint failed (%s); it is tried again after the next commit",
                                    exc)
                        # Nothing known about the WAL: no work held back on this pass's account.
                        left, self.left, self.slow, self.held_by_reader = 0, 0, False, False
                if left > CAUGHT_UP and not self.held_by_reader:
                    self._wanted.set()  # far behind the writer: the next pass at once
                elif left:
                    # Nearly there, or held back by a reader: the next pass soon (not at once, which would
                    # spin while the reader stays).
                    self._wanted.set()
                    if self._stopping.wait(SHORT):
                        return
                else:
                    # Caught up: the next pass after ``interval``, or sooner once ``PASS_EVERY`` commits are
                    # waiting or the writer asked for a pass (``pass_now``), so that no pass has more than their
                    # pages to copy and sync.
                    self._wake_early.clear()
                    # ``stop`` sets _stopping before it wakes this wait: a stop asked for during the pass ends
                    # the thread now, not an interval later. A nudge during the pass is seen by ``_pass_due``.
                    if not self._stopping.is_set() and not self._pass_due():
                        self._wake_early.wait(self.interval)
                    if self._stopping.is_set():
                        return
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> int:
        """One pass: how many WAL frames are left to copy after it."""
        started = time.monotonic()
        _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self._passed_at = time.monotonic()
        self.slow = self._passed_at - started > SLOW_PASS
        self.runs += 1
        self.left = max(0, int(frames) - int(copied))
        # The WAL started anew (fewer frames) is progress too.
        self.held_by_reader = self.left > 0 and copied <= self._last_pass[1] and frames >= self._last_pass[0]
        self._last_pass = (int(frames), int(copied))
        restarted = frames >= RESTART_AT and not self.left and self._restart(connection, int(frames))
        if frames >= FORCE_AT and not restarted:
            self.restart_wanted = True
        return self.left

    @staticmethod
    def _restart(connection: sqlite3.Connection, frames: int) -> bool:
        """Have the writer's next commit start the WAL anew, unless the writer is in a transaction (then a
        later pass tries again); whether it did.

        The RESTART holds the write lock while it copies what the WAL gained since the pass before it, so it
        runs only after a pass that found little new (``RESTART_NEW`` frames): on a cold journal a pass over a
        few hundred new pages takes tens of milliseconds, which a request must not wait for.
        """
        for _ in range(RESTART_TRIES):
            _busy, now, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if copied < now or now - frames > RESTART_NEW:
                frames = int(now)
                continue  # the writer added more meanwhile: another pass first
            return checkpoint_without_waiting(connection, "RESTART")
        return False

    @property
    def behind(self) -> bool:
        """Whether work that can wait should hold back for a moment, so that the passes catch up: they are far
        behind the writer (the thread is passing again at once), or the last one was slow and ended less than
        ``SLOW_HOLD`` ago (the disk is busy with them). A slow pass holds nothing back for longer: with no
        commit after it, no pass follows to say the disk is free again. Passes held back by a reader do not
        count either: waiting would not let them catch up (``held_by_reader`` says when they are)."""
        if self.left > CAUGHT_UP and not self.held_by_reader:
            return True
        return self.slow and time.monotonic() - self._passed_at < SLOW_HOLD
