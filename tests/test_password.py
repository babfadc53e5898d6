"""keyinit + password over the real xenstored, with the real chpasswd acting in a throw-away root.

Covers nova's flow with both key derivations, every error reply, a re-sent ciphertext, expiry, SIGKILL at
every state of both machines, and the reboot scenario (new domain path, the same ciphertext re-sent).
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent import crypto
from agent.host import Host
from agent.journal import Journal, exchanges
from agent.journal.engine import BUSY_TIMEOUT_MS
from agent.protocol import GUEST_DIR, HOST_DIR, encode
from agent.sandbox import Xenstored, create_domain, destroy_domain
from agent.xenstore import XenStore
from tests.conftest import DOMID, exchange_state, holding, open_journal, wait_for
from tests.system import password_matches, runs, shadow_hash

PASSWORD = "N3w-Admin pass:word"
NO_EXCHANGE = "Password without key exchange"


def details(journal: Journal, command_id: int) -> list[dict[str, Any]]:
    return [json.loads(t.detail) for t in journal.transitions(command_id)]


@pytest.mark.parametrize("derivation", crypto.DERIVATIONS)
def test_password_is_set(run_agent, host: Host, system_root: Path, state_dir: Path, chpasswd_runs: Path,
                         derivation: str) -> None:
    """nova's keyinit + password sets the real password; the journal records the group and derivation."""
    run_agent()
    assert host.set_password(PASSWORD, derivation, timeout=20) == {"returncode": "0", "message": ""}
    assert password_matches(PASSWORD, shadow_hash(system_root, "root"))
    assert len(runs(chpasswd_runs)) == 1
    journal = open_journal(state_dir)
    keyinit, = journal.commands(name="keyinit")
    assert {"group_bits": 107, "group": "2^107-1"}.items() <= details(journal, keyinit.id)[1].items()
    password, = journal.commands(name="password")
    assert [t.dest for t in journal.transitions(password.id)] == ["received", "applying", "applied", "done",
                                                                   "done"]
    assert details(journal, password.id)[1]["derivation"] == derivation
    assert journal.verify().ok


def test_configured_account(run_agent, host: Host, system_root: Path) -> None:
    """[password] user picks the account; the others keep their passwords."""
    run_agent(password_user="cloud")
    assert host.set_password(PASSWORD, timeout=20)["returncode"] == "0"
    assert password_matches(PASSWORD, shadow_hash(system_root, "cloud"))
    assert shadow_hash(system_root, "root") == "*"


def test_platform_failure_is_a_clear_500(run_agent, host: Host, state_dir: Path) -> None:
    """chpasswd refusing (no such account) gives "500" naming the account and the tool's reason, no secret;
    the exchange stays open, so the host can retry once the account exists."""
    run_agent(password_user="ghost")
    reply = host.set_password(PASSWORD, timeout=20)
    assert reply["returncode"] == "500"
    assert reply["message"].startswith("Could not set the password of 'ghost': chpasswd failed with exit status 1:")
    assert PASSWORD not in reply["message"]
    exchange = exchanges.latest(open_journal(state_dir))
    assert exchange is not None and exchange.state == "open"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("password", crypto.encrypt_password(PASSWORD, "12345"), f"{NO_EXCHANGE}: send keyinit first"),
    ("password", "%%% not base64 %%%", "Couldn't decode base64 data"),
    ("password", 12345, "Couldn't decode base64 data"),
    ("keyinit", "not a number", "Invalid key exchange value: the host's public key must be a decimal number"),
    ("keyinit", "1", "Invalid key exchange value: the host's public key is out of range: it must be greater "
                     "than 1 and less than p-1 for the 107-bit group"),
    ("keyinit", str(crypto.PRIME - 1), "Invalid key exchange value: the host's public key is out of range: it "
                                       "must be greater than 1 and less than p-1 for the 107-bit group"),
])
def test_error_replies(run_agent, host: Host, name: str, value: Any, message: str) -> None:
    """Bad values get "500" with the protocol's wording, and nothing is set."""
    run_agent()
    assert host.call(name, value, timeout=20) == {"returncode": "500", "message": message}


