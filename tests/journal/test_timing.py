"""journal timing's reading of the journal: a command's duration, and its time in each state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.journal import Journal
from agent.journal import times as journal_times
from agent.journal.timing import StateTime, timings

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The times the journal gives its next records, which each test queues."""
    times: list[str] = []
    monkeypatch.setattr(journal_times, "utcnow", lambda: f"2026-11-23T{times.pop(0)}Z")
    return times


@pytest.fixture
def journal(tmp_path: Path, clock: list[str]) -> Iterator[Journal]:
    journal = Journal.open(tmp_path)
    yield journal
    journal.close()


def test_a_state_visited_twice_counts_both_visits(journal: Journal, clock: list[str]) -> None:
    """Time in a state sums every visit; a recovery (same state again) does not split it; the states add up
    to the command's duration."""
    clock.extend(("10:00:00.000000", "10:00:01.000000", "10:00:03.000000", "10:00:04.000000", "10:00:10.000000",
                  "10:00:10.500000"))
    record = journal.receive("r", "/local/domain/5", "agentupdate", "agentupdate", "d" * 64, None)
    record = journal.transition(record, "fetch", "downloading")
    record = journal.record_attempt(record)  # the agent restarted while downloading
    record = journal.transition(record, "retry", "received")
    record = journal.transition(record, "fetch", "downloading")
    journal.transition(record, "fetched", "done", reply={"returncode": "0", "message": "ok"})
    [timing] = timings(journal, NOW)
    assert (timing.seconds, timing.finished) == (10.5, True)
    assert timing.states == (StateTime("received", 7.0), StateTime("downloading", 3.5))


def test_delivery_after_the_reply_is_not_the_commands_time(journal: Journal, clock: list[str]) -> None:
    """The reply's delivery and collection come after the command finished: neither adds to a state."""
    clock.extend(("10:00:00.000000", "10:00:02.000000", "10:00:30.000000"))
    record = journal.receive("r", "/local/domain/5", "version", "version", "d" * 64, None)
    record = journal.transition(record, "answer", "done", reply={"returncode": "0", "message": "ok"})
    journal.mark_replied(record)
    [timing] = timings(journal, NOW)
    assert (timing.seconds, timing.states) == (2.0, (StateTime("received", 2.0),))


def test_an_unfinished_command_is_timed_until_now(journal: Journal, clock: list[str]) -> None:
    """A command without a reply has run until now, in the state it is in."""
    clock.extend(("10:59:00.000000", "10:59:20.000000"))
    record = journal.receive("r", "/local/domain/5", "password", "password", "d" * 64, None)
    journal.transition(record, "apply", "applying")
    [timing] = timings(journal, NOW)
    assert (timing.seconds, timing.finished) == (60.0, False)
    assert timing.states == (StateTime("applying", 40.0), StateTime("received", 20.0))


def test_a_clock_set_back_counts_as_no_time(journal: Journal, clock: list[str]) -> None:
    """A transition journaled at an earlier time than the one before (the clock was set back) gives that
    state no time rather than a negative one."""
    clock.extend(("10:00:05.000000", "10:00:01.000000", "10:00:06.000000"))
    record = journal.receive("r", "/local/domain/5", "password", "password", "d" * 64, None)
    record = journal.transition(record, "apply", "applying")
    journal.transition(record, "done", "done", reply={"returncode": "0", "message": "ok"})
    [timing] = timings(journal, NOW)
    assert (timing.seconds, timing.states) == (1.0, (StateTime("applying", 5.0), StateTime("received", 0.0)))
