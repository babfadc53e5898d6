"""The command tree and the one place errors end: ``main`` is the ``openstack-agent`` entry point.

The tree is assembled from the groups' ``register`` functions, in the order ``--help`` lists them; a new
group is a new module and one more entry in ``GROUPS``. Handlers take the parsed arguments and the output
stream and return the exit code; whatever ``AgentError`` one raises is printed here as ``Error: ...`` and
becomes the exit code it carries, so no handler prints its own errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from agent import __version__
from agent.cli import collect, configuration, diagram, host, journal, network, release, sandbox, service, status
from agent.errors import AgentError

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: A subcommand's handler: the parsed arguments and the output stream in, the exit code out.
Handler = Callable[[argparse.Namespace, TextIO], int]

GROUPS: tuple[Callable[[Subparsers], None], ...] = (
    service.register, release.register, status.register, configuration.register, journal.register,
    collect.register, host.register, network.register, sandbox.register, diagram.register)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``openstack-agent`` command; returns the exit code."""
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(out)
        return 2
    try:
        return handler(args, out)
    except AgentError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openstack-agent",
        description="Guest agent for Xen-based OpenStack clouds: every command a journaled state machine.",
    )
    parser.add_argument("--version", action="version", version=f"openstack-agent {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in GROUPS:
        register(commands)
    return parser
