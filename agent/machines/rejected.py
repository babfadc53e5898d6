"""rejected: a request that cannot run (malformed, unknown, refused by policy) still gets its reply.

It is journaled like any command, so the audit trail shows every request the host sent, and its error reply
goes through the same reply protocol. The machine has no work of its own: the base fails every command whose
request carries a rejection, with that rejection's reply.
"""

from __future__ import annotations

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
