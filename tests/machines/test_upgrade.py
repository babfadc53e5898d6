"""A journal written by the previous release, holding an unfinished command of every type, is upgraded at
start and every command finishes on the new machines (working data read from where that release kept it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent import __version__, crypto
from agent.config import from_overrides
from agent.errors import RequestRejected
from agent.journal import Journal, exchanges
from agent.journal.engine import DATABASE_NAME
from agent.machines import REGISTRY, Context
from agent.platform.linux import Linux
from agent.ports import Ports
from agent.protocol import Request
from agent.sandbox import make_guest_root
from tests.system import password_matches, shadow_hash

#: Written by the release before working data (schema 0004), see ``legacy_0004.sql``: the shared secret of
#: its open exchange, and the password the host encrypts under it.
SECRET = "123456789"
PASSWORD = "Upgraded-Pass-1"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with sqlite3.connect(state / DATABASE_NAME) as conn:
        conn.executescript(Path(__file__).parents[1].joinpath("journal", "legacy_0004.sql").read_text())
    return Journal.open(state)


def request(record_machine: str, value: object) -> Request:
    return Request(f"{record_machine}-1", record_machine, value, "0" * 64)


def test_every_unfinished_command_of_the_previous_schema_finishes(journal: Journal, tmp_path: Path) -> None:
    """Each command type, left mid-way by the previous release, runs to a terminal state with the reply its
    state calls for, and the upgraded journal verifies before and after."""
    assert journal.verify().ok
    root = make_guest_root(tmp_path / "root")
    config = from_overrides(root=str(root))
    values = {
        "version": "agent",
        "features": "",
        "keyinit": "12345",
        "password": crypto.encrypt_password(PASSWORD, SECRET, "sha256"),
        "agentupdate": "http://127.0.0.1:9/b.tar.gz," + "0" * 32,
    }
    unfinished = journal.unfinished()
    # Every command type that release had.
    assert sorted(r.machine for r in unfinished) == sorted([*values, "rejected"])
    assert all(r.data is None for r in unfinished)
    for record in unfinished:
        if record.machine == "rejected":
            req = Request(record.request_id, record.name, None, record.digest,
                          RequestRejected("404", "No such agent command 'bogus'"))
        else:
            req = request(record.machine, values[record.machine])
        ports = Ports(accounts=Linux(str(root)))
        command = REGISTRY[record.machine](record, Context(journal=journal, config=config, request=req, ports=ports,
                                                           offered=lambda: ["version"]))
        command.run(recovery=True)
        assert command.finished, record.machine
    replies = {r.machine: (r.state, r.reply) for r in journal.commands()}
    assert replies == {
        "version": ("done", {"returncode": "0", "message": __version__}),
        "features": ("done", {"returncode": "0", "message": "version"}),
        "keyinit": ("done", {"returncode": "D0", "message": "67890"}),
        "password": ("done", {"returncode": "0", "message": ""}),
        "agentupdate": ("rolled_back", {"returncode": "500", "message": (
            f"Update to openstack-agent 9.9.9 failed and was rolled back to {__version__}: the new release "
            "did not confirm itself healthy")}),
        "rejected": ("failed", {"returncode": "404", "message": "No such agent command 'bogus'"}),
    }
    assert password_matches(PASSWORD, shadow_hash(root, "root"))
    exchange = exchanges.latest(journal)
    assert exchange is not None and (exchange.state, exchange.secret) == ("consumed", None)
    assert journal.verify().ok
    update = next(r for r in journal.commands() if r.machine == "agentupdate")
    assert json.loads(journal.transitions(update.id)[-1].detail)["target"] == "9.9.9"
