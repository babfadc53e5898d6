"""The supervisor with a release known good: the notify protocol, restarts after a crash (with the install root's
pointers as links or as pointer files), a clean stop; and the supervisor a service hosts (Windows), rolling back
a frozen release that fails."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import __version__, pointers
from agent.config import Config
from agent.host import Host
from agent.install import COMPLETE, Layout
from agent.journal import Journal, releases
from agent.supervisor import ServiceSupervisor
from tests import layouts
from tests.conftest import Service, open_journal, verdict_of, wait_for

#: The fixtures that run a test on either kind of pointers when it is parametrised over ``layout_kind``.
service = layouts.service
layout_kind = layouts.layout_kind


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


@pytest.mark.parametrize("layout_kind", pointers.KINDS)
def test_crashed_agent_is_restarted(service: Service, host: Host, state_dir: Path) -> None:
    """An agent of a good release that dies is started again, from the release current names (a link or a
    pointer file); the release stays good."""
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


# -- ServiceSupervisor: the contract hosted by a service (Windows), run here on stand-ins of frozen releases ----

class Told:
    """The service's runtime as the supervisor sees it: the status lines it was told."""

    supervised = True

    def __init__(self) -> None:
        self.lines: list[str] = []

    def ready(self, status: str) -> None:
        self.lines.append(status)

    def uptime(self) -> float | None:
        return None

    def committed(self, version: str) -> None:
        pass

    def stopping(self) -> None:
        pass


#: Stand-ins of a frozen release's openstack-agent.exe: one serves until its input ends (as the agent does under
#: the service), one ignores its input, one crashes at start, one complains on stderr and exits.
PROGRAMS = {"serves": "#!/bin/sh\nexec cat >/dev/null\n", "deaf": "#!/bin/sh\nexec sleep 600\n",
            "crashes": "#!/bin/sh\nexit 3\n",
            "complains": "#!/bin/sh\necho 'Error: the configuration file is not TOML' >&2\nexit 2\n"}


def frozen_release(layout: Layout, version: str, program: str) -> None:
    directory = layout.release_dir(version)
    directory.mkdir(parents=True)
    (directory / "openstack-agent.exe").write_text(PROGRAMS[program])
    (directory / "openstack-agent.exe").chmod(0o755)
    (directory / COMPLETE).write_text(f"{version}\n")


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[Callable[..., tuple[ServiceSupervisor, Told]]]:
    """A ServiceSupervisor over a pointer-file install root whose good release 0.2.0 is previous and whose new
    release 0.3.0 (``program``) is current and on probation, running in a thread as in the service."""
    threads: list[tuple[ServiceSupervisor, threading.Thread]] = []

    def start(program: str, **settings: float) -> tuple[ServiceSupervisor, Told]:
        config = Config(install_root=str(tmp_path / "install"), state_dir=str(tmp_path / "state"),
                        **{"shutdown_timeout": 5.0, **settings})
        layout = Layout(config.install_path, pointers.FILE)
        frozen_release(layout, "0.2.0", "serves")
        frozen_release(layout, "0.3.0", program)
        layout.activate("0.2.0")
        layout.activate("0.3.0")
        journal = Journal.open(config.state_path)
        releases.mark(journal, "0.2.0", releases.GOOD, "installed by the test")
        journal.close()
        told = Told()
        supervisor = ServiceSupervisor(config, told)
        thread = threading.Thread(target=supervisor.run)
        thread.start()
        threads.append((supervisor, thread))
        return supervisor, told

    yield start
    for supervisor, thread in threads:
        supervisor.stop()
        thread.join(60)
        assert not thread.is_alive()


def serving(supervisor: ServiceSupervisor, told: Told, version: str) -> bool:
    child = supervisor._child
    return bool(told.lines) and told.lines[-1] == f"supervising openstack-agent {version}" and \
        child is not None and child.poll() is None


@pytest.mark.parametrize(("program", "settings", "why"), [
    ("crashes", {}, "crashed 3 times within 60 s (last exit status 3)"),
    ("serves", {"ready_deadline": 0.5, "probation": 0.5},
     "was not confirmed healthy within 1 s (update.ready_deadline and update.probation)"),
])
def test_hosted_supervisor_rolls_back_a_failing_release(hosted, program: str, settings: dict[str, float],
                                                        why: str) -> None:
    """Hosted by a service (as on Windows: no pidfd, signals or notify socket), the supervisor marks a frozen
    release that crashes, or is not confirmed in time, bad, points current back (pointer files) and serves
    the previous release."""
    supervisor, told = hosted(program, **settings)
    wait_for(lambda: serving(supervisor, told, "0.2.0"), timeout=60)
    assert (supervisor.layout.current, supervisor.layout.pointers.kind) == ("0.2.0", pointers.FILE)
    assert verdict_of(supervisor._journal(), "0.3.0") == ("bad", why)
    assert told.lines[0] == "supervising openstack-agent 0.3.0"


