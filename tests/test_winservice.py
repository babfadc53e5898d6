"""The Windows service against the fake SCM (``tests/fakes/win32service.py``), with the real daemon inside on
the in-memory XenStore: start-pending then running once the agent serves, a request answered, a stop reported
stop-pending then stopped with the journal closed; stops during start-up; a failure left to the SCM's
recovery actions; and ``install``/``remove``/``start``/``stop``."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import config as agent_config
from agent import winservice
from agent.config import Config
from agent.daemon import Agent
from agent.errors import PlatformError
from agent.host import Host
from agent.lock import StateLock
from agent.memstore import MemoryStore
from agent.platform.linux import Linux
from agent.winservice import SERVICE_NAME, Win32, WindowsServiceRuntime
from tests.conftest import DOMID, STATE_DIR, wait_for
from tests.fakes.win32service import (
    ERROR_SERVICE_SPECIFIC_ERROR,
    PYTHONSERVICE,
    SERVICE_ACCEPT_SHUTDOWN,
    SERVICE_ACCEPT_STOP,
    SERVICE_AUTO_START,
    SERVICE_RUNNING,
    SERVICE_START_PENDING,
    SERVICE_STOP_PENDING,
    SERVICE_STOPPED,
    WIN32SERVICE_PYD,
    FakeSCM,
)

HOME = f"/local/domain/{DOMID}"
FAST = 0.005  # seconds between the CLI's status queries


@dataclass
class Hosted:
    """The service installed in a fake SCM, its agents built on the in-memory XenStore."""

    scm: FakeSCM
    win32: Win32
    config: Config
    agents: list[Agent] = field(default_factory=list)
    secured: list[Path] = field(default_factory=list)

    @property
    def record(self) -> Any:
        return self.scm.services[SERVICE_NAME]

    def start(self) -> str:
        return winservice.start(self.win32, wait=20, interval=FAST)

    def stop(self) -> str:
        return winservice.stop(self.win32, wait=30, interval=FAST)

    def stopped(self) -> None:
        thread = self.record.thread
        thread.join(30)
        assert not thread.is_alive(), "the service did not stop"


@pytest.fixture
def hosted(memory_store: MemoryStore, system_root: Path) -> Callable[..., Hosted]:
    """``hosted(xenstore_down=False, **class_attributes)``: the service installed and loadable, not started;
    with ``xenstore_down``, XenStore goes away as its agent is built (the PV drivers not there yet)."""
    made: list[Hosted] = []

    def make(xenstore_down: bool = False, **attributes: Any) -> Hosted:
        scm = FakeSCM()
        win32 = scm.win32()
        config = agent_config.from_overrides(root=str(system_root), state_dir=STATE_DIR, domain_path=HOME,
                                             shutdown_timeout=10)
        result = Hosted(scm, win32, config)

        def make_agent(config: Config, runtime: Any) -> Agent:
            agent = Agent(config, transport=memory_store.connection(HOME), accounts=Linux(str(system_root)),
                          runtime=runtime)
            if xenstore_down:
                memory_store.stop()
            result.agents.append(agent)
            return agent

        defaults: dict[str, Any] = {"load_config": staticmethod(lambda: config),
                                    "make_agent": staticmethod(make_agent),
                                    "secure_state_dir": staticmethod(result.secured.append)}
        defaults.update(attributes)
        scm.classes[SERVICE_NAME] = type("TestService", (winservice.service_class(win32),), defaults)
        winservice.install(win32)
        made.append(result)
        return result

    yield make
    for result in made:
        instance = result.record.instance if SERVICE_NAME in result.scm.services else None
        if instance is not None and result.record.state != SERVICE_STOPPED:
            instance.SvcStop()
            result.stopped()


def test_lifecycle(hosted: Callable[..., Hosted], memory_store: MemoryStore) -> None:
    """Start-pending, running once ready (once), a request answered, then stop-pending and stopped, with the
    journal closed and the state directory secured first."""
    service = hosted()
    assert service.start() == "running"
    agent = service.agents[0]
    host = Host(memory_store.connection(HOME), poll_interval=0.002)
    assert host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    assert service.stop() == "stopped"
    record = service.record
    assert record.states() == [SERVICE_START_PENDING, SERVICE_RUNNING, SERVICE_STOP_PENDING, SERVICE_STOPPED]
    assert [s.state for s in record.statuses].count(SERVICE_RUNNING) == 1
    running = next(s for s in record.statuses if s.state == SERVICE_RUNNING)
    assert running.accepted == SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN
    stopping = [s for s in record.statuses if s.state == SERVICE_STOP_PENDING]
    assert {s.wait_hint for s in stopping} == {15_000}  # shutdown_timeout 10 s plus the margin
    assert [s.checkpoint for s in stopping] == sorted({s.checkpoint for s in stopping})
    assert record.statuses[-1].exit_code == 0
    assert agent.journal is not None and agent.journal._conn is None
    StateLock(service.config.state_path, "agent").acquire()  # the agent let go of its state directory
    assert service.secured == [service.config.state_path]
    assert service.scm.restarts == []


def test_system_shutdown_stops_the_agent(hosted: Callable[..., Hosted]) -> None:
    """SERVICE_CONTROL_SHUTDOWN stops the agent as a stop request does."""
    service = hosted()
    service.start()
    service.scm.shutdown(SERVICE_NAME)
    service.stopped()
    assert service.record.states()[-2:] == [SERVICE_STOP_PENDING, SERVICE_STOPPED]
    assert service.agents[0].journal._conn is None  # type: ignore[union-attr]


def test_stop_is_refused_while_start_is_pending(hosted: Callable[..., Hosted]) -> None:
    """While the agent waits for XenStore the service is start-pending, and the SCM refuses to stop it: the
    command says so; stopped by its host meanwhile, it never reports running."""
    service = hosted(xenstore_down=True)
    service.scm.StartService(service.scm.OpenService(None, SERVICE_NAME, 0), None)
    wait_for(lambda: service.agents)
    with pytest.raises(PlatformError, match="is starting and cannot be stopped yet"):
        service.stop()
    service.record.instance.SvcStop()  # what the debug host's Ctrl-C does
    service.stopped()
    assert SERVICE_RUNNING not in service.record.states()
    assert service.record.states()[-2:] == [SERVICE_STOP_PENDING, SERVICE_STOPPED]
    assert service.agents[0].journal._conn is None  # type: ignore[union-attr]


def test_a_slow_start_reports_running_to_be_stoppable(hosted: Callable[..., Hosted]) -> None:
    """Past its start wait with XenStore still missing, the service reports running, so that a stop request is
    delivered; the agent stops from its connection loop and the journal is closed."""
    service = hosted(xenstore_down=True, start_wait=0.0)
    assert service.start() == "running"
    assert service.stop() == "stopped"
    assert service.record.states() == [SERVICE_START_PENDING, SERVICE_RUNNING, SERVICE_STOP_PENDING,
                                       SERVICE_STOPPED]
    assert service.agents[0].journal._conn is None  # type: ignore[union-attr]


def test_a_stop_before_the_agent_is_built(hosted: Callable[..., Hosted]) -> None:
    """A stop while the configuration is read: no agent is made, and the service ends stopped, cleanly."""
    reading, release = threading.Event(), threading.Event()
    service: Hosted

    def load_config() -> Config:
        reading.set()
        release.wait(10)
        return service.config

    service = hosted(load_config=staticmethod(load_config))
    service.scm.StartService(service.scm.OpenService(None, SERVICE_NAME, 0), None)
    assert reading.wait(10)
    service.record.instance.SvcStop()
    release.set()
    service.stopped()
    assert service.agents == []
    assert service.record.states()[-1] == SERVICE_STOPPED and service.record.statuses[-1].exit_code == 0
    assert SERVICE_RUNNING not in service.record.states()


def test_a_failed_agent_is_left_to_the_recovery_actions(hosted: Callable[..., Hosted]) -> None:
    """An agent that cannot start (its state directory is taken) stops the service with an error, which the SCM
    answers with its restart action; the start command says where to look."""
    service = hosted()
    other = StateLock(service.config.state_path, "agent")
    other.acquire()
    try:
        with pytest.raises(PlatformError, match="stopped while starting"):
            service.start()
    finally:
        other.release()
    service.stopped()
    assert service.record.statuses[-1].exit_code == ERROR_SERVICE_SPECIFIC_ERROR
    assert service.scm.restarts == [SERVICE_NAME]
    assert SERVICE_RUNNING not in service.record.states()


def test_install_creates_an_automatic_service_with_restart_actions() -> None:
    """install: own process, automatic start, pythonservice.exe with the class string, the description, the
    restart actions applied to error exits too, and the event source with pywin32's message DLL."""
    scm = FakeSCM()
    fields = winservice.install(scm.win32())
    record = scm.services[SERVICE_NAME]
    assert (record.display_name, record.start_type, record.binary) == ("OpenStack Agent", SERVICE_AUTO_START,
                                                                       f'"{PYTHONSERVICE}"')
    assert record.python_class == "agent.winservice.AgentService"
    assert record.description == winservice.DESCRIPTION
    assert record.failure_actions == {"ResetPeriod": 86400, "RebootMsg": None, "Command": None,
                                      "Actions": ((1, 5000), (1, 5000), (1, 60000))}
    assert record.failure_actions_flag is True
    assert scm.sources == {("Application", "OpenStackAgent"): {"EventMessageFile": WIN32SERVICE_PYD,
                                                               "TypesSupported": 7}}
    assert dict(fields)["on failure"] == "restart after 5 s, 5 s, 60 s"
    assert all(handle.closed for handle in scm.handles)


