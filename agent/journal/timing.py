"""How long commands took, from their transitions: ``journal timing``'s read of the journal.

A command's duration runs from its receipt to the transition that journaled its reply (``finished_at``); an
unfinished command's runs until now. The time in a state runs from the transition into it to the next
transition, summed over every visit, and only within the command's duration: the reply's delivery and the
host's collection of it come after, and are the host's pace, not the command's. So a command's states add
up to its duration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from agent.errors import JournalError
from agent.journal.core import Journal, command_filter
from agent.journal.records import CommandRecord
from agent.journal.times import parse_iso


@dataclasses.dataclass(frozen=True)
class StateTime:
    """Seconds a command spent in one state, over all its visits."""

    state: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class CommandTiming:
    """One command's duration (received to finished, or to now while unfinished) and its states, slowest
    first."""

    command: CommandRecord
    seconds: float
    states: tuple[StateTime, ...]

    @property
    def finished(self) -> bool:
        return self.command.finished


def timings(journal: Journal, now: datetime, name: str | None = None,
            since: str | None = None) -> list[CommandTiming]:
    """Every command matching ``name`` and ``since`` (a journal time), slowest first (ties: oldest first)."""
    records = sorted(journal.commands(name=name, since=since), key=lambda r: r.id)
    steps: dict[int, list[tuple[str, str]]] = {r.id: [] for r in records}
    where, params = command_filter(name=name, since=since)
    rows = journal.query(
        "SELECT transitions.command_id, transitions.dest, transitions.at FROM transitions "  # noqa: S608
        f"JOIN commands ON commands.id = transitions.command_id {where} "
        "ORDER BY transitions.command_id, transitions.seq", params)
    for row in rows:
        if row["command_id"] in steps:  # a command journaled between the two reads is left for the next run
            steps[row["command_id"]].append((row["dest"], row["at"]))
    found = [command_timing(r, steps[r.id], now) for r in records]
    return sorted(found, key=lambda t: (-t.seconds, t.command.id))


def command_timing(record: CommandRecord, steps: Sequence[tuple[str, str]], now: datetime) -> CommandTiming:
    """The timing of one command from its transitions' (destination, time), in journal order."""
    try:
        start = parse_iso(record.received_at)
        end = parse_iso(record.finished_at) if record.finished_at is not None else now
        moments = [(dest, parse_iso(at)) for dest, at in steps]
    except ValueError:
        raise JournalError(f"command {record.id} has a time that is not the journal's format; run "
                           "'openstack-agent journal verify' to see what was changed") from None
    spent: dict[str, float] = {}
    for (state, entered), (_, left) in zip(moments, [*moments[1:], ("", end)], strict=True):
        # Only what happened before the command ended: the state its reply moved it into has no time of its
        # own, and a delivery after the reply is the host's pace. A clock set back counts as no time.
        if entered < end:
            spent[state] = spent.get(state, 0.0) + max((min(left, end) - entered).total_seconds(), 0.0)
    states = sorted((StateTime(state, round(seconds, 6)) for state, seconds in spent.items()),
                    key=lambda s: -s.seconds)  # stable: ties stay in the order first entered
    return CommandTiming(record, round(max((end - start).total_seconds(), 0.0), 6), tuple(states))
