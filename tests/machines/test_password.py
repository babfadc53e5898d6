"""keyinit and password machines, replayed step by step on a real journal and the real chpasswd."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from transitions import MachineError

from agent import crypto
from agent.config import from_overrides
from agent.journal import Journal, exchanges
from agent.machines.base import Command, Context, Event
from agent.machines.keyinit import KeyInit
from agent.machines.password import Password
from agent.platform.linux import Linux
from agent.ports import Ports
from agent.protocol import Request
from agent.sandbox import make_guest_root
from tests.system import password_matches, shadow_hash

PASSWORD = "Machine-Step-9"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path / "state")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_guest_root(tmp_path / "root")


def command(journal: Journal, root: Path, machine: type[Command], value: str,
            request_id: str = "r") -> Command:
    record = journal.receive(request_id, "", machine.NAME, machine.NAME, "0" * 64, None)
    ctx = Context(journal=journal, config=from_overrides(root=str(root)),
                  request=Request(request_id, machine.NAME, value, "0" * 64), ports=Ports(accounts=Linux(str(root))))
    return machine(record, ctx)


def exchange(journal: Journal, root: Path) -> str:
    """Run keyinit as the host would; return the shared secret the host computes."""
    private = crypto.private_key()
    keyinit = command(journal, root, KeyInit, str(crypto.public_key(private)), "k")
    keyinit.run()
    assert keyinit.record.reply_code == "D0"
    return crypto.shared_secret(private, int(keyinit.record.reply_message or "0"))


def test_keyinit_steps(journal: Journal, root: Path) -> None:
    """keyinit goes received -> exchanged -> done; the exchange is journaled open with the 107-bit group."""
    keyinit = command(journal, root, KeyInit, str(crypto.public_key(12345)))
    assert keyinit.state == "received"
    with pytest.raises(MachineError):
        keyinit.advance("answer")
    assert keyinit.state == "received", "an illegal event changed the state"
    assert [t.dest for t in journal.transitions(keyinit.record.id)] == ["received"]
    keyinit.run()
    assert keyinit.finished and keyinit.state == "done"
    assert [t.dest for t in journal.transitions(keyinit.record.id)] == ["received", "exchanged", "done"]
    opened = exchanges.opened_by(journal, keyinit.record.id)
    assert opened is not None
    assert (opened.state, opened.group_bits, opened.public_key) == ("open", 107, keyinit.record.reply_message)


def test_password_steps(journal: Journal, root: Path) -> None:
    """password goes received -> applying -> applied -> done, sets the password, and wipes the secret."""
    secret = exchange(journal, root)
    password = command(journal, root, Password, crypto.encrypt_password(PASSWORD, secret, "md5"))
    with pytest.raises(MachineError):
        password.advance("apply")
    assert password.state == "received"
    password.run()
    assert [t.dest for t in journal.transitions(password.record.id)] == ["received", "applying", "applied", "done"]
    assert (password.record.reply_code, password.record.reply_message) == ("0", "")
    assert password_matches(PASSWORD, shadow_hash(root, "root"))
    used = exchanges.latest(journal)
    assert used is not None
    assert (used.state, used.secret, used.derivation, used.applied_by) == ("consumed", None, "md5",
                                                                          password.record.id)


def test_recovery_in_applied_does_not_set_again(journal: Journal, root: Path) -> None:
    """A command journaled as applied replies "0" on recovery without running chpasswd again."""
    secret = exchange(journal, root)
    record = journal.receive("r", "", Password.NAME, Password.NAME, "0" * 64, None)
    value = crypto.encrypt_password(PASSWORD, secret)
    ctx = Context(journal=journal, config=from_overrides(root=str(root)),
                  request=Request("r", Password.NAME, value, "0" * 64), ports=Ports(accounts=Linux(str(root))))
    password = StopsWhenApplied(record, ctx)
    password.run()
    assert password.state == "applied"
    before = shadow_hash(root, "root")
    resumed = Password(journal.get(password.record.id), password.ctx)
    resumed.run(recovery=True)
    assert (resumed.state, resumed.record.reply_code) == ("done", "0")
    assert shadow_hash(root, "root") == before, "the password was set a second time"


class StopsWhenApplied(Password):
    """A password command whose process "dies" once the password is set and journaled."""

    def on_enter_applied(self, event: Event) -> None:
        self.wait(0)


def test_new_keyinit_replaces_and_wipes_the_old_exchange(journal: Journal, root: Path) -> None:
    """A second keyinit closes the first exchange as replaced, with its secret gone."""
    exchange(journal, root)
    exchange(journal, root)
    first, second = exchanges.every(journal)
    assert (first.state, first.secret) == ("replaced", None)
    assert second.state == "open" and second.secret is not None


def test_password_after_expiry_is_refused_and_wipes(journal: Journal, root: Path) -> None:
    """A password arriving after the exchange's lifetime (before the daemon's timer) is refused with a clear
    message, and the exchange is closed as expired with its secret wiped, in the same transaction."""
    private = crypto.private_key()
    keyinit = command(journal, root, KeyInit, str(crypto.public_key(private)), "k")
    keyinit.ctx = dataclasses.replace(keyinit.ctx, config=from_overrides(root=str(root), exchange_lifetime=0.001))
    keyinit.run()
    time.sleep(0.01)
    secret = crypto.shared_secret(private, int(keyinit.record.reply_message or "0"))
    password = command(journal, root, Password, crypto.encrypt_password(PASSWORD, secret))
    password.run()
    assert (password.state, password.record.reply_message) == (
        "failed", "Password without key exchange: the key exchange expired; send keyinit again")
    expired = exchanges.latest(journal)
    assert expired is not None and (expired.state, expired.secret) == ("expired", None)
    assert shadow_hash(root, "root") == "*"
