"""The agent over a real xenstored: every reply of the protocol, policy, re-sent requests, housekeeping."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from agent import __version__
from agent import daemon as daemon_module
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR, encode
from agent.xenstore import XenStore
from tests.conftest import open_journal, wait_for

REPLIES = [
    pytest.param('{"name": "version", "value": "agent"}', "0", __version__, id="version"),
    pytest.param('{"name": "features", "value": ""}', "0",
                 "version,features,keyinit,password,resetnetwork,agentupdate,injectfile,file_inject", id="features"),
    pytest.param('{"name": "reboot", "value": ""}', "404", "No such agent command 'reboot'", id="unknown"),
    pytest.param("not json at all", "500", "Request is malformed", id="not-json"),
    pytest.param('{"name": "version"', "500", "Request is malformed", id="truncated-json"),
    pytest.param('{"value": "agent"}', "500", "Request is missing 'name' key", id="no-name"),
    pytest.param('["version"]', "500", "Request is malformed: expected a JSON object, got list", id="array"),
    pytest.param('"version"', "500", "Request is malformed: expected a JSON object, got str", id="string"),
    pytest.param('{"name": 7}', "500", "Request is malformed: 'name' must be a string, got int", id="int-name"),
    pytest.param('{"name": null}', "500", "Request is malformed: 'name' must be a string, got NoneType",
                 id="null-name"),
    pytest.param('{"name": "\\u00e9t\\u00e9"}', "404", "No such agent command '\\xe9t\\xe9'", id="non-ascii"),
]


@pytest.mark.parametrize(("body", "returncode", "message"), REPLIES)
def test_reply(run_agent, host: Host, body: str, returncode: str, message: str) -> None:
    """Each kind of request gets exactly the reply the protocol prescribes, as a JSON object."""
    run_agent()
    assert host.raw(body, timeout=10) == {"returncode": returncode, "message": message}


def test_reply_to_undecodable_bytes(run_agent, guest: XenStore) -> None:
    """A body that is not UTF-8 (written raw, as a broken host could) is malformed, not a crash."""
    run_agent()
    guest._call("write", f"{HOST_DIR}/raw1", b"\x7f\x7f{")  # 7-bit, but not JSON
    reply = wait_for(lambda: guest.read(f"{GUEST_DIR}/raw1"))
    assert json.loads(reply) == {"returncode": "500", "message": "Request is malformed"}


def test_reply_values_are_json_objects_with_string_codes(run_agent, guest: XenStore, host: Host) -> None:
    """Every reply node holds a JSON object whose returncode is a string (nova compares strings)."""
    run_agent()
    for body in ('{"name": "version"}', "{", '{"name": "nope"}'):
        host.raw(body, timeout=10)
    for request_id in guest.list(GUEST_DIR):
        reply = json.loads(guest.read(f"{GUEST_DIR}/{request_id}") or b"")
        assert set(reply) == {"returncode", "message"}
        assert isinstance(reply["returncode"], str)
        assert isinstance(reply["message"], str)


def test_request_is_deleted_after_reply(run_agent, guest: XenStore, host: Host) -> None:
    """The agent removes data/host/<id> once it has answered; the host side never has to."""
    run_agent()
    host.call("version", "agent", timeout=10)
    wait_for(lambda: guest.list(HOST_DIR) == [])


def test_denied_command_is_refused_and_not_offered(run_agent, host: Host) -> None:
    """A command the policy denies gets a clear 403 and disappears from features."""
    run_agent(deny="version,password")
    assert host.call("version", "agent", timeout=10) == {
        "returncode": "403", "message": "Agent command 'version' is refused by this agent's policy"}
    assert host.call("features", "", timeout=10) == {
        "returncode": "0", "message": "features,keyinit,resetnetwork,agentupdate,injectfile,file_inject"}


def test_allow_list_limits_commands(run_agent, host: Host) -> None:
    """With an allow list, only those commands run and features lists only them."""
    run_agent(allow="features")
    assert host.call("features", "", timeout=10)["message"] == "features"
    assert host.call("version", "agent", timeout=10)["returncode"] == "403"


def test_every_request_is_journaled_with_its_path(run_agent, host: Host, state_dir: Path) -> None:
    """Each request, good or bad, becomes one command whose transitions end in its reply."""
    agent = run_agent()
    host.call("version", "agent", timeout=10)
    host.raw("{", timeout=10)
    agent.stop()
    journal = open_journal(state_dir)
    commands = journal.commands()
    assert [(c.name, c.machine, c.state, c.reply_code) for c in commands] == [
        (None, "rejected", "failed", "500"), ("version", "version", "done", "0")]
    version = commands[1]
    assert [(t.trigger, t.source, t.dest) for t in journal.transitions(version.id)] == [
        ("receive", None, "received"), ("answer", "received", "done"), ("deliver", "done", "done")]
    assert journal.verify().ok


def test_finished_request_written_again_is_answered_from_the_journal(
        run_agent, guest: XenStore, state_dir: Path) -> None:
    """The same request id and body again: the stored reply is rewritten and nothing runs again."""
    run_agent()
    body = '{"name": "version", "value": "agent"}'
    guest.write(f"{HOST_DIR}/again", body)
    wait_for(lambda: guest.read(f"{GUEST_DIR}/again"))
    guest.delete(f"{GUEST_DIR}/again")
    guest.write(f"{HOST_DIR}/again", body)
    reply = wait_for(lambda: guest.read(f"{GUEST_DIR}/again"))
    assert json.loads(reply)["returncode"] == "0"
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/again"))
    journal = open_journal(state_dir)
    commands = journal.commands()
    assert len(commands) == 1
    triggers = [t.trigger for t in journal.transitions(commands[0].id)]
    assert triggers.count("answer") == 1
    wait_for(lambda: [t.trigger for t in open_journal(state_dir).transitions(commands[0].id)].count("deliver")
             == 2)


def test_recycled_request_id_with_new_body_is_a_new_command(run_agent, guest: XenStore, state_dir: Path) -> None:
    """A host that reuses an id for a different request gets a fresh answer, not a stale one."""
    run_agent()
    guest.write(f"{HOST_DIR}/1", '{"name": "version"}')
    wait_for(lambda: guest.read(f"{GUEST_DIR}/1"))
    guest.write(f"{HOST_DIR}/1", '{"name": "features"}')
    wait_for(lambda: json.loads(guest.read(f"{GUEST_DIR}/1") or b"{}").get("message", "").startswith("version,"))
    assert [c.name for c in open_journal(state_dir).commands()] == ["features", "version"]


def test_old_replies_are_collected_and_others_left(run_agent, guest: XenStore, host: Host) -> None:
    """Replies older than reply_max_age are removed; nodes the agent did not write stay."""
    guest.write(f"{GUEST_DIR}/not-ours", '{"returncode": "0", "message": ""}')
    run_agent(reply_max_age=0.3, housekeeping_interval=0.2)
    request_id = str(uuid.uuid4())
    host.raw('{"name": "version"}', timeout=10, request_id=request_id)
    wait_for(lambda: not guest.exists(f"{GUEST_DIR}/{request_id}"))
    assert guest.exists(f"{GUEST_DIR}/not-ours")


def test_many_old_replies_are_collected_in_batches(run_agent, guest: XenStore, host: Host, state_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood's replies go COLLECT_PER_CALL at a time, each batch one transaction, until none is left."""
    monkeypatch.setattr(daemon_module, "COLLECT_PER_CALL", 3)
    run_agent(reply_max_age=0.3, housekeeping_interval=0.2)
    request_ids = [str(uuid.uuid4()) for _ in range(10)]
    for request_id in request_ids:
        host.raw('{"name": "version"}', timeout=10, request_id=request_id)
    wait_for(lambda: not any(guest.exists(f"{GUEST_DIR}/{request_id}") for request_id in request_ids))
    journal = open_journal(state_dir)

    def batches() -> Counter[str]:
        return Counter(t.at for command in journal.commands() for t in journal.transitions(command.id)
                       if t.trigger == "collect")

    # The replies leave XenStore before their batch is journaled: the last batch's commit may still be coming.
    wait_for(lambda: sum(batches().values()) == 10)
    assert max(batches().values()) <= 3 and len(batches()) >= 4


