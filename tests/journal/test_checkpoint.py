"""WAL checkpoints off the commits: the daemon's journal hands them to a thread of its own."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.journal import Journal
from agent.journal.checkpoint import Checkpointer
from agent.journal.engine import DATABASE_NAME
from tests.conftest import wait_for


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal.open(tmp_path)
    yield journal
    journal.close()


def _receive(journal: Journal, count: int) -> None:
    for n in range(count):
        journal.receive(f"r{n}", "", "version", "version", "d" * 64, '"agent"')


def test_commits_leave_checkpoints_to_the_background_thread(journal: Journal, tmp_path: Path) -> None:
    """Once started, the handle's own connection never checkpoints (wal_autocheckpoint 0), and what the commits
    add to the WAL reaches the database file through the checkpointer's thread."""
    journal.checkpoint_in_background()
    assert journal.driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    database = tmp_path / DATABASE_NAME
    before = database.stat().st_size
    _receive(journal, 200)
    wait_for(lambda: database.stat().st_size > before)
    assert journal._checkpointer is not None and journal._checkpointer.runs > 0


def test_commits_that_never_stop_keep_the_wal_bounded(journal: Journal, tmp_path: Path) -> None:
    """A writer that commits without a pause never lets a concurrent checkpoint copy the last frame, which SQLite
    needs to start the WAL anew: the writer's handle restarts it when the checkpointer asks, so 5,000 commands
    in a row leave a WAL of tens of MiB at most (it grew past 130 MiB without that)."""
    journal.checkpoint_in_background()
    wal = tmp_path / f"{DATABASE_NAME}-wal"
    largest = 0
    for n in range(5000):
        journal.receive(f"r{n}", "", "version", "version", "d" * 64, '"agent"')
        largest = max(largest, wal.stat().st_size)
    assert largest < 64 * 1024 * 1024
    assert journal.command_count() == 5000


def test_a_journal_that_is_not_the_daemons_checkpoints_in_its_commits(journal: Journal) -> None:
    """Without ``checkpoint_in_background`` (tests, tools), SQLite's default stays: commits checkpoint."""
    assert journal.driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    assert journal._checkpointer is None


def test_close_ends_the_thread(journal: Journal) -> None:
    """Closing the journal stops its checkpointer's thread."""
    journal.checkpoint_in_background()
    _receive(journal, 3)
    journal.close()
    assert not [t for t in threading.enumerate() if t.name == "journal-checkpoint"]


def test_paused_keeps_the_checkpointer_out(journal: Journal) -> None:
    """Inside ``paused`` (the daemon's own TRUNCATE checkpoint for a wipe) no background checkpoint runs."""
    journal.checkpoint_in_background()
    checkpointer = journal._checkpointer
    assert isinstance(checkpointer, Checkpointer)
    with checkpointer.paused():
        runs = checkpointer.runs
        _receive(journal, 5)
        assert checkpointer.runs == runs
    wait_for(lambda: checkpointer.runs > runs)


def test_wipe_runs_while_the_checkpointer_works(journal: Journal, tmp_path: Path) -> None:
    """The wipe's TRUNCATE checkpoint is not turned away by the background one: it waits for it and runs."""
    journal.checkpoint_in_background()
    assert journal._checkpointer is not None
    journal._checkpointer.interval = 0  # checkpoints back to back, for the wipes to meet them
    for _ in range(50):
        _receive(journal, 10)
        journal.wipe()
        assert journal.wipe_deferred_at is None
    assert (tmp_path / f"{DATABASE_NAME}-wal").stat().st_size == 0


@pytest.mark.parametrize(("work", "checkpoints", "last_batch", "due"), [
    ("prune", "caught up", "long ago", "now"), ("prune", "caught up", "just now", "paced"),
    ("prune", "behind", "long ago", "paused"), ("prune", "held by a reader", "long ago", "paused"),
    ("collection", "held by a reader", "long ago", "now"), ("collection", "behind", "long ago", "paused"),
    ("none", "behind", "just now", "never")])
def test_housekeeping_batches_wait_for_their_pace_and_while_the_checkpoints_catch_up(
        work: str, checkpoints: str, last_batch: str, due: str) -> None:
    """``_more_housekeeping_due`` puts the next batch of a prune or collection HOUSEKEEPING_PACE after the last
    one began (``_batch_at``), and CATCH_UP_PAUSE from now while the WAL checkpoints are behind, or while a
    reader holds them back and only a prune is under way (its pages would pile up in the WAL); never, with
    none under way."""
    from types import SimpleNamespace

    from agent.daemon import CATCH_UP_PAUSE, HOUSEKEEPING_PACE, Agent

    before = time.monotonic()
    batch_at = float("-inf") if last_batch == "long ago" else before
    agent = SimpleNamespace(_pruning=work == "prune", _collection=(1, "x") if work == "collection" else None,
                            _batch_at=batch_at)
    journal = SimpleNamespace(checkpoints_behind=lambda: checkpoints == "behind",
                              checkpoints_held_by_reader=lambda: checkpoints == "held by a reader")
    when = Agent._more_housekeeping_due(agent, journal)  # type: ignore[arg-type]
    expected = {"now": lambda: when <= before, "never": lambda: when == float("inf"),
                "paced": lambda: when == batch_at + HOUSEKEEPING_PACE,
                "paused": lambda: before + CATCH_UP_PAUSE <= when <= time.monotonic() + CATCH_UP_PAUSE}
    assert expected[due]()


