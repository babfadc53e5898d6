"""One module per command machine; this registry maps protocol command names to them."""

from __future__ import annotations

from agent.machines.agentupdate import AgentUpdate
from agent.machines.base import Context, JournaledCommand
from agent.machines.features import Features
from agent.machines.keyinit import KeyInit
from agent.machines.password import Password
from agent.machines.rejected import Rejected
from agent.machines.version import Version

#: The commands this build implements, in the order ``features`` lists them.
COMMANDS: dict[str, type[JournaledCommand]] = {
    "version": Version,
    "features": Features,
    "keyinit": KeyInit,
    "password": Password,
    "agentupdate": AgentUpdate,
}

__all__ = ["COMMANDS", "Context", "JournaledCommand", "Rejected"]