def test_exchange_lifecycle(run_agent, host: Host, system_root: Path, chpasswd_runs: Path) -> None:
    """Wrong key and garbage are refused; a re-sent ciphertext is "0" without a second chpasswd; a new
    ciphertext after the exchange was used, or an old one replayed after a later exchange, is refused."""
    run_agent()
    secret = host.key_exchange(timeout=20)
    wrong_key = host.call("password", crypto.encrypt_password(PASSWORD, "424242"), timeout=20)
    assert wrong_key["returncode"] == "500"
    assert wrong_key["message"].startswith("Invalid password data received")
    garbage = host.call("password", base64.b64encode(b"\x01" * 32).decode(), timeout=20)
    assert garbage["message"].startswith("Invalid password data received")

    ciphertext = crypto.encrypt_password(PASSWORD, secret)
    assert host.call("password", ciphertext, timeout=20) == {"returncode": "0", "message": ""}
    assert host.call("password", ciphertext, timeout=20) == {"returncode": "0", "message": ""}
    assert len(runs(chpasswd_runs)) == 1, "a re-sent ciphertext was applied again"
    other = host.call("password", crypto.encrypt_password("another one", secret), timeout=20)
    assert other["message"] == f"{NO_EXCHANGE}: the last key exchange is closed (its password was already " \
                               "set); send keyinit again"

    assert host.set_password("second password", timeout=20)["returncode"] == "0"
    replayed = host.call("password", ciphertext, timeout=20)
    assert replayed["returncode"] == "500", "an old exchange's ciphertext was accepted"
    assert password_matches("second password", shadow_hash(system_root, "root"))
    assert len(runs(chpasswd_runs)) == 2


def test_expired_exchange_is_wiped_and_refused(run_agent, host: Host, state_dir: Path) -> None:
    """Once its lifetime is over the exchange's secret is wiped from the files, and a password is refused."""
    run_agent(exchange_lifetime=1)
    secret = host.key_exchange(timeout=20)
    assert holding(state_dir, secret), "the search cannot see the open exchange's secret"
    wait_for(lambda: exchange_state(state_dir) == "expired")
    # The checkpoint that takes the secret out of the files follows the commit that marks it expired.
    wait_for(lambda: not holding(state_dir, secret))
    reply = host.call("password", crypto.encrypt_password(PASSWORD, secret), timeout=20)
    assert reply == {"returncode": "500",
                     "message": f"{NO_EXCHANGE}: the last key exchange is closed (it expired); send keyinit again"}


def test_wipe_held_off_by_a_reader_runs_when_it_lets_go(run_agent, host: Host, state_dir: Path) -> None:
    """A reader's open snapshot neither holds back the reply (the checkpoint does not wait in the journal's
    10 s busy timeout) nor keeps the secret for long: once the reader ends, the agent's retry takes the
    secret out of the files without waiting for housekeeping."""
    run_agent(housekeeping_interval=3600)
    secret = host.key_exchange(timeout=20)
    reader = sqlite3.connect(state_dir / "journal.sqlite3")
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM commands").fetchone()
        reply = host.call("password", crypto.encrypt_password(PASSWORD, secret), timeout=BUSY_TIMEOUT_MS / 2000)
        assert reply["returncode"] == "0"
        assert holding(state_dir, secret), "the reader did not hold the checkpoint off"
    finally:
        reader.close()
    wait_for(lambda: not holding(state_dir, secret))


def test_secrets_never_reach_files_logs_or_argv(agent_process, host: Host, state_dir: Path,
                                                chpasswd_runs: Path) -> None:
    """The password, the ciphertext and the DH secret are absent from the journal's files (database, WAL,
    SHM), the agent's log and chpasswd's command line; the secret is present only while the exchange is
    open, which shows that the search sees it."""
    agent = agent_process().start()
    secret = host.key_exchange(timeout=20)
    assert holding(state_dir, secret), "the search cannot see it"
    ciphertext = crypto.encrypt_password(PASSWORD, secret)
    assert host.call("password", ciphertext, timeout=20)["returncode"] == "0"
    wait_for(lambda: open_journal(state_dir).commands(name="password")[0].replied_at)

    def assert_absent(where: str, data: bytes) -> None:
        for name, value in (("password", PASSWORD), ("ciphertext", ciphertext), ("secret", secret)):
            assert value.encode() not in data, f"the {name} is in {where}"

    for path in state_dir.iterdir():  # while the agent runs: WAL and SHM included
        assert_absent(path.name, path.read_bytes())
    agent.stop()
    for path in state_dir.iterdir():
        assert_absent(path.name, path.read_bytes())
    assert_absent("the agent log", agent.log().encode())
    assert_absent("chpasswd's argv", "\n".join(runs(chpasswd_runs)).encode())


