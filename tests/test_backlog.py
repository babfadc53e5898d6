"""Requests that pile up while the agent is stopped are all answered once it starts."""

from __future__ import annotations

import json

from agent.protocol import GUEST_DIR, HOST_DIR
from agent.xenstore import XenStore
from tests.conftest import open_journal, wait_for

BACKLOG = 1000


def test_thousand_requests_written_while_stopped(agent_process, guest: XenStore, state_dir) -> None:
    """1,000 queued requests: each gets exactly one reply and one journaled command; none is lost."""
    for n in range(BACKLOG):
        name = "version" if n % 2 else "features"
        guest.write(f"{HOST_DIR}/req-{n:04d}", json.dumps({"name": name, "value": ""}))
    agent = agent_process().start()
    wait_for(lambda: guest.list(HOST_DIR) == [], timeout=120, interval=0.2)
    replies = guest.list(GUEST_DIR)
    assert sorted(replies) == [f"req-{n:04d}" for n in range(BACKLOG)]
    for request_id in replies[::97]:
        expected = "0"
        assert json.loads(guest.read(f"{GUEST_DIR}/{request_id}") or b"{}")["returncode"] == expected
    agent.stop()
    journal = open_journal(state_dir)
    commands = journal.commands()
    assert len(commands) == BACKLOG
    assert len({c.request_id for c in commands}) == BACKLOG
    assert all(c.state == "done" and c.replied_at for c in commands)
