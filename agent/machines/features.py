"""features: the comma list of commands this build implements and the policy allows (no spaces)."""

from __future__ import annotations

from agent.machines.base import RESUME, JournaledCommand

STATES = ["received", "done"]
TRANSITIONS = [
    {"trigger": "answer", "source": "received", "dest": "done"},
]
RECOVERY = {"received": RESUME}


class Features(JournaledCommand):
    NAME = "features"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    RECOVERY = RECOVERY

    def on_enter_received(self) -> None:
        self.finish("answer", "0", ",".join(self.ctx.offered()))
