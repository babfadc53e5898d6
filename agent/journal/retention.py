"""Retention: collecting delivered replies from XenStore, and removing old commands from the journal.

Only commands that are finished and whose reply was delivered can go, and the newest ``keep_min`` always
stay, whatever the clock says; so does any command a sealed table pins (a keyinit whose exchange is still
open). The chain stays checkable: a remaining command whose predecessor goes keeps its link as an anchor
(``agent.journal.seals``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Mapping

from agent.journal import seals, times
from agent.journal.core import SELECT_COMMANDS, Journal
from agent.journal.records import COMMAND_COLUMNS, CommandRecord
from agent.journal.sql import chunks, dicts, marks


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed: how many commands, the request ids of those whose reply was still in
    ``data/guest`` (the daemon removes those replies, or nothing ever would), and whether more are due."""

    count: int
    replies: tuple[str, ...] = ()
    more: bool = False


#: Commands one ``prune`` call removes at most: one short transaction (about a millisecond) that never holds a
#: request up for long, whatever the journal's size. The daemon calls it again between requests while more
#: are due.
PER_CALL = 16


def replies_to_collect(journal: Journal, delivered_upto: int, earlier: str, start_row: int,
                       limit: int = -1) -> list[CommandRecord]:
    """Commands whose reply is still in data/guest and old enough to remove, oldest first, at most ``limit``
    (-1: all): delivered at or before transition row ``delivered_upto``, or delivered by an earlier process (at
    or before ``start_row``) before the wall-clock time ``earlier``."""
    # The command's last transition is its delivery: its row id places the delivery in time.
    return journal.command_records(
        f"{SELECT_COMMANDS} JOIN transitions AS last "
        "ON last.command_id = commands.id AND last.seq = commands.last_seq "
        "WHERE commands.replied_at IS NOT NULL AND commands.reply_removed_at IS NULL AND last.\"trigger\" = 'deliver' "
        "AND (last.id <= :upto OR (last.id <= :start_row AND commands.replied_at < :earlier)) "
        "ORDER BY commands.id LIMIT :limit",
        {"upto": delivered_upto, "start_row": start_row, "earlier": earlier, "limit": limit})


def superseded(journal: Journal, command_ids: Iterable[int]) -> dict[int, int]:
    """Of these commands, each whose reply place a newer command holds, with that command's id: the newest
    command under the same request id, when it is newer and its own reply is not collected yet.

    A reply's place is ``data/guest/<request id>``. A host that used an id again with another body has a newer
    command there: its reply is in that place, or will be, and that command's own collection (or prune) removes
    it; an older command's must leave it alone. Once the newest command's reply is collected, no newer command
    holds the place: an older command's collection or prune removes what is there (its own reply, delivered
    again since)."""
    found: dict[int, int] = {}
    for batch in chunks(command_ids):
        # max(id) under one request id is one seek in ix_commands_request_id, however many share the id.
        for row in journal.query(
                "SELECT old.id AS id, newest.id AS newest FROM commands AS old JOIN commands AS newest "  # noqa: S608
                "ON newest.id = (SELECT max(same.id) FROM commands AS same WHERE same.request_id = old.request_id) "
                f"WHERE old.id IN ({marks(batch)}) AND newest.id > old.id AND newest.reply_removed_at IS NULL",
                batch):
            found[row["id"]] = row["newest"]
    return found


def mark_replies_removed(journal: Journal, command_ids: list[int], left: Mapping[int, int] | None = None) -> None:
    """Journal that these commands' replies are gone from data/guest, or left to a newer command under the same
    request id (``left``, from ``superseded``; their transition names it): one "collect" transition each, all
    in one transaction."""
    if not command_ids:
        return
    at = times.utcnow()
    left = left or {}

    def work(cursor: sqlite3.Connection) -> None:
        for batch in chunks(command_ids):
            rows = list(dicts(cursor.execute(
                f"{SELECT_COMMANDS} WHERE id IN ({marks(batch)}) ORDER BY id", batch)))
            for row in rows:
                record = CommandRecord(**{c: row[c] for c in COMMAND_COLUMNS})
                newer = left.get(record.id)
                detail = None if newer is None else {"left_for_command": newer}
                journal.step(cursor, record, "collect", record.state, detail, at, reply_removed_at=at)

    journal.transaction(work)


