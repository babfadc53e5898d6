"""version: report the agent's version (``"0"``, dotted numbers), as nova's boot sequence asks first."""

from __future__ import annotations

from agent import __version__
from agent.machines.base import RESUME, Command, Event

STATES = ["received", "done"]
TRANSITIONS = [
    {"trigger": "answer", "source": "received", "dest": "done"},
]
RECOVERY = {"received": RESUME}
TERMINAL = frozenset({"done"})


class Version(Command):
    NAME = "version"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    PURE = True

    def on_enter_received(self, event: Event) -> None:
        # The Windows agent also answered "xentools" and "updater"; this agent has one version.
        self.finish("answer", "0", __version__, detail={"asked": str(self.request_value())[:32]})