@pytest.mark.parametrize(("program", "status"), [("serves", 0), ("deaf", -signal.SIGTERM)])
def test_hosted_supervisor_stops_its_child_by_closing_its_input(hosted, program: str, status: int) -> None:
    """Stop closes the child's input, which ends an agent cleanly; a child that does not end within
    daemon.shutdown_timeout is terminated."""
    supervisor, told = hosted(program, ready_deadline=60.0, shutdown_timeout=0.5)
    wait_for(lambda: serving(supervisor, told, "0.3.0"), timeout=30)
    child = supervisor._child
    assert child is not None
    supervisor.stop()
    assert child.wait(30) == status


def test_hosted_supervisor_logs_what_its_child_prints(hosted, caplog: pytest.LogCaptureFixture) -> None:
    """What a child prints before its own log is set up (a service has no console) reaches the service's log."""
    caplog.set_level(logging.WARNING, logger="agent.supervisor")
    hosted("complains")
    wait_for(lambda: any("the configuration file is not TOML" in r.getMessage() for r in caplog.records),
             timeout=30)
    assert any(r.getMessage() == "openstack-agent 0.3.0 printed: Error: the configuration file is not TOML"
               for r in caplog.records)


def test_hosted_supervisor_keeps_a_confirmed_release(hosted, tmp_path: Path) -> None:
    """A release its agent confirms (marked good in the journal) before the deadline stays current; stop ends
    its agent and the supervisor."""
    supervisor, told = hosted("serves", ready_deadline=2.0, probation=0.5)
    wait_for(lambda: serving(supervisor, told, "0.3.0"), timeout=30)
    journal = Journal.open(tmp_path / "state")
    releases.mark(journal, "0.3.0", releases.GOOD, "")
    journal.close()
    child = supervisor._child
    assert child is not None
    supervisor.stop()
    assert child.wait(30) is not None
    assert supervisor.layout.current == "0.3.0"
    assert told.lines == ["supervising openstack-agent 0.3.0"]


def judged(tmp_path: Path) -> ServiceSupervisor:
    """A ServiceSupervisor, not running, over a root whose good 0.2.0 is previous and whose 0.3.0 on probation is
    current (its journal open), to judge 0.3.0 as the loop does."""
    config = Config(install_root=str(tmp_path / "install"), state_dir=str(tmp_path / "state"))
    layout = Layout(config.install_path, pointers.FILE)
    for version in ("0.2.0", "0.3.0", "0.4.0"):
        frozen_release(layout, version, "serves")
    layout.activate("0.2.0")
    layout.activate("0.3.0")
    supervisor = ServiceSupervisor(config, Told())
    supervisor.journal = Journal.open(config.state_path)
    return supervisor