def prune(journal: Journal, finished_before: str, keep_min: int, max_commands: int, limit: int = PER_CALL) -> Pruned:
    """Remove, oldest first, commands finished before ``finished_before`` and, while more than ``max_commands``
    remain, the oldest others; never the newest ``keep_min``, an unfinished or undelivered one, or a pinned one.

    At most ``limit`` commands go per call (``more`` says whether others are due). The call reads only the
    oldest commands it may remove, never the whole journal. A command finished before ``finished_before`` but
    newer than one that stays is left for a later call, once those before it have gone.
    """
    keep_min = max(keep_min, 1)  # the newest command is the chain's head

    def work(cursor: sqlite3.Connection) -> Pruned:
        boundary = cursor.execute("SELECT id FROM commands ORDER BY id DESC LIMIT 1 OFFSET ?",
                                  (keep_min - 1,)).fetchone()
        if boundary is None:
            return Pruned(0)
        before = journal.current_tally(cursor)
        total = before.count
        pinned = " ".join(f"AND id NOT IN ({table.pinned})" for table in seals.SEALED.values() if table.pinned)
        # One more than the limit: whether any is left after this call.
        candidates = cursor.execute(
            "SELECT id, finished_at, request_id, reply_removed_at IS NULL FROM commands "  # noqa: S608
            f"WHERE id < ? AND finished_at IS NOT NULL AND replied_at IS NOT NULL {pinned} ORDER BY id LIMIT ?",
            (boundary[0], limit + 1)).fetchall()
        excess = total - max_commands
        doomed: list[int] = []
        holding: dict[int, str] = {}  # doomed commands whose reply is not collected yet: their request ids
        more = False
        for command_id, finished_at, request_id, present in candidates:
            if not (finished_at < finished_before or excess > 0):
                break  # the oldest that stays: what follows waits for a later call
            if len(doomed) == limit:
                more = True
                break
            doomed.append(command_id)
            excess -= 1
            if present:
                holding[command_id] = request_id
        # A reply place that a newer command holds is that command's to clear, not a pruned one's.
        left = superseded(journal, holding) if holding else {}
        replies = [request_id for command_id, request_id in holding.items() if command_id not in left]
        if doomed:
            _anchor_survivors(cursor, doomed)
            _delete_commands(cursor, doomed)
            journal.count_removed(cursor, before, len(doomed))
        return Pruned(len(doomed), tuple(replies), more)

    return journal.transaction(work)


def _anchor_survivors(cursor: sqlite3.Connection, doomed: list[int]) -> None:
    """Keep the link of each remaining command whose predecessor in the chain is about to go.

    ``doomed`` is in id order. Only the commands from the first doomed one to the first that remains after the
    last are read: the chain is in id order, so no other command's predecessor changes.
    """
    try:
        chain_from = int(seals.read(cursor, seals.CHAIN_FROM) or "")
    except ValueError:
        return  # no chain to keep (an edited seal); verify reports it
    anchored = {int(key[len(seals.ANCHOR_PREFIX):]): value for key, value in cursor.execute(
        "SELECT key, value FROM seals WHERE key LIKE ?", (seals.ANCHOR_PREFIX + "%",))}
    ids = [row[0] for row in cursor.execute(
        "SELECT id FROM commands WHERE id >= ? AND id <= coalesce((SELECT min(id) FROM commands WHERE id > ?), ?) "
        "ORDER BY id", (doomed[0], doomed[-1], doomed[-1]))]
    going = set(doomed)
    needed: dict[int, int] = {}  # survivor -> its predecessor that goes
    previous: int | None = None
    for command_id in ids:
        if command_id < chain_from:
            continue
        if previous in going and command_id not in going and command_id not in anchored:
            needed[command_id] = previous
        previous = command_id
    genesis: dict[int, str] = {}
    for batch in chunks(needed.values()):
        genesis.update(cursor.execute(
            f"SELECT command_id, prev_hash FROM transitions WHERE seq = 1 AND command_id IN ({marks(batch)})",  # noqa: S608
            batch).fetchall())
    added = {survivor: genesis[predecessor] for survivor, predecessor in needed.items() if predecessor in genesis}
    removed = {command_id: link for command_id, link in anchored.items() if command_id in going}
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
