"""The supervisor with a release known good: the notify protocol, restarts after a crash, a clean stop."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from agent import __version__
from agent.host import Host
from tests.conftest import Service, open_journal, wait_for


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
    assert open_journal(state_dir).release(__version__)[0] == "good"  # type: ignore[index]
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
