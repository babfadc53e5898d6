"""keyinit: the Diffie-Hellman half of setting a password (docs/protocol.md, "keyinit" and "Password crypto").

The host sends its public key; the agent draws a private key, computes the shared secret, and journals the
exchange (``agent.journal.exchanges``) in the same transaction as the ``exchange`` transition, so the
exchange survives an agent restart and a guest reboot (nova re-sends the password after a reboot, never
the keyinit). Opening an exchange replaces any earlier one and wipes its secret. The reply is ``"D0"`` with
the agent's public key; the private key is never stored.

    received --exchange--> exchanged --answer--> done
"""

from __future__ import annotations

from datetime import timedelta

from agent import crypto
from agent.errors import CommandFailed, JournalError
from agent.journal import exchanges, iso
from agent.machines.base import RESUME, Command, Event

STATES = ["received", "exchanged", "done"]
TRANSITIONS = [
    {"trigger": "exchange", "source": "received", "dest": "exchanged"},
    {"trigger": "answer", "source": "exchanged", "dest": "done"},
]
RECOVERY = {
    "received": RESUME,  # nothing was kept yet: draw a key and exchange
    "exchanged": RESUME,  # the exchange is journaled: answer with its public key
}
TERMINAL = frozenset({"done"})


class KeyInit(Command):
    NAME = "keyinit"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY

    def on_enter_received(self, event: Event) -> None:
        try:
            peer = crypto.parse_public_key(self.request_value())
        except crypto.KeyExchangeError as exc:
            raise CommandFailed("500", f"Invalid key exchange value: {exc}") from None
        private = crypto.private_key()
        public = str(crypto.public_key(private))
        secret = crypto.shared_secret(private, peer)
        expires = iso(self.ctx.ports.clock() + timedelta(seconds=self.ctx.config.exchange_lifetime))
        detail = {"public_key": public, "group": "2^107-1", "group_bits": crypto.GROUP_BITS, "expires_at": expires}
        self.advance("exchange", detail=detail,
                     records=exchanges.opens(public, secret, expires, crypto.GROUP_BITS))

    def on_enter_exchanged(self, event: Event) -> None:
        exchange = exchanges.opened_by(self.ctx.journal, self.record.id)
        if exchange is None:
            raise JournalError(f"command {self.record.id} is exchanged but its key exchange is not in the journal")
        # nova sends the password only when it gets exactly "D0".
        self.finish("answer", "D0", exchange.public_key)