def test_replies_younger_than_max_age_stay(run_agent, guest: XenStore, host: Host) -> None:
    """Housekeeping leaves replies the host may still be waiting to read."""
    run_agent(housekeeping_interval=0.05)
    request_id = str(uuid.uuid4())
    host.raw('{"name": "version"}', timeout=10, request_id=request_id)
    time.sleep(0.5)  # several housekeeping rounds
    assert guest.exists(f"{GUEST_DIR}/{request_id}")


def test_commands_of_a_newer_release_are_left_alone(run_agent, host: Host, state_dir: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """After a rollback, commands whose machine or state only a newer release knows do not stop the older
    one: they are left as they are, and the agent serves."""
    journal = open_journal(state_dir)
    future = journal.receive("f", "", "frobnicate", "frobnicate", "0" * 64, None)
    newer_state = journal.transition(journal.receive("v", "", "version", "version", "1" * 64, None), "x", "weighing")
    run_agent()
    assert host.call("version", "agent", timeout=10)["message"] == __version__
    assert journal.get(future.id).state == "received"
    assert journal.get(newer_state.id).state == "weighing"
    assert "was journaled by a newer release; leaving it as it is" in caplog.text


def test_full_journal_disk_loses_nothing(tmpfs, run_agent, guest: XenStore, host: Host, state_dir: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """With the journal's file system full, a request is neither run nor dropped: the agent logs why, keeps
    serving, and answers it exactly once when space is back."""
    tmpfs(state_dir, "2m")
    agent = run_agent(housekeeping_interval=0.2)
    assert host.call("version", "agent", timeout=10)["returncode"] == "0"
    filler = state_dir / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
    guest.write(f"{HOST_DIR}/stuck", encode({"name": "version", "value": "agent"}))
    wait_for(lambda: "journal write failed" in caplog.text)
    assert guest.exists(f"{HOST_DIR}/stuck")
    assert guest.read(f"{GUEST_DIR}/stuck") is None

    filler.unlink()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/stuck")))
    assert reply == {"returncode": "0", "message": __version__}
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/stuck"))
    journal = open_journal(state_dir)
    assert [c.request_id for c in journal.commands()].count("stuck") == 1
    assert journal.verify().ok
    assert agent.thread.is_alive() and not agent.errors