STATE_POINTS = [
    ("keyinit", "after_received"), ("keyinit", "enter:exchanged"), ("keyinit", "enter:done"),
    ("password", "after_received"), ("password", "enter:applying"), ("password", "enter:applied"),
    ("password", "enter:done"), ("password", "after_reply_written"),
]


@pytest.mark.parametrize(("machine", "point"), STATE_POINTS)
def test_sigkill_at_every_state(agent_process, guest: XenStore, host: Host, system_root: Path, state_dir: Path,
                                chpasswd_runs: Path, machine: str, point: str) -> None:
    """Killed at ``point`` and restarted: one reply, the password applied exactly once, the journal intact."""
    private = crypto.private_key()
    if machine == "keyinit":
        guest.write(f"{HOST_DIR}/req", encode({"name": "keyinit", "value": str(crypto.public_key(private))}))
    else:
        first = agent_process().start()
        secret = host.key_exchange(timeout=20)
        first.stop()
        guest.write(f"{HOST_DIR}/req", encode({"name": "password",
                                               "value": crypto.encrypt_password(PASSWORD, secret)}))
    assert agent_process("--crash-at", point).start().wait() == -signal.SIGKILL
    agent_process().start()

    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/req")))
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/req"))
    if machine == "keyinit":
        assert reply["returncode"] == "D0"
        secret = crypto.shared_secret(private, int(reply["message"]))
        assert host.call("password", crypto.encrypt_password(PASSWORD, secret), timeout=20)["returncode"] == "0"
    else:
        assert reply == {"returncode": "0", "message": ""}
    assert password_matches(PASSWORD, shadow_hash(system_root, "root"))
    assert len(runs(chpasswd_runs)) == 1, f"chpasswd ran {len(runs(chpasswd_runs))} times"
    journal = open_journal(state_dir)
    command, = journal.commands(name=machine)
    triggers = [t.trigger for t in journal.transitions(command.id)]
    assert triggers.count("exchange" if machine == "keyinit" else "apply") == 1, triggers
    assert len(exchanges.every(journal)) == 1
    assert journal.verify().ok


def reboot(xenstored: Xenstored, agent: Any) -> str:
    """The guest reboots: the agent dies with it, the old domain's tree goes, the guest gets a new domid."""
    if agent.process.poll() is None:
        agent.process.kill()
        agent.wait()
    destroy_domain(xenstored.address, DOMID)
    return create_domain(xenstored.address, DOMID + 1)


def test_reboot_between_keyinit_and_password(agent_process, xenstored: Xenstored, host: Host,
                                             system_root: Path, state_dir: Path) -> None:
    """nova's retry after a reboot, the same ciphertext under a new id and domain path, sets the password."""
    agent = agent_process().start()
    ciphertext = crypto.encrypt_password(PASSWORD, host.key_exchange(timeout=20))
    new_domain = reboot(xenstored, agent)
    agent_process(domain_path=new_domain).start()
    with XenStore(xenstored.address, new_domain) as xs:
        assert Host(xs, poll_interval=0.01).call("password", ciphertext, timeout=20) == {"returncode": "0",
                                                                                          "message": ""}
    assert password_matches(PASSWORD, shadow_hash(system_root, "root"))
    password, = open_journal(state_dir).commands(name="password")
    assert password.domain_path == new_domain


def test_reboot_after_the_password_was_set(agent_process, xenstored: Xenstored, guest: XenStore, host: Host,
                                           system_root: Path, state_dir: Path, chpasswd_runs: Path) -> None:
    """Set, then the guest reboots before the reply: the re-sent ciphertext is answered "0", not re-applied."""
    agent = agent_process().start()
    ciphertext = crypto.encrypt_password(PASSWORD, host.key_exchange(timeout=20))
    agent.stop()
    guest.write(f"{HOST_DIR}/before-reboot", encode({"name": "password", "value": ciphertext}))
    crashed = agent_process("--crash-at", "enter:applied").start()
    assert crashed.wait() == -signal.SIGKILL
    new_domain = reboot(xenstored, crashed)
    agent_process(domain_path=new_domain).start()
    with XenStore(xenstored.address, new_domain) as xs:
        assert Host(xs, poll_interval=0.01).call("password", ciphertext, timeout=20) == {"returncode": "0",
                                                                                          "message": ""}
    assert len(runs(chpasswd_runs)) == 1
    assert password_matches(PASSWORD, shadow_hash(system_root, "root"))
    journal = open_journal(state_dir)
    retry, first = journal.commands(name="password")
    assert (first.state, retry.state) == ("done", "done")
    assert [t.trigger for t in journal.transitions(retry.id)] [:2] == ["receive", "already_applied"]


