"""The agent process's life: one agent per journal, signals, and clocks that jump under it."""

from __future__ import annotations

import glob
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import __version__, notify, status
from agent.cli.status import NOT_READY, NOT_RUNNING
from agent.host import Host
from agent.protocol import GUEST_DIR
from agent.sandbox import Xenstored, create_domain
from agent.xenstore import XenStore
from tests import fuzzing
from tests.conftest import (
    DOMID,
    STATE_DIR,
    AgentProcess,
    Service,
    exchange_state,
    holding,
    open_journal,
    wait_for,
)


def test_a_second_agent_on_the_same_journal_exits(agent_process, host: Host, state_dir: Path) -> None:
    """Two agents on one state directory would run requests twice: the second exits at once with status 11,
    naming the first; the first goes on serving alone."""
    first = agent_process().start()
    assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    second = agent_process().start()
    assert second.wait() == 11
    assert f"another openstack-agent agent (pid {first.process.pid}) is using the state directory" in second.log()
    for _ in range(3):
        assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    assert len(open_journal(state_dir).commands()) == 4
    assert first.process.poll() is None


def test_sighup_reopens_the_log_and_reloads_the_configuration(agent_process, host: Host,
                                                               tmp_path: Path) -> None:
    """After logrotate renames the log and sends SIGHUP, the agent writes to a new file at the configured
    path and takes on the file's reloadable keys; keys that need a restart are named; a broken file is
    refused and the agent keeps what it had."""
    config, log_file = tmp_path / "agent.toml", tmp_path / "agent-file.log"
    config.write_text("[daemon]\nhousekeeping_interval = 300\n")
    agent = agent_process("--config", str(config), "--log-file", str(log_file)).start()
    assert host.call("features", "", timeout=20)["returncode"] == "0"
    log_file.rename(tmp_path / "agent-file.log.1")
    config.write_text('[policy]\ndeny = ["features"]\n[xenstore]\ntimeout = 5.0\n')
    agent.process.send_signal(signal.SIGHUP)
    wait_for(lambda: log_file.exists() and "configuration reloaded: policy.deny changed" in log_file.read_text())
    assert "taken on at the next start: xenstore.timeout" in log_file.read_text()
    assert host.call("features", "", timeout=20) == {
        "returncode": "403", "message": "Agent command 'features' is refused by this agent's policy"}

    config.write_text("[policy]\nallow = 5\n")
    agent.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded, the agent keeps its current one" in log_file.read_text())
    assert host.call("features", "", timeout=20)["returncode"] == "403"
    assert agent.process.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2])
def test_user_signals_are_logged_and_ignored(agent_process, host: Host, sig: signal.Signals) -> None:
    """SIGUSR1 and SIGUSR2 would end the agent silently by default: they are logged and the agent serves on."""
    agent = agent_process().start()
    assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    agent.process.send_signal(sig)
    wait_for(lambda: f"{sig.name} received: it means nothing to the agent; ignored" in agent.log())
    assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    assert agent.process.poll() is None


# -- clocks --------------------------------------------------------------------------------------------