def test_a_rollback_leaves_a_release_an_operator_made_current_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An operator's install landing while the supervisor rolls back (after it read previous) stays current: the
    bad verdict is journaled, the pointers are left as the install made them, and the log says so."""
    supervisor = judged(tmp_path)
    read = Layout.link

    def install_meanwhile(layout: Layout, name: str) -> str | None:
        version = read(layout, name)
        if name == "previous" and supervisor.layout.current == "0.3.0":
            Layout(supervisor.layout.root).activate("0.4.0")  # 'openstack-agent install' in another process
        return version

    monkeypatch.setattr(Layout, "link", install_meanwhile)
    try:
        supervisor.roll_back("0.3.0", "crashed 3 times within 60 s")
        assert (supervisor.layout.current, supervisor.layout.previous) == ("0.4.0", "0.3.0")
        assert supervisor._release() == "0.4.0"
        assert verdict_of(supervisor._journal(), "0.3.0") == ("bad", "crashed 3 times within 60 s")
    finally:
        supervisor._journal().close()
    assert "current was switched to 0.4.0 meanwhile (not by the supervisor); that release stays current" in \
        caplog.text


def test_a_rollback_that_cannot_switch_serves_the_previous_release(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """When the pointers' lock cannot be had (a directory in its place), the rollback raises nothing: the previous
    release is served from releases/ with a status and a log that say current still names the bad release,
    and the switch is tried again before each start until it succeeds."""
    supervisor = judged(tmp_path)
    planted = supervisor.layout.root / pointers.LOCK
    planted.unlink()
    planted.mkdir()
    try:
        supervisor.roll_back("0.3.0", "crashed 3 times within 60 s")
        assert supervisor._release() == "0.2.0"
        assert supervisor._release() == "0.2.0"  # a later start: current is still 0.3.0, marked bad
        assert supervisor.layout.current == "0.3.0"
        assert supervisor._status("0.2.0") == (
            "supervising openstack-agent 0.2.0; current still names the bad release 0.3.0, which could not be "
            "switched back (see the log)")
        planted.rmdir()
        assert supervisor._release() == "0.2.0"
        assert supervisor.layout.current == "0.2.0"
        assert supervisor._status("0.2.0") == "supervising openstack-agent 0.2.0"
    finally:
        supervisor._journal().close()
    assert f"serving 0.2.0 from {supervisor.layout.release_dir('0.2.0')} all the same, while current still " \
           "names 0.3.0" in caplog.text


# -- the service's own build (the MSI's) made a release ---------------------------------------------------------

def own_build(tmp_path: Path, version: str) -> tuple[Path, str]:
    """A stand-in of the frozen build the MSI installs (it serves until stopped), as ``hosted`` would pass it."""
    folder = layouts.frozen_build(tmp_path / "Program Files" / "OpenStack" / "Agent", version)
    (folder / "openstack-agent.exe").write_text(PROGRAMS["serves"])
    return folder, version


@pytest.mark.parametrize(("before", "bad", "adopted", "current", "previous"), [
    (None, False, True, "0.3.0", None),          # the first start after the MSI installed the agent
    ("0.2.0", False, True, "0.3.0", "0.2.0"),    # an MSI upgrade: the release it replaces becomes previous
    ("0.3.0", False, False, "0.3.0", None),      # started again: nothing to do
    ("0.4.0", False, False, "0.4.0", None),      # agentupdate brought a newer release, which stays
    ("0.2.0", True, False, "0.2.0", None),       # the build was rolled back before: it stays rolled back
    ("broken", False, True, "0.3.0", None),      # a pointer file naming no release is repaired
])
def test_the_services_own_build_becomes_a_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  before: str | None, bad: bool, adopted: bool, current: str,
                                                  previous: str | None) -> None:
    """The service's build 0.3.0 is copied into releases/ and made current (pointer files, as on Windows) and good
    when there is no current release or an older one; never over a newer release, nor when the journal marks it
    bad."""
    monkeypatch.setattr(pointers, "DEFAULT_KIND", pointers.FILE)
    config = Config(install_root=str(tmp_path / "install"), state_dir=str(tmp_path / "state"))
    layout = Layout(config.install_path, pointers.FILE)
    if before == "broken":
        layout.root.mkdir()
        (layout.root / "current").write_text("releases/0.1.0\n")
    elif before is not None:
        frozen_release(layout, before, "serves")
        layout.activate(before)
    supervisor = ServiceSupervisor(config, Told(), build=own_build(tmp_path, "0.3.0"))
    supervisor.journal = Journal.open(config.state_path)
    if bad:
        releases.mark(supervisor.journal, "0.3.0", releases.BAD, "crashed 3 times within 60 s")
    try:
        assert supervisor.adopt(*own_build(tmp_path / "again", "0.3.0")) is adopted
        assert (layout.current, layout.previous) == (current, previous)
        assert (layout.root / "current").read_text() == f"releases/{current}\n"
        if adopted:
            copied = layout.release_dir("0.3.0")
            assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*")) == [
                COMPLETE, "_internal", "_internal/base_library.zip", "openstack-agent.exe"]
            assert verdict_of(supervisor.journal, "0.3.0") == ("good", "the service's own build, installed with it")
    finally:
        supervisor.journal.close()


def test_a_first_start_serves_the_services_own_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no release at all, the hosted supervisor makes the service's build the first release (a pointer file,
    as on Windows) and serves it, each child handed to ``contain`` (the service's job object) as it starts."""
    monkeypatch.setattr(pointers, "DEFAULT_KIND", pointers.FILE)
    config = Config(install_root=str(tmp_path / "install"), state_dir=str(tmp_path / "state"), shutdown_timeout=5.0)
    contained: list[subprocess.Popen[bytes]] = []
    told = Told()
    supervisor = ServiceSupervisor(config, told, build=own_build(tmp_path, "0.3.0"), contain=contained.append)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        wait_for(lambda: serving(supervisor, told, "0.3.0"), timeout=30)
        assert contained == [supervisor._child]
        assert (config.install_path / "current").read_text() == "releases/0.3.0\n"
    finally:
        supervisor.stop()
        thread.join(60)
    assert not thread.is_alive()
    assert contained[0].returncode is not None
