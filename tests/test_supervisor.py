"""The supervisor with a release known good: the notify protocol, restarts after a crash, a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from agent import __version__
from agent.host import Host
from tests.conftest import Service, open_journal, verdict_of, wait_for


def test_notify_ready_and_watchdog(service: Service, host: Host, tmp_path: Path) -> None:
    """Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the supervisor reports READY=1 once the agent serves,
    then pings WATCHDOG=1; the agent's own notifications stay with the supervisor."""
    path = tmp_path / "systemd-notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(30)
    service.env.update({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    service.start()
    messages: list[str] = []
    while "READY=1" not in messages or messages.count("WATCHDOG=1") < 3:
        messages.extend(listener.recv(4096).decode().splitlines())
    assert not any(m.startswith("X_OPENSTACK_AGENT") for m in messages)
    assert host.call("version", "agent", timeout=30)["message"] == __version__
    listener.close()


def test_crashed_agent_is_restarted(service: Service, host: Host, state_dir: Path) -> None:
    """An agent of a good release that dies is started again; the release stays good."""
    service.start()
    assert host.call("version", "agent", timeout=30)["returncode"] == "0"
    first = service.agent_pid()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: service.children() not in ([], [first]), timeout=30)
    assert host.call("version", "agent", timeout=30)["message"] == __version__
    verdict = verdict_of(open_journal(state_dir), __version__)
    assert verdict is not None and verdict[0] == "good"
    assert "restarting the agent in 0.5 s" in service.log()


def test_sigterm_stops_agent_and_supervisor(service: Service, host: Host) -> None:
    """SIGTERM to the supervisor stops its agent cleanly first, then itself, with status 0."""
    service.start()
    host.call("version", "agent", timeout=30)
    agent = service.agent_pid()
    assert service.process is not None
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(30) == 0
    assert not Path(f"/proc/{agent}").exists() or "Z" in Path(f"/proc/{agent}/stat").read_text().split()[2]
    assert "openstack-agent stopped" in service.log()


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie waiting for its reaper counts as exited)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_agent_dies_with_a_killed_supervisor(service: Service, host: Host) -> None:
    """SIGKILL of the supervisor takes its agent with it: no agent is left serving under PID 1 beside the one
    the next supervisor starts."""
    service.start()
    assert host.call("version", "agent", timeout=30)["returncode"] == "0"
    agent = service.agent_pid()
    assert service.process is not None
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(30)
    wait_for(lambda: gone(agent))


def test_an_agent_already_serving_the_directory_is_not_the_supervisors(service: Service, agent_process,
                                                                         host: Host) -> None:
    """A supervisor whose agent finds another agent serving the state directory stops with that agent's
    status (11) instead of restarting it forever; the agent that was there goes on serving."""
    other = agent_process().start()
    assert host.call("version", "agent", timeout=30)["returncode"] == "0"
    service.start("--shutdown-timeout", "1")
    assert service.process is not None
    assert service.process.wait(60) == 11
    log = service.log()
    assert f"another openstack-agent agent (pid {other.process.pid}) is using the state directory" in log
    assert "that one is not this supervisor's, so nothing is restarted" in log
    assert host.call("version", "agent", timeout=30)["returncode"] == "0"
    assert other.process.poll() is None


def test_one_supervisor_per_state_directory(service: Service, host: Host) -> None:
    """A second supervisor on the same state directory exits 11 at once, naming the first; the first one's
    agent is untouched."""
    service.start()
    assert host.call("version", "agent", timeout=30)["returncode"] == "0"
    agent = service.agent_pid()
    second = subprocess.run(service.args, env=service.env, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 11
    assert service.process is not None
    assert f"another openstack-agent supervisor (pid {service.process.pid})" in second.stderr
    assert service.agent_pid() == agent
