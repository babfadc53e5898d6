"""``diagram``: a command's machine as a mermaid state diagram, drawn from its table (``agent.diagram``).

One machine per run, since mermaid takes one diagram per source: ``diagram NAME`` prints that machine's
diagram and nothing else, ready for mermaid (or a ```` ```mermaid ```` block); without a name it lists the
machines that can be drawn, every one in ``agent.machines.REGISTRY`` (``rejected`` too, which the journal
names though the host cannot call it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from agent.cli import output
from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.cli.app import Subparsers


def register(commands: Subparsers) -> None:
    diagram = commands.add_parser("diagram", help="print a command's state diagram (mermaid)", description=(
        "Print the mermaid state diagram of one command's machine. Without a name, list the machines."))
    diagram.add_argument("command", metavar="MACHINE", nargs="?",
                         help="the machine's name (without it: the list of machines)")
    diagram.set_defaults(handler=cmd_diagram)


def cmd_diagram(args: argparse.Namespace, out: TextIO) -> int:
    from agent.diagram import mermaid
    from agent.machines import REGISTRY

    if args.command is None:
        rows = [{"machine": name, "host command": "yes" if machine.HOST_COMMAND else "no",
                 "states": " ".join(machine.states())} for name, machine in REGISTRY.items()]
        output.table(rows, ["machine", "host command", "states"], out)
        out.write("\nDraw one with 'openstack-agent diagram MACHINE' (mermaid source, one diagram).\n")
        return 0
    machine = REGISTRY.get(args.command)
    if machine is None:
        raise AgentError(f"no machine named {args.command!r}; choose one of {', '.join(REGISTRY)}")
    out.write(mermaid(machine))
    out.write("\n")
    return 0
