"""``journal verify``: one pass over a snapshot of the journal, collecting problems rather than stopping.

What it checks, and how:

- Each command's transition rows carry a SHA-256 chain (``agent.journal.chain``) from the command's genesis,
  which covers its identity and the genesis of the command journaled before it; the ``head`` seal names the
  newest command, so deleting a command, or the newest ones, is seen.
- Every other column of a command is what its chain says: state and chain position (the last transition),
  ``updated_at`` (its time), ``attempts`` (one plus the "recover" transitions), the reply and ``finished_at``
  (the first transition that journaled a reply), ``replied_at`` (the last "deliver"), ``reply_removed_at``
  (the last "collect", or none when a "deliver" came after it; an older agent kept that collect's time) and the
  working data (the last transition that journaled some).
- Retention's anchors and every sealed table (``agent.journal.seals``) against their digests.
- ``PRAGMA integrity_check`` for damage to the file's pages.

These hashes prove that the journal was not changed by mistake or by a careless hand (an edited column, a
deleted row, a damaged page). They are not signatures: someone with write access who recomputes every hash
can rewrite history, and nothing stored beside the data can prevent that.

Commands journaled before the chain linked commands (before ``chain_from``, recorded by the migration that
added it) keep the rules they were written under: a chain per command from its identity, and state and reply
checked against it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any

from agent.errors import JournalError
from agent.journal import seals
from agent.journal.chain import ROOT_LINK, chain_hash, genesis_hash, legacy_genesis_hash
from agent.journal.core import Journal
from agent.journal.records import Verification
from agent.journal.seals import SEALED, SealedTable
from agent.journal.sql import dicts

#: Problems ``verify`` lists before it only counts them.
MAX_PROBLEMS = 20
#: Schema revisions that predate the seals: their commands are all under the per-command rules.
UNSEALED_REVISIONS = frozenset({"0001", "0002", "0003"})


def verify(journal: Journal) -> Verification:
    """Check the whole journal in one read transaction (one consistent snapshot, even while the agent writes):
    the file's pages, every command's chain and the columns it vouches for, the links between commands and
    the head, and the sealed tables."""
    checker = _Verifier()
    try:
        driver = journal.driver
    except JournalError as exc:
        checker.fail(f"the journal cannot be opened ({exc})")
        return checker.result()
    try:
        driver.execute("BEGIN")
        try:
            checker.run(driver)
        finally:
            if driver.in_transaction:
                driver.execute("ROLLBACK")
    except sqlite3.Error as exc:
        checker.fail(f"the journal cannot be read ({type(exc).__name__}: {exc}); the file is damaged or is "
                     "not an agent journal")
    return checker.result()


class _Verifier:
    """One pass over a snapshot of the journal, collecting problems rather than stopping at the first."""

    def __init__(self) -> None:
        # Every transition row the pass read and held against its chain, also those past a break or without
        # their command: a failed verification says how much of the journal it looked at.
        self.rows = 0
        self.commands = 0
        self.problems: list[str] = []
        self.problem_count = 0

    def fail(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def result(self) -> Verification:
        return Verification(ok=self.problem_count == 0, rows=self.rows,
                            problem=self.problems[0] if self.problems else "", problems=tuple(self.problems),
                            problem_count=self.problem_count, commands=self.commands)

    def run(self, cursor: sqlite3.Connection) -> None:
        tables = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"commands", "transitions", "alembic_version"} - tables
        if missing:
            self.fail(f"the database is not an agent journal (no {', '.join(sorted(missing))} table)")
            return
        damage = [str(row[0]) for row in cursor.execute("PRAGMA integrity_check(10)")]
        if damage != ["ok"]:
            self.fail(f"the database file is damaged (SQLite's integrity check: {'; '.join(damage[:3])})")
        revision = cursor.execute("SELECT version_num FROM alembic_version").fetchone()
        seals_found: dict[str, str] = {}
        if "seals" in tables:
            seals_found = {str(key): str(value) for key, value in cursor.execute("SELECT key, value FROM seals")}
        elif revision is None or revision[0] not in UNSEALED_REVISIONS:
            self.fail("the seals table is missing: it was removed outside the agent")
        chain_from = self._chain_from(seals_found, tables)
        anchors = self._anchors(seals_found)
        last = self._commands(cursor, chain_from, anchors)
        if chain_from is not None:
            self._head(seals_found, chain_from, last)
            self._count(cursor)
            for table in SEALED.values():
                if table.name in tables:
                    self._table_digest(cursor, seals_found, table)

    def _chain_from(self, found: dict[str, str], tables: set[str]) -> int | None:
        if "seals" not in tables:
            return None  # a journal from before the seals: every command is under the per-command rules
        try:
            return int(found[seals.CHAIN_FROM])
        except (KeyError, ValueError):
            self.fail("the chain_from seal is missing or altered: the journal was edited outside the agent")
            return 1

    def _anchors(self, found: dict[str, str]) -> dict[int, str]:
        anchors: dict[int, str] = {}
        for key, link in found.items():
            if key.startswith(seals.ANCHOR_PREFIX):
                try:
                    anchors[int(key[len(seals.ANCHOR_PREFIX):])] = link
                except ValueError:
                    self.fail(f"seal {key!r} is not one the agent writes: the journal was edited outside the agent")
        if found and seals.digest_text(sum(seals.anchor_hash(i, link) for i, link in anchors.items())) != found.get(
                seals.ANCHORS):
            self.fail("the anchors of commands whose predecessors retention removed were changed outside the agent")
        return anchors

    def _commands(self, cursor: sqlite3.Connection, chain_from: int | None,
                  anchors: dict[int, str]) -> tuple[int, str] | None:
        """Walk every command with its transitions (two ordered cursors, merged); return the chain's last
        command (id, genesis)."""
        transitions = dicts(cursor.execute(
            "SELECT * FROM transitions ORDER BY command_id, seq"))
        pending = next(transitions, None)
        link = ROOT_LINK
        last: tuple[int, str] | None = None
        for command in dicts(cursor.execute(
                "SELECT * FROM commands ORDER BY id")):
            self.commands += 1
            orphans: set[int] = set()
            while pending is not None and pending["command_id"] < command["id"]:
                orphans.add(pending["command_id"])
                self.rows += 1
                pending = next(transitions, None)
            self._orphans(orphans)
            rows: list[dict[str, Any]] = []
            while pending is not None and pending["command_id"] == command["id"]:
                rows.append(pending)
                self.rows += 1
                pending = next(transitions, None)
            if chain_from is not None and command["id"] >= chain_from:
                genesis = genesis_hash(command, anchors.get(command["id"], link))
                self._command(command, rows, genesis, linked=True)
                # The next command links to the genesis this one was journaled with: an edit here is reported
                # here, not again at its successor.
                link = rows[0]["prev_hash"] if rows else genesis
                last = (command["id"], link)
            else:
                self._command(command, rows, legacy_genesis_hash(command), linked=False)
        orphans = set()
        while pending is not None:
            orphans.add(pending["command_id"])
            self.rows += 1
            pending = next(transitions, None)
        self._orphans(orphans)
        return last

    def _orphans(self, command_ids: set[int]) -> None:
        for command_id in sorted(command_ids):
            self.fail(f"command {command_id}: its transitions are in the journal but the command is not; it was "
                      "deleted outside the agent")

    def _command(self, command: dict[str, Any], rows: list[dict[str, Any]], genesis: str, linked: bool) -> None:
        cid = command["id"]
        prev = genesis
        last: dict[str, Any] | None = None
        reply: Any = None
        attempts, finished_at, replied_at, removed_at = 1, None, None, None
        # The time of the collect that a later delivery undid: agents from before deliveries set
        # reply_removed_at back to none left it in the column, and verify accepts it like none.
        legacy_removed_at: str | None = None
        data: str | None = None
        for expected_seq, row in enumerate(rows, start=1):
            if row["seq"] != expected_seq or row["prev_hash"] != prev:
                if expected_seq == 1 and linked and row["prev_hash"] == legacy_genesis_hash(command):
                    self.fail(f"command {cid}: it is not in the command chain: journaled by an agent that does "
                              "not keep the chain (an older release after a rollback) or added outside the agent")
                elif expected_seq == 1 and linked:
                    self.fail(f"command {cid}: transition 1 is missing or out of place, or the command row was "
                              "altered, or the command before it was deleted")
                else:
                    self.fail(f"command {cid}: transition {expected_seq} is missing or out of place, or the "
                              "command row was altered")
                return
            if chain_hash(prev, row) != row["hash"]:
                self.fail(f"command {cid}: transition {row['seq']} (row {row['id']}) was altered")
                return
            prev, last = row["hash"], row
            with contextlib.suppress(ValueError, AttributeError):  # a detail the agent wrote as such
                reply = json.loads(row["detail"]).get("reply", reply)
            if row["trigger"] == "recover":
                attempts += 1
            if row.get("data") is not None:
                data = row["data"]
            if finished_at is None and reply is not None:
                finished_at = row["at"]
            if row["trigger"] == "deliver":
                # Back in data/guest; a second delivery keeps the collect's time an earlier agent left.
                replied_at, legacy_removed_at, removed_at = row["at"], removed_at or legacy_removed_at, None
            elif row["trigger"] == "collect":
                removed_at = row["at"]
        if last is None or last["dest"] != command["state"] or (last["seq"], last["hash"]) != (
                command["last_seq"], command["last_hash"]):
            self.fail(f"command {cid}: its state {command['state']!r} is not where its transitions lead")
            return
        stored_reply = None if command["reply_code"] is None else {
            "returncode": command["reply_code"], "message": command["reply_message"] or ""}
        if reply != stored_reply:
            self.fail(f"command {cid}: its stored reply differs from the reply its transitions journaled")
        if command.get("data") != data:
            self.fail(f"command {cid}: its working data is not what its transitions journaled")
        if not linked:
            return
        expected = {"updated_at": last["at"], "attempts": attempts, "finished_at": finished_at,
                    "replied_at": replied_at, "reply_removed_at": removed_at}
        for column, value in expected.items():
            allowed = (value, legacy_removed_at) if column == "reply_removed_at" and value is None else (value,)
            if command[column] not in allowed:
                self.fail(f"command {cid}: its {column} {command[column]!r} is not what its transitions say "
                          f"({value!r})")

    def _head(self, found: dict[str, str], chain_from: int, last: tuple[int, str] | None) -> None:
        try:
            head_id, head_link = found[seals.HEAD].split(":")
            head = (int(head_id), head_link)
        except (KeyError, ValueError):
            self.fail("the head seal is missing or altered: the journal was edited outside the agent")
            return
        expected = last or (chain_from - 1, ROOT_LINK)
        if head == expected:
            return
        if head[0] > expected[0]:
            self.fail(f"the newest commands are missing: the journal ended at command {head[0]}, it now ends at "
                      f"{expected[0] if last else 'none'}; they were deleted outside the agent")
        elif head[0] < expected[0]:
            self.fail(f"commands after {head[0]} are not in the command chain: added outside the agent, or "
                      "journaled by an older release of the agent")
        else:
            self.fail(f"command {head[0]}: the newest command was replaced outside the agent")

    def _count(self, cursor: sqlite3.Connection) -> None:
        """The count seal, where the agent would trust it (its ids are the table's), must be the count."""
        sealed = seals.sealed_tally(cursor)
        if sealed is None:
            return  # missing or unreadable: the agent counts the table instead
        count, oldest, newest = (int(n) for n in cursor.execute(
            "SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0) FROM commands").fetchone())
        if (sealed.oldest, sealed.newest) == (oldest, newest) and sealed.count != count:
            self.fail(f"the count seal says {sealed.count} commands, the journal holds {count}: the seal was "
                      "edited outside the agent (retention would remove commands by the wrong count)")

    def _table_digest(self, cursor: sqlite3.Connection, found: dict[str, str], table: SealedTable) -> None:
        if table.digest(cursor) != found.get(table.name):
            self.fail(f"the {table.name} table was changed outside the agent (a row edited, added or removed)")
