"""rejected: a request that cannot run (malformed, unknown, refused by policy) still gets its reply.

It is journaled like any command, so the audit trail shows every request the host sent, and its error reply
goes through the same reply protocol.
"""

from __future__ import annotations

from agent.errors import RequestRejected
from agent.machines.base import RESUME, JournaledCommand

STATES = ["received"]
TRANSITIONS: list[dict[str, object]] = []
RECOVERY = {"received": RESUME}


class Rejected(JournaledCommand):
    NAME = "rejected"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    RECOVERY = RECOVERY
    # A malformed body can be anything, a mistyped password included: keep only its digest.
    SECRET_VALUE = True

    def on_enter_received(self) -> None:
        rejection = self.ctx.request.rejection
        if rejection is None:
            raise RequestRejected("500", "Request could not be handled")
        raise rejection
