"""features: the comma list of commands this build implements and the policy allows (no spaces)."""

from __future__ import annotations

from agent.machines.base import RESUME, Command, Event

STATES = ["received", "done"]
TRANSITIONS = [
    {"trigger": "answer", "source": "received", "dest": "done"},
]
RECOVERY = {"received": RESUME}
TERMINAL = frozenset({"done"})


class Features(Command):
    NAME = "features"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    PURE = True

    def on_enter_received(self, event: Event) -> None:
        self.finish("answer", "0", ",".join(self.ctx.offered()))
