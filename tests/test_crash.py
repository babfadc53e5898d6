"""Real agent processes SIGKILLed at every step of the reply protocol, then restarted.

Each run proves: the command executed exactly once, exactly one reply reached data/guest, the request was
removed, and the journal is consistent (hash chains verify, the command is finished and delivered).
"""

from __future__ import annotations

import json
import signal

import pytest

from agent.config import FAULT_POINTS
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.xenstore import XenStore
from tests.conftest import open_journal, wait_for


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_sigkill_between_reply_protocol_steps(agent_process, guest: XenStore, state_dir, point: str) -> None:
    """A SIGKILL at ``point`` loses nothing and repeats nothing once the agent restarts."""
    guest.write(f"{HOST_DIR}/req-1", '{"name": "version", "value": "agent"}')
    crashed = agent_process("--crash-at", point).start()
    assert crashed.wait() == -signal.SIGKILL

    agent_process().start()
    reply = wait_for(lambda: guest.read(f"{GUEST_DIR}/req-1"))
    assert json.loads(reply)["returncode"] == "0"
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/req-1"))
    wait_for(lambda: open_journal(state_dir).commands()[0].replied_at)

    journal = open_journal(state_dir)
    commands = journal.commands()
    assert len(commands) == 1, "the request was journaled more than once"
    command = commands[0]
    triggers = [t.trigger for t in journal.transitions(command.id)]
    assert triggers.count("answer") == 1, f"executed more than once: {triggers}"
    assert (command.state, command.reply_code) == ("done", "0")
    assert guest.list(GUEST_DIR) == ["req-1"]
    assert journal.verify().ok


def test_crash_loop_is_stopped_after_max_attempts(agent_process, guest: XenStore, state_dir) -> None:
    """A command that kills the agent every time is failed with a clear reply instead of run forever."""
    guest.write(f"{HOST_DIR}/loop", '{"name": "version", "value": "agent"}')
    for _ in range(2):  # the first run and the one recovery allowed both die inside the machine
        assert agent_process("--crash-at", "in_machine", "--max-attempts", "2").start().wait() == \
            -signal.SIGKILL
    agent_process("--max-attempts", "2").start()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/loop")))
    assert reply == {"returncode": "500", "message": "Agent command 'version' was interrupted 2 times; "
                                                      "not retrying it, to stop a crash loop"}
    command = open_journal(state_dir).commands()[0]
    assert (command.state, command.attempts) == ("failed", 3)
