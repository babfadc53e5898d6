"""``journal list``, ``show``, ``timing``, ``export`` and ``verify``: reading the journal, never writing it.

Filters are checked against what can exist: ``--state`` and ``--name`` must name a state or command of some
machine (or one the journal holds, from another release or a host that sent an unknown name), so that a typo
is an error rather than an empty table. ``--since`` takes a time or a duration back from now.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from agent import config
from agent.cli import output
from agent.errors import CommandNotFound, ConfigError, JournalCorrupt, JournalError

if TYPE_CHECKING:
    from agent.cli.app import Handler, Subparsers

LIST_COLUMNS = ("id", "request_id", "name", "state", "reply_code", "attempts", "received_at", "replied_at")
TRANSITION_COLUMNS = ("seq", "at", "trigger", "source", "dest", "detail")
TIMING_COLUMNS = ("id", "name", "state", "duration", "received_at", "states")
#: --since durations: a number and a unit, or several (``1h30m``).
_DURATION = re.compile(r"(?:[0-9]+[smhdw])+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SINCE_HELP = ("only commands received since WHEN: an ISO-8601 time or date (2026-11-23T10:00:00Z, 2026-11-23; "
               "UTC unless it names an offset) or a duration back from now (30m, 2h, 7d)")


def register(commands: Subparsers) -> None:
    journal = commands.add_parser("journal", help="inspect the journal",
                                  description="Inspect the journal of commands and their transitions.")
    actions = journal.add_subparsers(title="journal commands", metavar="ACTION")
    listing = _action(actions, "list", "list commands, newest first", cmd_journal_list)
    listing.add_argument("--limit", type=int, default=50, help="at most this many commands (0: all)")
    listing.add_argument("--name", help="only commands with this name")
    listing.add_argument("--state", help="only commands in this state")
    listing.add_argument("--since", metavar="WHEN", help=_SINCE_HELP)
    show = _action(actions, "show", "one command and every transition it took", cmd_journal_show)
    show.add_argument("id", help="a command id, as 'journal list' shows it, or a request id (the host's "
                                 "data/host/<id>): every command that used it, oldest first")
    timing = _action(actions, "timing", "how long commands took and where, slowest first", cmd_journal_timing)
    timing.add_argument("--limit", type=int, default=20, help="at most this many commands (0: all)")
    timing.add_argument("--name", help="only commands with this name")
    timing.add_argument("--since", metavar="WHEN", help=_SINCE_HELP)
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


def since_time(when: str, now: datetime) -> str:
    """``--since WHEN`` as a journal time: an ISO-8601 time or date, UTC unless it names an offset, or a
    duration back from ``now``."""
    from agent.journal.times import iso

    try:
        if _DURATION.fullmatch(when):
            seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(r"([0-9]+)([smhdw])", when))
            moment = now - timedelta(seconds=seconds)
        else:
            moment = datetime.fromisoformat(when)
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"--since {when!r} reaches back further than dates go; give a shorter duration") from None
    except ValueError:
        raise ConfigError(f"--since {when!r} is neither a time nor a duration: give an ISO-8601 time or date "
                          "(2026-11-23T10:00:00Z, 2026-11-23) or a duration back from now (30m, 2h, 7d)") from None
    # Journal times compare as text, which needs four-digit years; nothing was journaled before 1970 anyway.
    return iso(max(moment, _EPOCH))


def _check_filters(journal: Any, state: str | None, name: str | None) -> None:
    """Refuse a --state or --name that no machine has and the journal does not hold: a typo, not a filter
    that matches nothing."""
    if not state and not name:
        return  # without a filter there is nothing to check, and the machines need not be loaded
    from agent.machines import REGISTRY, host_commands

    if state:
        states = {s for machine in REGISTRY.values() for s in machine.states()}
        if state not in states and state not in journal.journaled("state"):
            raise ConfigError(f"--state {state!r} is not a state of any command; the states are: "
                              f"{', '.join(sorted(states))}")
    if name:
        names = set(host_commands())
        # The journal also holds the names of unknown commands the host sent (rejected): those are found too.
        if name not in names and name not in journal.journaled("name"):
            raise ConfigError(f"--name {name!r} is not a command the agent knows or the journal holds; the "
                              f"commands are: {', '.join(sorted(names))}")


def cmd_journal_list(args: argparse.Namespace, out: TextIO) -> int:
    from agent.journal import times

    since = since_time(args.since, times.wall_clock()) if args.since is not None else None
    journal = _open_journal(args)
    try:
        _check_filters(journal, args.state, args.name)
        rows = [_command_dict(r) for r in journal.commands(limit=args.limit or None, name=args.name,
                                                           state=args.state, since=since)]
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


def _find(journal: Any, wanted: str) -> tuple[list[Any], bool]:
    """The commands ``journal show`` shows: the command with id ``wanted`` if there is one, else every command
    journaled for the request id ``wanted``, oldest first; the second value says which (True: by request)."""
    if wanted.isascii() and wanted.isdigit() and int(wanted) < 2**63:
        try:
            return [journal.get(int(wanted))], False
        except CommandNotFound:
            pass  # a request id may be all digits too
    found = journal.by_request(wanted)
    if not found:
        what = f"no command {wanted} and no request id {wanted!r}" if wanted.isdigit() else \
            f"no command with the request id {wanted!r}"
        raise CommandNotFound(f"{what} in the journal; 'openstack-agent journal list' shows the command ids and "
                              "request ids")
    return found, True


def cmd_journal_show(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        records, by_request = _find(journal, args.id)
        commands = [{**_command_dict(r), "transitions": [_transition_dict(t) for t in journal.transitions(r.id)]}
                    for r in records]
    finally:
        journal.close()
    if args.json:
        # By request id, always a list (one or several commands); by command id, the command itself.
        output.as_json(commands if by_request else commands[0], out)
        return 0
    if len(commands) > 1:
        output.fields([("request", args.id), ("commands", f"{', '.join(str(c['id']) for c in commands)} "
                                                          "(each shown below, oldest first)")], out)
        out.write("\n")
    for number, command in enumerate(commands):
        if number:
            out.write("\n")
        _show_command(command, out)
    return 0


def _show_command(command: dict[str, Any], out: TextIO) -> None:
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
            for t in command["transitions"]]
    output.table(rows, TRANSITION_COLUMNS, out)


def cmd_journal_timing(args: argparse.Namespace, out: TextIO) -> int:
    from agent.journal import times
    from agent.journal.timing import timings

    now = times.wall_clock()
    since = since_time(args.since, now) if args.since is not None else None
    journal = _open_journal(args)
    try:
        _check_filters(journal, None, args.name)
        found = timings(journal, now, name=args.name, since=since)
    finally:
        journal.close()
    if args.limit > 0:  # as for list, 0 (or less) is all
        found = found[:args.limit]
    if args.json:
        output.as_json([{"id": t.command.id, "request_id": t.command.request_id, "name": t.command.name,
                         "machine": t.command.machine, "state": t.command.state,
                         "received_at": t.command.received_at, "finished_at": t.command.finished_at,
                         "finished": t.finished, "seconds": t.seconds,
                         "states": [dataclasses.asdict(s) for s in t.states]} for t in found], out)
        return 0
    output.table([{"id": t.command.id, "name": t.command.name, "state": t.command.state,
                   "received_at": t.command.received_at,
                   "duration": duration(t.seconds) + ("" if t.finished else " so far"),
                   "states": ", ".join(f"{s.state} {duration(s.seconds)}" for s in t.states)}
                  for t in found], TIMING_COLUMNS, out)
    return 0


def duration(seconds: float) -> str:
    """A duration for people: milliseconds under an hour (``4.250s``, ``2m05.000s``), then coarser."""
    seconds = round(seconds, 3)  # so that 59.9996 s is 1m00.000s, not 60.000s
    if seconds < 60:
        return f"{seconds:.3f}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}m{rest:06.3f}s"
    whole = int(seconds)
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m{whole % 60:02d}s"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h{whole % 3600 // 60:02d}m"


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
