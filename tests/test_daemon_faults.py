"""No request can stop the agent: hostile bodies, defects met while reading one, requests that kill the
process before they are journaled, ids too long to answer, nodes below a request, rewritten requests."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import pytest

from agent import __version__, crypto, protocol
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR, encode
from agent.xenstore import XenStore
from tests.conftest import open_journal, wait_for
from tests.system import password_matches, shadow_hash

#: Each of these stopped the agent, and then every restart, before it was journaled.
POISON = [
    pytest.param("[" * 1000 + "]" * 1000, "Request is malformed: nested deeper than 32 levels", id="deep-array"),
    pytest.param('{"a":' * 600 + "1" + "}" * 600, "Request is malformed: nested deeper than 32 levels",
                 id="deep-object"),
    pytest.param('{"name":"\\ud800","value":""}',
                 "Request is malformed: text is not valid Unicode (a lone surrogate)", id="surrogate-name"),
    pytest.param('{"name":"version","value":{"\\udfff":["\\ud800"]}}',
                 "Request is malformed: text is not valid Unicode (a lone surrogate)", id="surrogate-value"),
]


@pytest.mark.parametrize(("body", "message"), POISON)
def test_poison_bodies_are_answered_journaled_and_removed(run_agent, host: Host, guest: XenStore,
                                                          state_dir: Path, body: str, message: str) -> None:
    """A hostile body gets its 500, is journaled as a failed rejection and removed; the agent goes on."""
    agent = run_agent()
    assert host.raw(body, timeout=10, request_id="poison") == {"returncode": "500", "message": message}
    assert host.call("version", "agent", timeout=10) == {"returncode": "0", "message": __version__}
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/poison"))
    journal = open_journal(state_dir)
    command = journal.find_request("poison")
    assert command is not None
    assert (command.machine, command.state, command.reply_code, command.name) == ("rejected", "failed", "500", None)
    assert journal.verify().ok
    assert agent.thread.is_alive() and not agent.errors


def test_poison_waiting_at_start_does_not_stop_the_agent(agent_process, guest: XenStore, host: Host) -> None:
    """Poison requests already waiting when the agent starts (the start-up scan reads them first) are answered,
    and the agent process keeps serving the requests behind them."""
    for number, param in enumerate(POISON):
        guest.write(f"{HOST_DIR}/poison-{number}", param.values[0])
    guest.write(f"{HOST_DIR}/zz-behind", encode({"name": "version", "value": "agent"}))
    agent = agent_process().start()
    for number, param in enumerate(POISON):
        reply = json.loads(wait_for(lambda n=number: guest.read(f"{GUEST_DIR}/poison-{n}")))
        assert reply == {"returncode": "500", "message": param.values[1]}
    assert json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/zz-behind")))["returncode"] == "0"
    assert host.call("version", "agent", timeout=10)["returncode"] == "0"
    assert agent.process is not None and agent.process.poll() is None
    assert "Traceback" not in agent.log()


def test_a_defect_while_reading_one_request_fails_only_that_request(run_agent, host: Host, state_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception while a request is read is contained: that request is journaled as failed with
    a generic reply naming no internals, the log says where it happened without its text, the agent goes on."""
    real_parse = protocol.parse

    def broken(request_id: str, body: bytes) -> protocol.Request:
        if b"boom" in body:
            raise TypeError("internal text that could quote the request: boom")
        return real_parse(request_id, body)

    monkeypatch.setattr("agent.daemon.protocol.parse", broken)
    agent = run_agent()
    reply = host.call("version", "boom", timeout=10)
    assert reply == {"returncode": "500",
                     "message": "Agent error while reading the request (TypeError); see the agent's log"}
    assert host.call("version", "agent", timeout=10)["returncode"] == "0"
    failed, = [c for c in open_journal(state_dir).commands() if c.reply_code == "500"]
    assert (failed.machine, failed.state, failed.name) == ("rejected", "failed", None)
    assert "could quote the request" not in caplog.text
    assert "TypeError at test_daemon_faults.py" in caplog.text
    assert agent.thread.is_alive() and not agent.errors


def test_a_request_that_kills_the_agent_before_it_is_journaled(agent_process, guest: XenStore,
                                                               state_dir: Path) -> None:
    """A request that stops the process before it is journaled, max_attempts times in a row, is answered
    unread instead of stopping every start, also when that answer itself is interrupted."""
    guest.write(f"{HOST_DIR}/fatal", encode({"name": "version", "value": "agent"}))
    for _ in range(2):
        assert agent_process("--crash-at", "before_received", "--max-attempts", "2").start().wait() == \
            -signal.SIGKILL
    assert open_journal(state_dir).commands() == [], "the crashes happened before the request was journaled"
    # Killed once more just after the rejection is journaled: the recovery answers with the journaled reason
    # and does not read the fatal body again.
    assert agent_process("--crash-at", "after_received", "--max-attempts", "2").start().wait() == -signal.SIGKILL
    agent_process("--max-attempts", "2").start()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/fatal")))
    assert reply == {"returncode": "500", "message": "Request stopped the agent 2 times before it could be "
                                                     "journaled; not handling it again"}
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/fatal"))
    command, = open_journal(state_dir).commands()
    assert (command.machine, command.state) == ("rejected", "failed")