def faked_wall_clock(agent: AgentProcess, control: Path) -> AgentProcess:
    """Run the agent under libfaketime with its wall clock offset by what ``control`` says ("+100d", "-2h");
    the monotonic clock stays real, as on a guest whose time is set."""
    found = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    assert found, "libfaketime is missing: apt-get install faketime (scripts/bootstrap does)"
    library = found[0]
    control.write_text("+0\n")
    agent.env.update({"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(control), "FAKETIME_NO_CACHE": "1",
                      "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    return agent


def housekeeping_passes(agent: AgentProcess) -> int:
    return agent.log().count("housekeeping done")


def test_wall_clock_forward_keeps_the_audit_trail_and_the_replies(agent_process, host: Host, guest: XenStore,
                                                                  state_dir: Path, tmp_path: Path) -> None:
    """Wall clock +100 days: no finished command is pruned and no reply removed at the next housekeeping,
    since none is as old as the clocks that matter (the monotonic one, and the newest commands) say."""
    control = tmp_path / "faketime"
    agent = faked_wall_clock(agent_process("--housekeeping-interval", "0.3"), control).start()
    for _ in range(5):
        assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    control.write_text("+100d\n")
    passes = housekeeping_passes(agent)
    wait_for(lambda: housekeeping_passes(agent) >= passes + 3)
    journal = open_journal(state_dir)
    assert len(journal.commands()) == 5
    assert len(guest.list(GUEST_DIR)) == 5
    assert journal.verify().ok


def test_wall_clock_back_does_not_keep_a_secret(agent_process, host: Host, state_dir: Path,
                                                tmp_path: Path) -> None:
    """Wall clock -2 h after keyinit: the exchange still expires after its lifetime, by the monotonic clock,
    and its secret leaves the files."""
    control = tmp_path / "faketime"
    faked_wall_clock(agent_process("--exchange-lifetime", "2"), control).start()
    secret = host.key_exchange(timeout=20)
    control.write_text("-2h\n")
    assert holding(state_dir, secret)
    wait_for(lambda: exchange_state(state_dir) == "expired")
    wait_for(lambda: not holding(state_dir, secret))


def test_a_signal_storm_under_load_neither_hangs_nor_kills_the_agent(agent_process, guest: XenStore,
                                                                     host: Host) -> None:
    """SIGHUP every millisecond during a flood of requests (signal handlers that took locks deadlocked
    here): every request is answered, and SIGTERM still stops the agent cleanly."""
    agent = agent_process("--log-level", "warning").start()
    assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            agent.process.send_signal(signal.SIGHUP)
            time.sleep(0.001)

    sender = threading.Thread(target=storm)
    sender.start()
    try:
        result = fuzzing.flood(guest, [b'{"name": "version", "value": "agent"}'] * 3000, timeout=20)
    finally:
        stop.set()
        sender.join()
    assert (result.answered, dict(result.returncodes)) == (3000, {"0": 3000})
    agent.process.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0


# -- what status sees ----------------------------------------------------------------------------------

def test_the_start_line_names_the_version(agent_process, host: Host) -> None:
    """The agent's first line says which release starts."""
    agent = agent_process().start()
    assert host.call("version", "agent", timeout=20)["returncode"] == "0"
    assert f"openstack-agent {__version__} starting: journal " in agent.log()


def test_the_published_status_follows_the_agent(agent_process, xenstored: Xenstored, state_dir: Path,
                                                system_root: Path) -> None:
    """The agent publishes ready with its pid and version, reconnecting while xenstored is gone, connected
    again once it is back, and stopped at SIGTERM; status's exit code follows (0, 21, 0, 20)."""
    def status_code() -> int:
        return subprocess.run([sys.executable, "-m", "agent", "status", "--root", str(system_root),
                               "--state-dir", STATE_DIR], capture_output=True, check=False).returncode

    agent = agent_process().start()
    ready = wait_for(lambda: status.observe(state_dir).ready and status.observe(state_dir))
    assert (ready.pid, ready.live.version, ready.live.pid) == (agent.process.pid, __version__, agent.process.pid)
    assert status_code() == 0
    xenstored.stop()
    wait_for(lambda: status.observe(state_dir).state == "reconnecting")
    assert status_code() == NOT_READY
    xenstored.start()
    create_domain(xenstored.address, DOMID)
    wait_for(lambda: status.observe(state_dir).ready)
    assert status_code() == 0
    assert agent.stop() == 0
    stopped = status.observe(state_dir)
    assert (stopped.running, stopped.last.state, stopped.last.pid) == (False, "stopped", agent.process.pid)
    assert status_code() == NOT_RUNNING


def test_the_end_of_its_input_stops_an_agent_told_so(agent_process, state_dir: Path) -> None:
    """Under a supervisor with no signals to send (the Windows service's), closing the agent's input stops it
    as SIGTERM does: exit 0, the run recorded as stopped cleanly."""
    agent = agent_process()
    agent.env = {**agent.env, notify.STOP_ON_EOF_ENV: "1"}
    with agent.log_path.open("ab") as log:
        agent.process = subprocess.Popen(agent.args, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                         env=agent.env)
    wait_for(lambda: status.observe(state_dir).ready)
    assert agent.process.stdin is not None
    agent.process.stdin.close()
    assert agent.wait() == 0
    assert status.observe(state_dir).last.state == "stopped"
    assert "the supervisor closed the agent's input: shutting down" in agent.log()


def test_a_killed_agent_is_not_running_whatever_its_file_says(agent_process, state_dir: Path) -> None:
    """SIGKILL leaves the file saying ready; the free lock says not running, and the run did not stop cleanly."""
    agent = agent_process().start()
    wait_for(lambda: status.observe(state_dir).ready)
    agent.process.send_signal(signal.SIGKILL)
    agent.wait()
    seen = status.observe(state_dir)
    assert (seen.running, seen.state, seen.last.state) == (False, "not-running", "ready")


def test_the_supervisor_status_names_the_release(service: Service, host: Host, tmp_path: Path) -> None:
    """systemd's STATUS= line says which release the supervisor runs."""
    path = tmp_path / "systemd-notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(30)
    service.env["NOTIFY_SOCKET"] = str(path)
    service.start()
    messages: list[str] = []
    while "READY=1" not in messages:
        messages.extend(listener.recv(4096).decode().splitlines())
    listener.close()
    assert f"STATUS=supervising openstack-agent {__version__}" in messages
