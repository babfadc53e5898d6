"""WAL checkpoints off the commits: the daemon's journal hands them to a thread of its own."""

from __future__ import annotations

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


@pytest.mark.parametrize(("pruning", "behind", "due"), [(True, False, "now"), (True, True, "paused"),
                                                         (False, True, "never")])
def test_a_prune_under_way_waits_while_the_checkpoints_catch_up(pruning: bool, behind: bool, due: str) -> None:
    """The daemon takes the next batch of a prune at once, unless the WAL checkpoints are far behind: then a
    moment later, so that a large prune never outruns them (the writer would pay for them on a request's path)."""
    from types import SimpleNamespace

    from agent.daemon import CATCH_UP_PAUSE, Agent

    agent = SimpleNamespace(_pruning=pruning, _collection=None)
    journal = SimpleNamespace(checkpoints_behind=lambda: behind)
    before = time.monotonic()
    when = Agent._more_housekeeping_due(agent, journal)  # type: ignore[arg-type]
    expected = {"now": lambda: when == 0.0, "never": lambda: when == float("inf"),
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