def test_a_rejection_interrupted_after_it_was_journaled_keeps_its_reason(agent_process, guest: XenStore) -> None:
    """A poison body whose rejection was journaled when the agent died is answered with that rejection."""
    guest.write(f"{HOST_DIR}/poison", '{"name":"\\ud800","value":""}')
    assert agent_process("--crash-at", "after_received").start().wait() == -signal.SIGKILL
    agent_process().start()
    assert json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/poison"))) == {
        "returncode": "500", "message": "Request is malformed: text is not valid Unicode (a lone surrogate)"}


def test_a_failure_after_a_request_was_journaled_does_not_journal_it_again(
        run_agent, host: Host, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect in what follows a request's handling (here the on-the-spot pruning of a flood) neither
    journals the request twice nor stops the agent: each request is one command, answered once."""
    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("pruning failed")

    monkeypatch.setattr("agent.journal.retention.prune", broken)
    agent = run_agent(max_commands=1, housekeeping_interval=3600)
    for _ in range(3):
        assert host.call("version", "agent", timeout=10)["returncode"] == "0"
    commands = open_journal(state_dir).commands()
    assert [(c.machine, c.state) for c in commands] == [("version", "done")] * 3
    assert agent.thread.is_alive() and not agent.errors


def test_a_request_id_too_long_to_answer(run_agent, guest: XenStore, host: Host, state_dir: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """An id whose reply path would pass XenStore's limit is not run: it is journaled as rejected and
    removed, with one warning, instead of an error every few seconds forever."""
    run_agent(housekeeping_interval=0.2)
    request_id = "a" * (protocol.MAX_RELATIVE_PATH - len(HOST_DIR) - 1)  # its request path just fits
    guest.write(f"{HOST_DIR}/{request_id}", encode({"name": "version", "value": "agent"}))
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/{request_id}"))
    command = open_journal(state_dir).find_request(request_id)
    assert command is not None
    assert (command.machine, command.state, command.reply_message) == ("rejected", "failed", protocol.UNANSWERABLE)
    wait_for(lambda: open_journal(state_dir).find_request(request_id).replied_at)
    # Housekeeping runs every 0.2 s: several passes go by, and the request is not met again.
    for _ in range(3):
        assert host.call("version", "agent", timeout=10)["returncode"] == "0"
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in problems] == [
        f"request id {request_id[:64]}... is too long for its reply path; removing the request unanswered"]


def test_a_request_with_nodes_below_it_is_handled_at_once(run_agent, guest: XenStore) -> None:
    """A host writing below a request id (data/host/<id>/<child>) gets its reply on the watch event, not at
    the next housekeeping scan minutes later; the node goes with its children."""
    run_agent(housekeeping_interval=3600)
    guest.write(f"{HOST_DIR}/parent/child", encode({"name": "version", "value": "agent"}))
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/parent"), timeout=10))
    assert reply == {"returncode": "500", "message": "Request is malformed"}
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/parent"))


def slow_chpasswd(directory: Path) -> Path:
    """A chpasswd that says it started, waits 2 s, then runs the real one."""
    directory.mkdir()
    tool = directory / "chpasswd"
    tool.write_text(f'#!/bin/sh\ntouch "{directory}/started"\nsleep 2\nexec /usr/sbin/chpasswd "$@"\n')
    tool.chmod(0o755)
    return directory


def test_a_request_rewritten_while_it_runs_is_answered_too(run_agent, guest: XenStore, host: Host,
                                                           system_root: Path, state_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The host rewrites a request id while its command runs: the new content is a new request. It is not
    deleted with the old one; both are journaled and answered, the new one last."""
    tools = slow_chpasswd(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tools}:/usr/sbin:/usr/bin:/sbin:/bin")
    run_agent()
    secret = host.key_exchange(timeout=20)
    guest.write(f"{HOST_DIR}/same", encode({"name": "password", "value": crypto.encrypt_password("Rewr1tten!",
                                                                                                  secret)}))
    wait_for(lambda: (tools / "started").exists())
    guest.write(f"{HOST_DIR}/same", encode({"name": "version", "value": "agent"}))
    wait_for(lambda: guest.read(f"{GUEST_DIR}/same") == encode({"returncode": "0", "message": __version__}).encode())
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/same"))
    journal = open_journal(state_dir)
    answered = [(c.name, c.reply_code) for c in journal.commands() if c.request_id == "same"]
    assert answered == [("version", "0"), ("password", "0")]
    assert password_matches("Rewr1tten!", shadow_hash(system_root, "root"))