def _earlier_service() -> tuple[FakeSCM, Win32]:
    """An SCM holding the earlier agent's OpenStackAgent service, stopped, demand start, running C:\\old.exe."""
    scm = FakeSCM()
    win32 = scm.win32()
    handle = win32.win32service.CreateService(None, SERVICE_NAME, "Old agent", 0, 0x10, 3, 1, r"C:\old.exe",
                                              None, 0, None, None, None)
    win32.win32service.CloseServiceHandle(handle)
    return scm, win32


def test_install_takes_over_the_service_of_that_name() -> None:
    """An existing OpenStackAgent (the earlier agent's) is reconfigured in place, not refused."""
    scm, win32 = _earlier_service()
    fields = dict(winservice.install(win32))
    record = scm.services[SERVICE_NAME]
    assert (record.display_name, record.start_type, record.binary) == ("OpenStack Agent", SERVICE_AUTO_START,
                                                                       f'"{PYTHONSERVICE}"')
    assert fields["service"] == "OpenStackAgent updated (it existed: now this agent's)"


def _earlier_agent_running(hosted: Callable[..., Hosted], stops: bool = True) -> Hosted:
    """The service installed, then made the earlier agent's again (its program) and running in a process of
    its own."""
    service = hosted()
    service.record.binary = r'"C:\Program Files\OpenStack\OldAgent\agent.exe"'
    service.scm.run_elsewhere(SERVICE_NAME, stops=stops)
    return service


