"""password: decrypt the host's password under the current key exchange and set it.

Validate, then act. In ``received`` the ciphertext is decoded and decrypted (MD5, then SHA-256 key
derivation) without touching the system; ``unlock`` journals which exchange and derivation matched.
``applying`` sets the password through the platform, and ``apply`` journals that it is set in the same
transaction that closes the exchange and wipes its secret. A crash in ``applied`` therefore replies "0" on
restart without setting the password again; a crash in ``applying`` sets the same password once more,
which changes nothing. The ciphertext itself is never stored, only its digest: a re-sent one (nova repeats
the call after a reboot) is recognised and answered "0" without being applied twice.

A command that keeps being interrupted (``recovery.max_attempts``) is not run again, but its reply still
tells the truth: in ``applying`` the platform is asked whether the requested password is now the account's
(the tool may have finished just before the crash); if it is, the command is applied and answered "0".
Either way the exchange is closed and its secret wiped.

    received --unlock--> applying --apply--> applied --answer--> done
    received --already_applied--> done
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import logging
from typing import NamedTuple

from agent import crypto
from agent.errors import CommandError, CommandFailed, PlatformError
from agent.journal import Journal, exchanges
from agent.journal.exchanges import Exchange
from agent.machines.base import RESUME, Command, Event

log = logging.getLogger(__name__)

STATES = ["received", "applying", "applied", "done"]
TRANSITIONS = [
    {"trigger": "unlock", "source": "received", "dest": "applying"},
    {"trigger": "already_applied", "source": "received", "dest": "done"},
    {"trigger": "apply", "source": "applying", "dest": "applied"},
    {"trigger": "answer", "source": "applied", "dest": "done"},
]
TERMINAL = frozenset({"done"})
RECOVERY = {
    "received": RESUME,  # nothing happened yet
    "applying": RESUME,  # the password may or may not be set: setting the same one again is harmless
    "applied": RESUME,  # set and journaled: only the reply is left
}


@dataclasses.dataclass(frozen=True)
class PasswordData:
    """What ``unlock`` found: the exchange whose secret decrypts the ciphertext, and how."""

    #: The exchange's id; None for a command journaled before working data (it used the latest exchange).
    exchange: int | None = None
    derivation: str = ""
    #: The account whose password is set.
    user: str = ""


# The earlier agents' wording, which operators' tooling recognises.
BAD_BASE64 = "Couldn't decode base64 data"
NO_EXCHANGE = "Password without key exchange"
INVALID = "Invalid password data received"


class _Verdict(NamedTuple):
    """What giving up found: whether the password is in place (None: unknown, and ``why``)."""

    in_place: bool | None
    why: str = ""
    derivation: str = ""
    #: The ciphertext's digest, recorded with the exchange it consumes.
    ciphertext: str = ""


class Password(Command):
    NAME = "password"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    Data = PasswordData
    SECRET_VALUE = True
    NEEDS = frozenset({"accounts"})

    def on_enter_received(self, event: Event) -> None:
        ciphertext = self._ciphertext()
        digest = hashlib.sha256(ciphertext).hexdigest()
        exchange = exchanges.latest(self.ctx.journal)
        if exchange is None:
            raise CommandFailed("500", f"{NO_EXCHANGE}: send keyinit first")
        if exchange.state == "consumed" and exchange.applied_digest == digest:
            self.finish("already_applied", "0", "", detail={"exchange": exchange.id, "ciphertext": digest[:16],
                                                            "applied_by": exchange.applied_by})
            return
        if exchanges.expired(self.ctx.journal, exchange):
            self.finish("fail", "500", f"{NO_EXCHANGE}: the key exchange expired; send keyinit again",
                        detail={"error": "exchange_expired", "exchange": exchange.id},
                        records=exchanges.expires(exchange.id))
            return
        if exchange.state != "open":
            reason = {"consumed": "its password was already set", "expired": "it expired"}.get(exchange.state,
                                                                                             exchange.state)
            raise CommandFailed("500", f"{NO_EXCHANGE}: the last key exchange is closed ({reason}); "
                                       "send keyinit again")
        _password, derivation = self._decrypt(ciphertext, exchange)
        user = self._user()
        self.advance("unlock", detail={"exchange": exchange.id, "derivation": derivation,
                                       "ciphertext": digest[:16], "user": user},
                     data=PasswordData(exchange.id, derivation, user))

    def on_enter_applying(self, event: Event) -> None:
        ciphertext = self._ciphertext()
        data: PasswordData = self.data
        exchange = self._unlocking_exchange(data)
        if exchange is None or not exchange.open:
            raise CommandFailed("500", f"{NO_EXCHANGE}: the key exchange was closed while the password was "
                                       "being set; send keyinit again")
        password, derivation = self._decrypt(ciphertext, exchange)
        accounts = self.ctx.ports.require("accounts")
        user = data.user or self._user()
        try:
            accounts.set_password(user, password)
        except PlatformError as exc:
            raise CommandFailed("500", f"Could not set the password of {user!r}: {exc}") from None
        digest = hashlib.sha256(ciphertext).hexdigest()
        self.advance("apply", detail={"exchange": exchange.id, "derivation": derivation, "user": user},
                     records=exchanges.consumes(exchange.id, digest, derivation))

    def on_enter_applied(self, event: Event) -> None:
        self.finish("answer", "0", "")

    # -- giving up after a crash loop -----------------------------------------------------------------

    def on_give_up(self, attempts: int) -> None:
        if self.state == "applied":  # set and journaled before the crashes: only the reply was left
            self.finish("answer", "0", "", detail={"attempts": attempts})
            return
        data: PasswordData = self.data
        exchange = self._unlocking_exchange(data)
        open_exchange = exchange if exchange is not None and exchange.open else None
        user = data.user or self._user()
        if self.state == "received":  # applying, where the password is set, was never entered
            verdict = _Verdict(False)
        elif open_exchange is None:
            verdict = _Verdict(None, "its key exchange is closed")
        else:
            verdict = self._in_place(user, open_exchange)
            if verdict.in_place:
                # The tool finished before the last crash: journal that it is applied, which closes the
                # exchange; entering ``applied`` then answers "0" as usual.
                self.advance("apply", detail={"exchange": open_exchange.id, "derivation": verdict.derivation,
                                              "user": user, "checked_after": attempts},
                             records=exchanges.consumes(open_exchange.id, verdict.ciphertext, verdict.derivation))
                return
        if verdict.in_place is False:
            outcome = f"the password of {user!r} was not set"
        else:
            outcome = f"whether the password of {user!r} was set cannot be checked ({verdict.why})"
        self.finish("fail", "500", f"{self.interrupted(attempts)}; {outcome}; send keyinit and password again",
                    detail={"error": "crash_loop", "attempts": attempts, "password_set": verdict.in_place},
                    records=None if open_exchange is None else exchanges.abandons(open_exchange.id))

    def _in_place(self, user: str, exchange: Exchange) -> _Verdict:
        """Whether the requested password is ``user``'s now, according to the platform."""
        try:
            ciphertext = self._ciphertext()
            password, derivation = self._decrypt(ciphertext, exchange)
        except CommandError:  # withdrawn by the host, so the password cannot be known any more
            return _Verdict(None, "the request is no longer readable")
        accounts = self.ctx.ports.accounts
        if accounts is None:
            return _Verdict(None, "this agent has no accounts backend")
        try:
            in_place = accounts.password_is(user, password)
        except PlatformError as exc:
            return _Verdict(None, str(exc))
        if in_place is None:
            return _Verdict(None, "this system cannot compare passwords")
        return _Verdict(in_place, derivation=derivation, ciphertext=hashlib.sha256(ciphertext).hexdigest())

    # -- helpers --------------------------------------------------------------------------------------

    def _unlocking_exchange(self, data: PasswordData) -> Exchange | None:
        """The exchange ``unlock`` journaled (the latest one, for a command journaled before working data)."""
        if data.exchange is None:
            return exchanges.latest(self.ctx.journal)
        return exchanges.get(self.ctx.journal, data.exchange)

    def _ciphertext(self) -> bytes:
        try:
            return crypto.decode_ciphertext(self.request_value())
        except (binascii.Error, ValueError):
            raise CommandFailed("500", BAD_BASE64) from None

    def _decrypt(self, ciphertext: bytes, exchange: Exchange) -> tuple[str, str]:
        if exchange.secret is None:
            raise CommandFailed("500", f"{NO_EXCHANGE}: send keyinit first")
        try:
            return crypto.decrypt_password(ciphertext, exchange.secret)
        except crypto.DecryptionError as exc:
            raise CommandFailed("500", f"{INVALID}: {exc}") from None

    def _user(self) -> str:
        if self.ctx.config.password_user:
            return self.ctx.config.password_user
        accounts = self.ctx.ports.accounts
        if accounts is None:
            return "root"
        try:
            return accounts.default_user()
        except PlatformError as exc:
            raise CommandFailed("500", f"Could not find the account to set: {exc}") from None

    # -- the command type's timer: key exchanges expire ------------------------------------------------

    @classmethod
    def next_due(cls, journal: Journal) -> float | None:
        return exchanges.next_expiry(journal)

    @classmethod
    def when_due(cls, journal: Journal, now: float) -> None:
        """Wipe the secret of every key exchange whose lifetime is over. Lifetimes run on the monotonic
        clock: setting the wall clock back must not keep a secret longer."""
        expired = exchanges.expire(journal, now)
        if expired:
            log.info("%d key exchange(s) expired; their secrets were wiped", expired)
