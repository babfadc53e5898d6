"""The command tree and the one place errors end: ``main`` is the ``openstack-agent`` entry point.

The tree is assembled from the groups' ``register`` functions, in the order ``--help`` lists them; a new
group is a new module and one more entry in ``GROUPS``. Handlers take the parsed arguments and the output
stream and return the exit code; whatever ``AgentError`` one raises is printed here as ``Error: ...`` and
becomes the exit code it carries, so no handler prints its own errors.

Two endings are handled here once for every command:

* Output into a pipe whose reader has gone (``journal export | head -c 10``) ends quietly with exit status
  141, what a shell reports for a tool that SIGPIPE ended (``set -o pipefail`` scripts see the same status as
  with ``cat``): no traceback, and nothing more for the interpreter to fail flushing at exit.
* A command line argparse refuses shows the usage of the subcommand it was meant for, a "did you mean" for
  a mistyped option or choice (subcommand names included), and exits 2 as argparse does.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import select
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, TextIO

from agent import __version__
from agent.errors import AgentError

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: A subcommand's handler: the parsed arguments and the output stream in, the exit code out.
Handler = Callable[[argparse.Namespace, TextIO], int]

#: The command groups in the order ``--help`` lists them: each module of ``agent.cli`` that has a ``register``,
#: and the top-level commands it adds. A command line that names one of them loads that module alone, so that
#: ``journal show`` or ``run`` does not pay for importing every other group (``collect-logs`` alone costs tens
#: of milliseconds, and the daemon's memory the modules it never uses).
GROUPS: dict[str, tuple[str, ...]] = {
    "service": ("run", "supervise", "install", "uninstall", "service"),
    "release": ("release",),
    "status": ("status",),
    "configuration": ("config",),
    "journal": ("journal",),
    "collect": ("collect-logs",),
    "host": ("host",),
    "network": ("network",),
    "sandbox": ("sandbox",),
    "diagram": ("diagram",),
}

#: The exit status after output to a closed pipe: 128 + SIGPIPE, as a shell reports a tool SIGPIPE ended.
BROKEN_PIPE = 141

#: Where each parser that took part in a parse records itself, innermost first (see ``Parser``).
_PARSERS = "_openstack_agent_parsers"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``openstack-agent`` command; returns the exit code."""
    out = out or sys.stdout
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            build_parser().print_help(out)  # the whole tree's: every command listed
            code = 2
        else:
            code = handler(args, out)
        # Flushed here, not at exit, so that a reader that has gone is noticed where it is handled.
        out.flush()
        return code
    except AgentError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        if not _silence_closed_pipes(out, sys.stdout):
            raise  # some other pipe broke: a defect to see, not a reader that stopped reading
        return BROKEN_PIPE
    except SystemExit:
        # argparse's --help and usage errors: a closed pipe there ends as quietly as anywhere.
        if _silence_closed_pipes(sys.stdout, sys.stderr):
            return BROKEN_PIPE
        raise


def _silence_closed_pipes(*streams: IO[Any]) -> bool:
    """Point each of ``streams`` whose reader has gone at the null device, so that nothing written later
    (the interpreter's flush at exit included) fails again; whether one had."""
    silenced = False
    for stream in streams:
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # a StringIO, or a stream already closed
            continue
        if _reader_gone(fd):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
            silenced = True
    return silenced


def _reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe or socket whose other end is closed (poll reports an error or hang-up on it)."""
    if sys.platform == "win32":
        return True  # no poll there, and the broken pipe the caller saw is the best evidence there is
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class Parser(argparse.ArgumentParser):
    """argparse's parser with errors that help: the usage of the subcommand that was meant, and a "did you
    mean" for a mistyped option or choice. Subparsers are made of this class too (argparse uses the parent's)."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        # A subparser returns before its parent: the list ends up innermost first.
        chain: list[argparse.ArgumentParser] = [*getattr(parsed, _PARSERS, []), self]
        setattr(parsed, _PARSERS, chain)
        return parsed, extras

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        chain: list[argparse.ArgumentParser] = getattr(parsed, _PARSERS)
        delattr(parsed, _PARSERS)
        if extras:
            hints = [hint for extra in extras if extra.startswith("-") and (hint := _option_hint(extra, chain))]
            chain[0].error("; ".join([f"unrecognized arguments: {' '.join(extras)}", *dict.fromkeys(hints)]))
        return parsed

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            choices = [str(choice) for choice in action.choices or ()]
            match = difflib.get_close_matches(str(value), choices, n=1)
            if not match:
                raise
            raise argparse.ArgumentError(action, f"{exc.message}; did you mean {match[0]!r}?") from None


def _option_hint(given: str, chain: Sequence[argparse.ArgumentParser]) -> str | None:
    """"did you mean" for a mistyped option: the subcommand's own options first, then its parents' (which
    argparse only takes before the subcommand's name, so the hint says where they go)."""
    name = given.split("=", 1)[0].lstrip("-")
    for parser in chain:
        # Compared without their dashes, which every option shares and would make any two look alike.
        options = {option.lstrip("-"): option for action in parser._actions for option in action.option_strings}
        match = difflib.get_close_matches(name, options, n=1)
        if not match:
            continue
        option = options[match[0]]
        if parser is chain[0]:
            return f"did you mean {option}?"
        if match[0] == name:
            return f"'{parser.prog}' takes {option}, before its subcommand"
        return f"did you mean {option}? '{parser.prog}' takes it, before its subcommand"
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command tree: whole, or for a command line ``argv`` that names a command, that command's group alone.

    A line that names none (``--help``, a mistyped command) gets the whole tree, for the list of commands and
    the "did you mean" among them.
    """
    parser: argparse.ArgumentParser = Parser(
        prog="openstack-agent",
        description="Guest agent for Xen-based OpenStack clouds: every command a journaled state machine.",
    )
    parser.add_argument("--version", action="version", version=f"openstack-agent {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    named = _command_named(argv)
    for group, names in GROUPS.items():
        if named is None or named in names:
            importlib.import_module(f"agent.cli.{group}").register(commands)
    return parser


def _command_named(argv: Sequence[str] | None) -> str | None:
    """The top-level command ``argv`` names, when it is one; the top-level options take no values, so it is the
    first argument that is not an option."""
    first = next((arg for arg in argv or () if not arg.startswith("-")), None)
    return first if any(first in names for names in GROUPS.values()) else None