def test_install_over_the_running_earlier_agent_stops_and_starts_it(hosted: Callable[..., Hosted],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A running OpenStackAgent is stopped before its configuration changes and started again after, so that
    this agent's program is what runs, and the output says so."""
    service = _earlier_agent_running(hosted)
    states_when_changed: list[int] = []
    change = service.win32.win32service.ChangeServiceConfig

    def recording(handle: Any, *args: Any) -> None:
        states_when_changed.append(service.record.state)
        change(handle, *args)

    monkeypatch.setattr(service.win32.win32service, "ChangeServiceConfig", recording)
    fields = dict(winservice.install(service.win32, wait=20, interval=FAST))
    assert fields["was running"] == "stopped, then started again: running"
    assert states_when_changed == [SERVICE_STOPPED]
    assert service.record.binary == f'"{PYTHONSERVICE}"' and service.record.state == SERVICE_RUNNING
    assert service.record.instance is not None and len(service.agents) == 1
    assert winservice.start(service.win32, wait=1) == "already running"


def test_install_over_an_earlier_agent_that_does_not_stop_in_time(hosted: Callable[..., Hosted]) -> None:
    """An earlier agent still stopping after the wait is reconfigured, not started, and the output says it must
    be started once it has stopped."""
    service = _earlier_agent_running(hosted, stops=False)
    fields = dict(winservice.install(service.win32, wait=0.05, interval=FAST))
    assert fields["restart needed"] == (
        "the earlier OpenStackAgent is still stopping after 0.05 s and runs its own program until it stops; then "
        "start this one with 'openstack-agent service start'")
    assert service.record.binary == f'"{PYTHONSERVICE}"' and service.record.state == SERVICE_STOP_PENDING
    assert service.agents == []


def test_install_over_an_earlier_agent_that_refuses_to_stop() -> None:
    """A running service that accepts no stop is left as it was, and the error says what to do."""
    scm, win32 = _earlier_service()
    scm.services[SERVICE_NAME].state = SERVICE_RUNNING
    with pytest.raises(PlatformError) as raised:
        winservice.install(win32, wait=1, interval=FAST)
    assert str(raised.value) == (
        "the running OpenStackAgent service must stop before this agent replaces it, and it did not (cannot "
        "install the OpenStackAgent service: ControlService failed with error 1052: The requested control is not "
        "valid for this service.); nothing was changed: stop it ('sc stop OpenStackAgent', or end its process) "
        "and install again")
    assert scm.services[SERVICE_NAME].binary == r"C:\old.exe" and scm.sources == {}
    assert all(handle.closed for handle in scm.handles)


def test_install_without_administrator_rights() -> None:
    """Access denied is an error naming the function and Windows' words, and nothing is installed."""
    scm = FakeSCM(elevated=False)
    with pytest.raises(PlatformError) as raised:
        winservice.install(scm.win32())
    assert str(raised.value) == ("cannot install the OpenStackAgent service: OpenSCManager failed with error 5: "
                                 "Access is denied.")
    assert scm.services == {} and scm.sources == {}


def test_remove_stops_and_deletes_the_service_and_its_source(hosted: Callable[..., Hosted]) -> None:
    """remove on a running service: stopped, deleted (gone once stopped), the event source removed."""
    service = hosted()
    service.start()
    fields = dict(winservice.remove(service.win32, wait=30, interval=FAST))
    assert fields["was"] == "stopped"
    assert SERVICE_NAME not in service.scm.services
    assert service.scm.sources == {}
    with pytest.raises(PlatformError, match="service is not installed"):
        winservice.stop(service.win32, wait=1, interval=FAST)


@pytest.mark.parametrize(("action", "said"), [(winservice.start, "already running"),
                                               (winservice.stop, "stopped")])
def test_start_and_stop_when_already_there(hosted: Callable[..., Hosted], action: Any, said: str) -> None:
    """start on a running service says so; stop twice: the second says it is not running."""
    service = hosted()
    service.start()
    assert action(service.win32, wait=30, interval=FAST) == said
    if action is winservice.stop:
        assert winservice.stop(service.win32, wait=1, interval=FAST) == "not running"


def test_runtime_reports_running_once_and_never_after_a_stop() -> None:
    """ready reports running once; after stopping, neither ready nor the start beat reports anything more."""
    reports: list[tuple[int, int]] = []
    runtime = WindowsServiceRuntime(lambda state, hint: reports.append((state, hint)), stop_hint_ms=7000)
    assert runtime.uptime() is None and runtime.supervised is False
    assert runtime.report_starting()
    runtime.ready("serving")
    runtime.ready("serving")
    runtime.stopping()
    assert not runtime.report_starting() and not runtime.report_running()
    assert reports == [(SERVICE_START_PENDING, winservice.START_HINT_MS), (SERVICE_RUNNING, 0),
                       (SERVICE_STOP_PENDING, 7000)]
    assert runtime.uptime() is not None


def test_the_module_imports_without_pywin32() -> None:
    """Here, without pywin32, the module imports and only the service class itself asks for it."""
    with pytest.raises(PlatformError, match="pywin32 is not installed"):
        winservice.AgentService  # noqa: B018 - the attribute access is the test


def test_a_frozen_build_is_installed_as_the_msi_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the one-folder build the SCM runs the program itself with 'service run' (the MSI's Arguments), a
    command the CLI has; no class string is needed then."""
    from agent.cli.app import build_parser

    exe = r"C:\Program Files\OpenStack Agent\openstack-agent.exe"
    monkeypatch.setattr(winservice.sys, "frozen", True, raising=False)
    monkeypatch.setattr(winservice.sys, "executable", exe)
    scm = FakeSCM()
    winservice.install(scm.win32())
    record = scm.services[SERVICE_NAME]
    assert (record.binary, record.python_class) == (f'"{exe}" service run', None)
    assert build_parser().parse_args(["service", "run"]).handler.__name__ == "cmd_service_run"


def _fresh_root_logger(monkeypatch: pytest.MonkeyPatch) -> logging.Logger:
    """The root logger with no handlers, its handlers and level put back after the test."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    return root


def test_the_service_process_writes_its_own_log_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The service's configuration sets its process's log up in OpenStackAgent-service.log beside the agent's
    file, which it leaves to its agent child: no file has two writers."""
    from agent import config as config_module

    agent_log = tmp_path / "Logs" / "OpenStackAgent.log"
    agent_log.parent.mkdir()
    file = tmp_path / "agent.toml"
    file.write_text(f'[daemon]\nlog_file = "{agent_log.as_posix()}"\n', encoding="utf-8")
    resolve = config_module.resolve
    monkeypatch.setattr(config_module, "resolve", lambda: resolve(file=file))
    root = _fresh_root_logger(monkeypatch)
    config = winservice._default_config()
    [handler] = root.handlers
    handler.close()
    assert config.log_file == str(agent_log)
    assert isinstance(handler, logging.FileHandler)
    assert handler.baseFilename == str(agent_log.with_name("OpenStackAgent-service.log"))


# -- what the service hosts, and the job object its agent runs in ---------------------------------------------

@pytest.mark.parametrize(("frozen", "release", "hosts"), [
    (True, False, "supervisor"),    # the MSI's build: it becomes the first release
    (False, True, "supervisor"),    # pythonservice.exe over an install root with a current release
    (False, False, "agent"),        # a development install: nothing to supervise
])
def test_the_service_hosts_the_supervisor_when_it_can(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      frozen: bool, release: bool, hosts: str) -> None:
    """A frozen service hosts the supervisor with its own build (its folder and version) to make a release of,
    and with each child put in a job object, its log left as it was (the service's own file); without one, it
    hosts the supervisor when there is a current release, else the agent itself (unsupervised), its process's
    log switched to the agent's file, which no child writes then."""
    from agent import __version__, pointers
    from agent.install import COMPLETE, Layout
    from agent.supervisor import ServiceSupervisor

    exe = tmp_path / "Program Files" / "openstack-agent.exe"
    monkeypatch.setattr(winservice.sys, "frozen", frozen, raising=False)
    monkeypatch.setattr(winservice.sys, "executable", str(exe))
    agent_log = tmp_path / "OpenStackAgent.log"
    config = agent_config.from_overrides(root=str(tmp_path), state_dir="/state", install_root="/releases-root",
                                         log_file=str(agent_log))
    root_logger = _fresh_root_logger(monkeypatch)
    if release:
        layout = Layout(config.install_path, pointers.FILE)
        layout.release_dir("0.2.0").mkdir(parents=True)
        (layout.release_dir("0.2.0") / COMPLETE).write_text("0.2.0\n")
        layout.activate("0.2.0")
    scm = FakeSCM()
    runtime = WindowsServiceRuntime(lambda state, hint: None)
    made = winservice.hosted(config, runtime, scm.win32())
    if hosts == "agent":
        [handler] = root_logger.handlers
        handler.close()
        assert isinstance(made, Agent) and scm.jobs.jobs == []
        assert isinstance(handler, logging.FileHandler) and handler.baseFilename == str(agent_log)
        return
    assert root_logger.handlers == []
    assert isinstance(made, ServiceSupervisor) and made.runtime is runtime
    assert made.build == ((exe.parent, __version__) if frozen else None)
    [job] = scm.jobs.jobs
    assert isinstance(made.contain, winservice.ChildJob) and made.contain.handle is job
    assert job.flags & 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE


def test_a_child_in_the_job_dies_when_the_job_closes() -> None:
    """ChildJob assigns the child, through a process handle with the rights assignment needs (closed
    afterwards), to a job set to kill its processes when its last handle closes; the stand-in then kills them,
    as Windows does when the service's process ends (that kill is Windows', and is not tested here)."""
    scm = FakeSCM()
    job = winservice.ChildJob(scm.win32())
    child = subprocess.Popen(["sleep", "600"])
    try:
        job(child)
        assert job.handle.assigned == [child.pid]
        assert scm.jobs.open_process_handles() == []
        scm.jobs.CloseHandle(job.handle)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


def test_a_child_the_job_refuses_still_serves(caplog: pytest.LogCaptureFixture) -> None:
    """AssignProcessToJobObject failing (ERROR_ACCESS_DENIED) is logged with what it means, and the child runs on."""
    scm = FakeSCM()
    scm.jobs.fail_assign = 5
    job = winservice.ChildJob(scm.win32())
    child = subprocess.Popen(["sleep", "600"])
    try:
        job(child)
        assert child.poll() is None
        assert scm.jobs.open_process_handles() == []
        assert f"the agent (pid {child.pid}) is not in the service's job object, so it would outlive a service " \
               "killed outright: AssignProcessToJobObject failed with error 5: Access is denied." in caplog.text
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(("environment", "supervised"), [({}, False), ({"OPENSTACK_AGENT_SUPERVISED": "1"}, True)])
def test_an_agent_on_windows_is_supervised_when_its_supervisor_says_so(
        monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], supervised: bool) -> None:
    """On Windows the agent's runtime tells no one (no notify socket) and is supervised when the service's
    supervisor started it, as its environment says; so agentupdate may restart it into a new release."""
    from agent import runtime

    monkeypatch.delenv("OPENSTACK_AGENT_SUPERVISED", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(runtime.sys, "platform", "win32")
    made = runtime.for_this_process()
    assert isinstance(made, runtime.ServiceChild) and made.supervised is supervised
