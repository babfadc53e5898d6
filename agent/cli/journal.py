"""``journal list``, ``show``, ``export`` and ``verify``: reading the journal, never writing it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from agent import config
from agent.cli import output
from agent.errors import JournalCorrupt, JournalError

if TYPE_CHECKING:
    from agent.cli.app import Handler, Subparsers

LIST_COLUMNS = ("id", "request_id", "name", "state", "reply_code", "attempts", "received_at", "replied_at")
TRANSITION_COLUMNS = ("seq", "at", "trigger", "source", "dest", "detail")


def register(commands: Subparsers) -> None:
    journal = commands.add_parser("journal", help="inspect the journal",
                                  description="Inspect the journal of commands and their transitions.")
    actions = journal.add_subparsers(title="journal commands", metavar="ACTION")
    listing = _action(actions, "list", "list commands, newest first", cmd_journal_list)
    listing.add_argument("--limit", type=int, default=50, help="at most this many commands (0: all)")
    listing.add_argument("--name", help="only commands with this name")
    listing.add_argument("--state", help="only commands in this state")
    show = _action(actions, "show", "one command and every transition it took", cmd_journal_show)
    show.add_argument("id", type=int, help="command id, as 'journal list' shows it")
    export = _action(actions, "export", "every command with its transitions, as JSON lines", cmd_journal_export)
    export.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    _action(actions, "verify", "check the transitions' hash chains", cmd_journal_verify)


def _action(actions: Subparsers, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
    """A journal action: its help as the description too, ``--state-dir`` and friends, and ``--json``."""
    parser = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    config.add_flags(parser, only=("state_dir",))
    output.json_flag(parser)
    parser.set_defaults(handler=handler)
    return parser


def _open_journal(args: argparse.Namespace) -> Any:
    from agent.journal import Journal
    from agent.journal.engine import DATABASE_NAME

    settings = config.load(args)
    database = settings.state_path / DATABASE_NAME
    if not database.exists():
        raise JournalError(f"no journal at {database}; has the agent run here? Point --state-dir (or "
                           "journal.state_dir in the configuration) at the agent's state directory")
    # Inspection never writes: no schema, migration, mode change or file, so it also works on a read-only mount.
    return Journal.open_readonly(settings.state_path)


def _command_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _transition_dict(row: Any) -> dict[str, Any]:
    document = dataclasses.asdict(row)
    document["detail"] = json.loads(row.detail)
    return document


def cmd_journal_list(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        rows = [_command_dict(r) for r in journal.commands(limit=args.limit or None, name=args.name,
                                                           state=args.state)]
        predecessor = journal.predecessor()
    finally:
        journal.close()
    if predecessor is not None:
        # On stderr, so that --json output stays one JSON document.
        sys.stderr.write(f"Note: this journal was started on {predecessor.moved_at} because the previous one "
                         f"was unusable ({predecessor.reason}); it was moved aside to {predecessor.path}\n")
    if args.json:
        output.as_json(rows, out)
    else:
        output.table(rows, LIST_COLUMNS, out)
    return 0


def cmd_journal_show(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        command = _command_dict(journal.get(args.id))
        transitions = [_transition_dict(t) for t in journal.transitions(args.id)]
    finally:
        journal.close()
    if args.json:
        output.as_json({**command, "transitions": transitions}, out)
        return 0
    output.fields([
        ("command", command["id"]), ("name", command["name"]), ("machine", command["machine"]),
        ("state", command["state"]), ("request", command["request_id"]), ("domain", command["domain_path"]),
        ("digest", command["digest"]), ("attempts", command["attempts"]), ("received", command["received_at"]),
        ("finished", command["finished_at"]),
        ("reply", None if command["reply_code"] is None
         else f"{command['reply_code']} {command['reply_message']!r}"),
        ("replied", command["replied_at"]), ("reply removed", command["reply_removed_at"]),
    ], out)
    out.write("\n")
    rows = [{**t, "detail": json.dumps(t["detail"], sort_keys=True) if t["detail"] else None}
            for t in transitions]
    output.table(rows, TRANSITION_COLUMNS, out)
    return 0


def cmd_journal_export(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        commands = [{**_command_dict(r), "transitions": [_transition_dict(t) for t in journal.transitions(r.id)]}
                    for r in reversed(journal.commands())]
    finally:
        journal.close()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            output.as_json(commands, fh, lines=True)
    else:
        output.as_json(commands, out, lines=True)
    return 0


def cmd_journal_verify(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        result = journal.verify()
    finally:
        journal.close()
    if args.json:
        output.as_json(dataclasses.asdict(result), out)
    elif result.ok:
        out.write(f"journal verified: {result.rows} transitions, every hash chain intact\n")
    if not result.ok:
        more = ""
        if result.problem_count > 1:
            more = f" (and {result.problem_count - 1} more; --json lists up to 20)"
        raise JournalCorrupt(f"journal verification failed: {result.problem}{more}; the journal was changed "
                             "outside the agent or damaged, keep a copy for investigation")
    return 0