def test_the_checkpointer_says_when_it_is_far_behind(journal: Journal) -> None:
    """``checkpoints_behind`` is true only while the last pass left more than CAUGHT_UP frames to copy."""
    from agent.journal import checkpoint

    assert not journal.checkpoints_behind()  # no background checkpoints: nothing to wait for
    journal.checkpoint_in_background()
    checkpointer = journal._checkpointer
    assert checkpointer is not None
    checkpointer.left = checkpoint.CAUGHT_UP + 1
    assert journal.checkpoints_behind()
    checkpointer.left = checkpoint.CAUGHT_UP
    assert not journal.checkpoints_behind()
    checkpointer.slow = True  # the last pass took long, and ended just now: the disk is busy with them
    checkpointer._passed_at = time.monotonic()
    assert journal.checkpoints_behind()
    # Long enough ago, it holds nothing back: with no commit after it, no pass would ever say otherwise.
    checkpointer._passed_at = time.monotonic() - checkpoint.SLOW_HOLD
    assert not journal.checkpoints_behind()


def _frames(connection: sqlite3.Connection) -> int:
    """The WAL's frames, as a PASSIVE checkpoint reports them."""
    return int(connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def _fill_wal(journal: Journal, tmp_path: Path, frames: int) -> None:
    """Commit until the WAL holds ``frames`` frames (of a page each), none of them checkpointed."""
    wal = tmp_path / f"{DATABASE_NAME}-wal"
    while not wal.exists() or (wal.stat().st_size - 32) // (4096 + 24) < frames:
        _receive(journal, 20)


@pytest.fixture
def by_hand(journal: Journal, tmp_path: Path) -> Iterator[tuple[Checkpointer, sqlite3.Connection]]:
    """A checkpointer whose passes the test runs itself (``_checkpoint``), on a connection of its own, with
    the journal's commits not checkpointing."""
    from agent.journal.engine import connect

    journal.driver.execute("PRAGMA wal_autocheckpoint=0")
    connection = connect(tmp_path / DATABASE_NAME)
    yield Checkpointer(connection), connection
    connection.close()


def test_a_pass_that_copies_a_long_wal_whole_starts_it_anew(journal: Journal, tmp_path: Path,
                                                           by_hand: tuple[Checkpointer, sqlite3.Connection]) -> None:
    """Once a pass has copied a WAL of RESTART_AT frames or more whole, the next commit writes the WAL from its
    start: a writer that never pauses long enough for SQLite to do it keeps a short WAL all the same."""
    from agent.journal import checkpoint

    checkpointer, connection = by_hand
    _fill_wal(journal, tmp_path, checkpoint.RESTART_AT)
    frames = _frames(connection)
    assert checkpointer._restart(connection, frames)  # the thread's own RESTART went through
    _receive(journal, 1)
    assert _frames(connection) < 50
    assert checkpointer._checkpoint(connection) == 0
    assert not checkpointer.restart_wanted


def test_a_restart_never_waits_for_the_writer(journal: Journal, tmp_path: Path,
                                              by_hand: tuple[Checkpointer, sqlite3.Connection]) -> None:
    """The thread's RESTART takes the write lock: while the writer is in a transaction it gives up at once
    (a later pass tries again), however long its connection would otherwise wait, and the writer's
    transaction goes on unharmed."""
    from agent.journal import checkpoint

    checkpointer, connection = by_hand
    connection.execute("PRAGMA busy_timeout=600000")  # ten minutes: a pass that waited would hang the test
    _fill_wal(journal, tmp_path, checkpoint.RESTART_AT)
    journal.driver.execute("BEGIN IMMEDIATE")
    try:
        outcome: list[bool] = []
        thread = threading.Thread(target=lambda: outcome.append(checkpointer._restart(connection,
                                                                                      _frames(connection))))
        thread.start()
        thread.join(60)
        assert outcome == [False], "the RESTART waited for the writer's transaction, or claimed to have run"
        journal.driver.execute("INSERT INTO seals (key, value) VALUES ('test', 'x')")
    finally:
        journal.driver.execute("COMMIT")
    assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 600000
    assert journal.driver.execute("SELECT value FROM seals WHERE key = 'test'").fetchone() == ("x",)


def _caught_up_for_an_hour(journal: Journal) -> Checkpointer:
    """The journal's checkpointer thread, caught up and waiting out an interval of an hour."""
    journal.checkpoint_in_background()
    checkpointer = journal._checkpointer
    assert checkpointer is not None
    checkpointer.interval = 3600.0
    _receive(journal, 1)
    wait_for(lambda: checkpointer.runs >= 1 and checkpointer.left == 0)
    return checkpointer


def test_a_caught_up_thread_checkpoints_again_after_pass_every_commits(journal: Journal) -> None:
    """A caught-up checkpointer does not sit out its interval while commits pile up: PASS_EVERY commits wake
    it, so that no pass has more than their pages to copy and sync at once."""
    from agent.journal import checkpoint

    checkpointer = _caught_up_for_an_hour(journal)
    runs = checkpointer.runs
    for n in range(checkpoint.PASS_EVERY):
        journal.receive(f"more-{n}", "", "version", "version", "d" * 64, '"agent"')
    wait_for(lambda: checkpointer.runs > runs)


def test_a_stop_during_a_pass_ends_the_thread_without_sitting_out_its_interval(journal: Journal) -> None:
    """``stop`` asked for while a pass runs: the thread ends after that pass, not an interval later (an hour,
    here, which the join's bound would not wait for)."""
    checkpointer = _caught_up_for_an_hour(journal)
    thread = checkpointer._thread
    assert thread is not None
    from agent.journal import checkpoint

    with checkpointer.paused():  # the next pass waits here, after its check for a stop
        _receive(journal, checkpoint.PASS_EVERY)  # wakes the caught-up thread before its interval is over
        time.sleep(0.2)  # lets the thread reach the lock; in either order the stop below must end it
        stopper = threading.Thread(target=checkpointer.stop, kwargs={"timeout": 60})
        stopper.start()
        wait_for(lambda: checkpointer._stopping.is_set())
    stopper.join(90)
    assert not thread.is_alive()


def test_a_caught_up_thread_checkpoints_at_once_when_asked(journal: Journal) -> None:
    """``checkpoint_soon`` (after a prune's batch) wakes a caught-up checkpointer at once, whatever its interval
    and however few commits came, so that the batch's pages do not wait to be synced with the next ones'."""
    checkpointer = _caught_up_for_an_hour(journal)
    runs = checkpointer.runs
    _receive(journal, 1)
    journal.checkpoint_soon()
    wait_for(lambda: checkpointer.runs > runs)


def test_a_pass_asked_for_during_a_pass_follows_it(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``checkpoint_soon`` that comes while a pass runs is not lost when that pass ends caught up: another
    pass follows (the commit before it may have landed after the first pass took its frames)."""
    checkpointer = _caught_up_for_an_hour(journal)
    in_pass, release = threading.Event(), threading.Event()
    real = checkpointer._checkpoint

    def held(connection: sqlite3.Connection) -> int:
        in_pass.set()
        release.wait(30)
        return real(connection)

    monkeypatch.setattr(checkpointer, "_checkpoint", held)
    runs = checkpointer.runs
    journal.checkpoint_soon()
    assert in_pass.wait(30)
    in_pass.clear()
    _receive(journal, 1)
    journal.checkpoint_soon()  # during the pass
    release.set()
    assert in_pass.wait(30), "no pass followed the one the second checkpoint_soon came during"
    wait_for(lambda: checkpointer.runs >= runs + 2)


def test_passes_a_reader_holds_back_neither_spin_nor_hold_work_back(journal: Journal, tmp_path: Path) -> None:
    """A reader that keeps one snapshot (``journal verify`` does, while it reads) stops the passes from copying
    what was committed after it: the thread then passes every SHORT seconds instead of at once (thousands of
    passes a second, a CPU's worth), and ``checkpoints_behind`` stays false, since holding a prune back would
    not let the passes catch up; once the reader goes, they do."""
    from agent.journal import checkpoint

    journal.checkpoint_in_background()
    checkpointer = journal._checkpointer
    assert checkpointer is not None
    reader = sqlite3.connect(tmp_path / DATABASE_NAME, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM commands").fetchone()
    with journal.batch():
        for n in range(checkpoint.CAUGHT_UP * 16):  # more frames than CAUGHT_UP (rows share pages), after the snapshot
            journal.receive(f"held-{n}", "", "version", "version", "d" * 64, '"agent"')
    wait_for(lambda: checkpointer.held_by_reader and checkpointer.left > checkpoint.CAUGHT_UP)
    runs = checkpointer.runs
    time.sleep(1.0)
    assert checkpointer.runs - runs <= 4 / checkpoint.SHORT, "the thread passes again at once behind a reader"
    assert checkpointer.held_by_reader and not journal.checkpoints_behind()
    reader.execute("COMMIT")
    reader.close()
    wait_for(lambda: checkpointer.left == 0 and not checkpointer.held_by_reader)


def test_a_failed_pass_holds_no_work_back(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that fails (a full disk, say) says nothing about the WAL: it leaves no prune held back on a
    reader's or a slow pass's account, which on an idle daemon nothing would clear."""
    checkpointer = _caught_up_for_an_hour(journal)
    checkpointer.held_by_reader, checkpointer.slow, checkpointer.left = True, True, 10_000

    def failing(connection: sqlite3.Connection) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(checkpointer, "_checkpoint", failing)
    journal.checkpoint_soon()
    wait_for(lambda: not (checkpointer.held_by_reader or checkpointer.slow or checkpointer.left))
    assert not journal.checkpoints_behind() and not journal.checkpoints_held_by_reader()
