"""``status``: whether the agent runs and serves, what it runs, its releases and its journal.

Like ``systemctl is-active``, the exit code answers the question for scripts: 0 running and ready,
``NOT_RUNNING`` when no agent holds the state directory, ``NOT_READY`` when one does but does not serve yet
(starting) or has lost XenStore (reconnecting). ``--wait`` blocks until the agent is ready, as cloud-init's
``status --wait`` does, polling what the agent publishes (``agent.status``), never XenStore. Status only reads:
it never takes the state directory's lock, and opens the journal read-only.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from agent import config
from agent.cli import output

if TYPE_CHECKING:
    from agent.cli.app import Subparsers

#: Exit codes beside 0 (running and ready); apart from the CLI's error codes (2 to 11), which they must not
#: be mistaken for.
NOT_RUNNING = 20
NOT_READY = 21
#: Seconds between two looks at the published state under ``--wait``.
WAIT_INTERVAL = 0.1
#: Commands listed under "last commands".
LAST = 5
#: Longest reply message the text table shows (a keyinit's public key runs to hundreds of digits).
REPLY_WIDTH = 40
LAST_COLUMNS = ("id", "request_id", "name", "state", "reply", "received_at")


def register(commands: Subparsers) -> None:
    parser = commands.add_parser("status", help="whether the agent runs and serves, and what it runs",
                                 description=(
        "Show whether the agent is running and ready (the state directory's lock and what the agent "
        "publishes), its version and pid, the current, previous and bad releases, the XenStore connection as "
        "the agent last saw it, the last commands, any unfinished one, and the journal's size and "
        f"verification. Exit status: 0 running and ready, {NOT_RUNNING} not running, {NOT_READY} running but "
        "not ready (starting, or reconnecting to XenStore). Only reads: never locks, never writes."))
    parser.add_argument("--wait", type=_seconds, metavar="SECONDS",
                        help="wait up to SECONDS for the agent to be ready, then show the status")
    config.add_flags(parser)
    output.json_flag(parser)
    parser.set_defaults(handler=cmd_status)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {value!r}")
    return seconds


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from agent import status

    settings = config.load(args)
    observed = status.observe(settings.state_path)
    if args.wait is not None:
        deadline = time.monotonic() + args.wait
        while not observed.ready and time.monotonic() < deadline:
            time.sleep(min(WAIT_INTERVAL, max(0.0, deadline - time.monotonic())))
            observed = status.observe(settings.state_path)
    document = status.report(settings, observed, last=LAST)
    if args.json:
        output.as_json(document, out)
    else:
        render(document, out)
    code = 0 if observed.ready else NOT_READY if observed.running else NOT_RUNNING
    if code and args.wait is not None:
        # A result, not a failure of the command: on stderr, so that --json stays one document.
        sys.stderr.write(f"openstack-agent is not ready after {args.wait:g} s: "
                         f"{'it is ' + observed.state if observed.running else 'it is not running'}\n")
    return code


def render(document: dict[str, Any], out: TextIO) -> None:
    """The report for people: fields, then the last commands as a table."""
    agent, releases, journal = document["agent"], document["releases"], document["journal"]
    pairs: list[tuple[str, Any]] = [("agent", _agent_line(agent))]
    if agent["running"]:
        xenstore = agent["xenstore"]
        pairs += [("version", agent["version"]), ("pid", agent["pid"]), ("started", agent["started"]),
                  ("ready", agent["ready_at"]),
                  ("xenstore", f"{xenstore['state']} since {xenstore['since']}" if xenstore else None)]
    else:
        pairs.append(("last run", _last_run(agent["last_run"])))
    verdicts = releases["verdicts"]
    pairs += [("install root", releases["install_root"]),
              ("current", _release(releases["current"], verdicts)),
              ("previous", _release(releases["previous"], verdicts)),
              ("bad", ", ".join(f"{v} ({verdicts[v]['reason'] or 'no reason given'})" for v in releases["bad"])
               or "none")]
    # What the install root could not tell (a pointer file naming no release), each with its fix.
    pairs += [("error", error) for error in releases.get("errors", [])]
    pairs += _journal_lines(journal)
    output.fields(pairs, out)
    if journal["last"]:
        out.write("\nlast commands\n")
        output.table([{**row, "reply": _reply(row)} for row in journal["last"]], LAST_COLUMNS, out)


def _agent_line(agent: dict[str, Any]) -> str:
    if not agent["running"]:
        return "not running"
    if agent["ready"]:
        return "running, ready"
    if agent["version"] is None:
        return "running, not ready (it has not published its status yet)"
    return f"running, not ready ({agent['state']})"


def _last_run(last: dict[str, Any] | None) -> str | None:
    if last is None:
        return "none recorded"
    how = f"stopped cleanly at {last['stopped_at']}" if last["clean_stop"] else "ended without a clean stop"
    return f"openstack-agent {last['version']}, pid {last['pid']}, started {last['started']}, {how}"


def _release(version: str | None, verdicts: dict[str, Any]) -> str | None:
    if version is None:
        return None
    verdict = verdicts.get(version)
    return f"{version} ({verdict['state'] if verdict else 'no verdict'})"


def _journal_lines(journal: dict[str, Any]) -> list[tuple[str, Any]]:
    if not journal["present"]:
        return [("journal", f"none at {journal['path']}")]
    lines: list[tuple[str, Any]] = [
        ("journal", f"{journal['path']}, {journal['bytes']} bytes"
                    + (f", {_count(journal['commands'], 'command')}" if journal["commands"] is not None else ""))]
    if journal["error"]:
        return [*lines, ("error", journal["error"])]
    verify = journal["verify"]
    lines.append(("verified", f"ok, {_count(verify['rows'], 'transition')}" if verify["ok"]
                  else f"FAILED: {verify['problem']} ({_count(verify['problem_count'], 'problem')})"))
    unfinished = journal["unfinished"]
    lines.append(("unfinished", ", ".join(f"{c['id']} {c['name'] or '-'} ({c['state']})" for c in unfinished)
                  or "none"))
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _reply(row: dict[str, Any]) -> str | None:
    if row["reply_code"] is None:
        return None
    message = row["reply_message"] or ""
    if len(message) > REPLY_WIDTH:
        message = message[:REPLY_WIDTH - 3] + "..."
    return f"{row['reply_code']} {message}".rstrip()
