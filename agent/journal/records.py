"""The journal's records as the rest of the agent sees them: plain frozen dataclasses."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.journal.core import Journal


@dataclasses.dataclass(frozen=True)
class CommandRecord:
    """A command row."""

    id: int
    request_id: str
    domain_path: str
    name: str | None
    machine: str
    value: str | None
    digest: str
    state: str
    attempts: int
    received_at: str
    updated_at: str
    #: Set by the transition that journals the reply: a command is finished once it has its reply.
    finished_at: str | None
    reply_code: str | None
    reply_message: str | None
    replied_at: str | None
    reply_removed_at: str | None
    #: Position of the command's hash chain: the sequence number and hash of its last transition.
    last_seq: int
    last_hash: str
    #: The machine's typed working data as JSON (``agent.machines.base``), or None when it has none.
    data: str | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def reply(self) -> dict[str, str] | None:
        if self.reply_code is None:
            return None
        return {"returncode": self.reply_code, "message": self.reply_message or ""}


@dataclasses.dataclass(frozen=True)
class TransitionRecord:
    """One journaled step of a command: ``detail`` is the audit record, ``data`` the working data it set."""

    id: int
    command_id: int
    seq: int
    trigger: str
    source: str | None
    dest: str
    at: str
    detail: str
    prev_hash: str
    hash: str
    data: str | None = None


@dataclasses.dataclass(frozen=True)
class RecordWrite:
    """Rows a command type writes in its own tables in the same transaction as one of its transitions.

    ``apply(cursor, command, at)`` runs after the transition row is written. ``wipes`` says that it erased a
    secret, so the WAL is checkpointed after the commit to take the old content out of the files too.
    ``committed(journal)`` runs once the transaction is committed (a records module's in-memory view follows).
    """

    apply: Callable[[sqlite3.Connection, CommandRecord, str], None]
    wipes: bool = False
    committed: Callable[[Journal], None] | None = None


@dataclasses.dataclass(frozen=True)
class Verification:
    """What ``verify`` found: ``rows`` transitions checked (every one the journal holds, also those of a chain
    that failed), ``commands`` commands, and every problem (the first in ``problem``)."""

    ok: bool
    rows: int
    problem: str = ""
    #: The first problems found (``agent.journal.verify.MAX_PROBLEMS``); ``problem_count`` counts them all.
    problems: tuple[str, ...] = ()
    problem_count: int = 0
    commands: int = 0


@dataclasses.dataclass(frozen=True)
class Predecessor:
    """A broken journal that this one replaced at start-up: where it was moved, when, and why."""

    path: str
    moved_at: str
    reason: str


#: The commands and transitions columns the agent reads, in the models' order (a test keeps them equal to the
#: models): named rather than ``*``, so that a column a newer release added is left alone after a rollback.
COMMAND_COLUMNS = tuple(field.name for field in dataclasses.fields(CommandRecord))
TRANSITION_COLUMNS = tuple(field.name for field in dataclasses.fields(TransitionRecord))
