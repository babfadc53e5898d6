"""One module per command machine; ``REGISTRY`` is the one table of them, ``rejected`` included.

A command type owns everything about itself: its states and transitions, its recovery policy, its working
data, its own records (a module of ``agent.journal``) and its timers. Adding one means writing its module,
and its line here; a type with a table of its own also writes that records module, its migration, and the
import in ``agent/journal/__init__.py`` that registers its sealed table.
"""

from __future__ import annotations

from agent.machines.agentupdate import AgentUpdate
from agent.machines.base import Command, Context
from agent.machines.features import Features
from agent.machines.injectfile import FileInject, InjectFile
from agent.machines.keyinit import KeyInit
from agent.machines.kmsactivate import KmsActivate
from agent.machines.password import Password
from agent.machines.rejected import Rejected
from agent.machines.resetnetwork import ResetNetwork
from agent.machines.version import Version

#: Every command type by machine name, in the order ``features`` lists the host's commands.
REGISTRY: dict[str, type[Command]] = {machine.NAME: machine for machine in (
    Version,
    Features,
    KeyInit,
    Password,
    ResetNetwork,
    AgentUpdate,
    InjectFile,
    FileInject,
    KmsActivate,
    Rejected,
)}


def host_commands() -> list[str]:
    """The commands the host can name, in ``features`` order."""
    return [name for name, machine in REGISTRY.items() if machine.HOST_COMMAND]


__all__ = ["REGISTRY", "Command", "Context", "Rejected", "host_commands"]
