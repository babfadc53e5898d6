"""rejected: a request that cannot run (malformed, unknown, refused by policy) still gets its reply.

It is journaled like any command, so the audit trail shows every request the host sent, and its error reply
goes through the same reply protocol. The machine has no work of its own: the base fails every command whose
request carries a rejection, with that rejection's reply.

What it journals as its value is that rejection, never the body (which could be anything, a mistyped
password included): a recovery answers with the journaled reason rather than reading the body again, which
for a request that once killed the agent is exactly what must not happen.
"""

from __future__ import annotations

import json

from agent.errors import CommandError, RequestRejected
from agent.machines.base import RESUME, Command

STATES = ["received"]
TRANSITIONS: list[dict[str, object]] = []
RECOVERY = {"received": RESUME}
#: It ends only in the base's ``failed``, with the rejection's reply.
TERMINAL: frozenset[str] = frozenset()


class Rejected(Command):
    NAME = "rejected"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    HOST_COMMAND = False
    PURE = True
    # The request's own value is never kept: see ``journaled``.
    SECRET_VALUE = True

    @staticmethod
    def journaled(rejection: CommandError) -> str:
        """What the journal keeps as a rejected command's value: its reply."""
        return json.dumps({"returncode": rejection.returncode, "message": rejection.message}, ensure_ascii=True)

    @staticmethod
    def from_journal(value: str) -> RequestRejected:
        """The rejection ``journaled`` kept."""
        reply = json.loads(value)
        return RequestRejected(str(reply["returncode"]), str(reply["message"]))
