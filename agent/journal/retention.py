"""Retention: collecting delivered replies from XenStore, and removing old commands from the journal.

Only commands that are finished and whose reply was delivered can go, and the newest ``keep_min`` always
stay, whatever the clock says; so does any command a sealed table pins (a keyinit whose exchange is still
open). The chain stays checkable: a remaining command whose predecessor goes keeps its link as an anchor
(``agent.journal.seals``).
"""

from __future__ import annotations

import dataclasses
import sqlite3

from agent.journal import seals, times
from agent.journal.core import SELECT_COMMANDS, Journal
from agent.journal.records import COMMAND_COLUMNS, CommandRecord
from agent.journal.sql import chunks, dicts, marks


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed: how many commands, and the request ids of those whose reply was still in
    ``data/guest`` (the daemon removes those replies, or nothing ever would)."""

    count: int
    replies: tuple[str, ...] = ()


def replies_to_collect(journal: Journal, delivered_upto: int, earlier: str, start_row: int) -> list[CommandRecord]:
    """Commands whose reply is still in data/guest and old enough to remove: delivered at or before transition
    row ``delivered_upto``, or delivered by an earlier process (at or before ``start_row``) before the
    wall-clock time ``earlier``."""
    # The command's last transition is its delivery: its row id places the delivery in time.
    return journal.command_records(
        f"{SELECT_COMMANDS} JOIN transitions AS last "
        "ON last.command_id = commands.id AND last.seq = commands.last_seq "
        "WHERE commands.replied_at IS NOT NULL AND commands.reply_removed_at IS NULL AND last.\"trigger\" = 'deliver' "
        "AND (last.id <= :upto OR (last.id <= :start_row AND commands.replied_at < :earlier)) "
        "ORDER BY commands.id", {"upto": delivered_upto, "start_row": start_row, "earlier": earlier})


def mark_replies_removed(journal: Journal, command_ids: list[int]) -> None:
    """Journal that these commands' replies were removed from data/guest: one "collect" transition each, all
    in one transaction."""
    if not command_ids:
        return
    at = times.utcnow()

    def work(cursor: sqlite3.Connection) -> None:
        for batch in chunks(command_ids):
            rows = list(dicts(cursor.execute(
                f"{SELECT_COMMANDS} WHERE id IN ({marks(batch)}) ORDER BY id", batch)))
            for row in rows:
                record = CommandRecord(**{c: row[c] for c in COMMAND_COLUMNS})
                journal.step(cursor, record, "collect", record.state, None, at, reply_removed_at=at)

    journal.transaction(work)


def prune(journal: Journal, finished_before: str, keep_min: int, max_commands: int) -> Pruned:
    """Remove commands finished before ``finished_before``, then the oldest while more than ``max_commands``
    remain; never the newest ``keep_min``, an unfinished or undelivered one, or a pinned one."""
    keep_min = max(keep_min, 1)  # the newest command is the chain's head

    def work(cursor: sqlite3.Connection) -> Pruned:
        ids = [row[0] for row in cursor.execute("SELECT id FROM commands ORDER BY id")]
        if len(ids) <= keep_min:
            return Pruned(0)
        pinned = " ".join(f"AND id NOT IN ({table.pinned})" for table in seals.SEALED.values() if table.pinned)
        candidates = cursor.execute(
            "SELECT id, finished_at, request_id, reply_removed_at IS NULL FROM commands "  # noqa: S608
            f"WHERE id < ? AND finished_at IS NOT NULL AND replied_at IS NOT NULL {pinned} ORDER BY id",
            (ids[-keep_min],)).fetchall()
        doomed = {command_id for command_id, finished_at, *_ in candidates if finished_at < finished_before}
        excess = len(ids) - len(doomed) - max_commands
        for command_id, *_ in candidates:
            if excess <= 0:
                break
            if command_id not in doomed:
                doomed.add(command_id)
                excess -= 1
        if doomed:
            _anchor_survivors(cursor, ids, doomed)
            _delete_commands(cursor, sorted(doomed))
        return Pruned(len(doomed), tuple(request_id for command_id, _, request_id, present in candidates
                                         if command_id in doomed and present))

    pruned = journal.transaction(work)
    journal.forget(pruned.count)
    return pruned


def _anchor_survivors(cursor: sqlite3.Connection, ids: list[int], doomed: set[int]) -> None:
    """Keep the link of each remaining command whose predecessor in the chain is about to go."""
    try:
        chain_from = int(seals.read(cursor, seals.CHAIN_FROM) or "")
    except ValueError:
        return  # no chain to keep (an edited seal); verify reports it
    anchored = {int(key[len(seals.ANCHOR_PREFIX):]): value for key, value in cursor.execute(
        "SELECT key, value FROM seals WHERE key LIKE ?", (seals.ANCHOR_PREFIX + "%",))}
    needed: dict[int, int] = {}  # survivor -> its predecessor that goes
    previous: int | None = None
    for command_id in ids:
        if command_id < chain_from:
            continue
        if previous in doomed and command_id not in doomed and command_id not in anchored:
            needed[command_id] = previous
        previous = command_id
    genesis: dict[int, str] = {}
    for batch in chunks(needed.values()):
        genesis.update(cursor.execute(
            f"SELECT command_id, prev_hash FROM transitions WHERE seq = 1 AND command_id IN ({marks(batch)})",  # noqa: S608
            batch).fetchall())
    added = {survivor: genesis[predecessor] for survivor, predecessor in needed.items() if predecessor in genesis}
    removed = {command_id: link for command_id, link in anchored.items() if command_id in doomed}
    for survivor, link in added.items():
        seals.UPSERT(cursor, {"key": f"{seals.ANCHOR_PREFIX}{survivor}", "value": link})
    for batch in chunks(removed):
        cursor.execute(f"DELETE FROM seals WHERE key IN ({marks(batch)})",  # noqa: S608
                       [f"{seals.ANCHOR_PREFIX}{command_id}" for command_id in batch])
    seals.add(cursor, seals.ANCHORS, sum(seals.anchor_hash(i, link) for i, link in added.items())
              - sum(seals.anchor_hash(i, link) for i, link in removed.items()))


def _delete_commands(cursor: sqlite3.Connection, doomed: list[int]) -> None:
    for table in seals.SEALED.values():
        table.delete_for_commands(cursor, doomed)
    for batch in chunks(doomed):
        cursor.execute(f"DELETE FROM transitions WHERE command_id IN ({marks(batch)})", batch)  # noqa: S608
        cursor.execute(f"DELETE FROM commands WHERE id IN ({marks(batch)})", batch)  # noqa: S608