def test_expiry_wakes_the_idle_agent(run_agent, host: Host, state_dir: Path) -> None:
    """With no request arriving and housekeeping an hour away, the agent still wakes at the exchange's expiry:
    the exchange is marked expired and its secret leaves the journal's files."""
    run_agent(exchange_lifetime=2, housekeeping_interval=3600)
    secret = host.key_exchange(timeout=20)
    assert holding(state_dir, secret), "the search cannot see the open exchange's secret"
    wait_for(lambda: exchange_state(state_dir) == "expired")
    wait_for(lambda: not holding(state_dir, secret))
    assert [c.name for c in open_journal(state_dir).commands()] == ["keyinit"], "a request woke the agent"


def stalling_chpasswd(directory: Path, sets_first: bool) -> Path:
    """A chpasswd that stalls (as a hung PAM module would) after setting the password, or before it, and
    then sets it unless it is killed first."""
    directory.mkdir()
    tool = directory / "chpasswd"
    if sets_first:
        body = f'/usr/sbin/chpasswd "$@"\necho $$ >> "{directory}/stalled"\nexec sleep 60\n'
    else:
        body = (f'IFS= read -r line\necho $$ >> "{directory}/stalled"\nsleep 60\n'
                'printf "%s\\n" "$line" | /usr/sbin/chpasswd "$@"\n')
    tool.write_text(f"#!/bin/sh\n{body}")
    tool.chmod(0o755)
    return directory


@pytest.mark.parametrize("sets_first", [True, False], ids=["set-then-killed", "killed-before-set"])
def test_giving_up_after_a_crash_loop_tells_the_truth(agent_process, guest: XenStore, host: Host,
                                                      system_root: Path, state_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, sets_first: bool) -> None:
    """SIGKILLed three times while chpasswd runs (which dies with it, so it cannot set the password later), the
    agent gives up; its reply says whether the requested password is in place, and the secret is wiped."""
    tools = stalling_chpasswd(tmp_path / "bin", sets_first)
    monkeypatch.setenv("PATH", f"{tools}:/usr/sbin:/usr/bin:/sbin:/bin")
    first = agent_process().start()
    secret = host.key_exchange(timeout=20)
    first.stop()
    guest.write(f"{HOST_DIR}/req", encode({"name": "password", "value": crypto.encrypt_password(PASSWORD, secret)}))
    for attempt in range(1, 4):
        agent = agent_process("--max-attempts", "3").start()
        wait_for(lambda a=attempt: len((tools / "stalled").read_text().split()) == a if (tools / "stalled").exists()
                 else False)
        agent.process.send_signal(signal.SIGKILL)
        agent.wait()
    for pid in (tools / "stalled").read_text().split():
        wait_for(lambda p=int(pid): not Path(f"/proc/{p}").exists() or " Z " in Path(f"/proc/{p}/stat").read_text(),
                 timeout=10)
    assert password_matches(PASSWORD, shadow_hash(system_root, "root")) is sets_first

    agent_process("--max-attempts", "3").start()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/req")))
    if sets_first:
        assert reply == {"returncode": "0", "message": ""}
    else:
        assert reply == {"returncode": "500", "message": "Agent command 'password' was interrupted 3 times; the "
                                                         "password of 'root' was not set; send keyinit and "
                                                         "password again"}
    assert exchange_state(state_dir) == ("consumed" if sets_first else "abandoned")
    wait_for(lambda: not holding(state_dir, secret))
    assert len((tools / "stalled").read_text().split()) == 3, "chpasswd ran again after the agent gave up"
    journal = open_journal(state_dir)
    command, = journal.commands(name="password")
    assert (command.state, command.attempts) == (("done", 4) if sets_first else ("failed", 4))
    assert journal.verify().ok
