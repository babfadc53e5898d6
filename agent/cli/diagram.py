"""``diagram``: a command's machine as a mermaid state diagram, drawn from its table (``agent.diagram``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.cli.app import Subparsers


def register(commands: Subparsers) -> None:
    diagram = commands.add_parser("diagram", help="print a command's state diagram (mermaid)")
    diagram.add_argument("command", nargs="?", help="command name (default: every machine)")
    diagram.set_defaults(handler=cmd_diagram)


def cmd_diagram(args: argparse.Namespace, out: TextIO) -> int:
    from agent.diagram import mermaid
    from agent.machines import REGISTRY, host_commands

    commands = host_commands()
    names = [args.command] if args.command else commands
    for name in names:
        if name not in commands:
            raise AgentError(f"no machine named {name!r}; choose one of {', '.join(commands)}")
        out.write(f"%% {name}\n{mermaid(REGISTRY[name])}\n")
    return 0
