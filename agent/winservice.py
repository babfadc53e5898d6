r"""The Windows service: what the Service Control Manager runs (the supervisor and its agent child, see "What the
service runs" below), and its set-up.

The service is named ``OpenStackAgent``, the earlier Windows agent's name, so that installing this one
replaces that one in place. It starts automatically at boot, runs as LocalSystem, and the SCM restarts it
after a failure (recovery actions: 5 s, 5 s, then 60 s after each failure, the count reset after a day
without one), whether the process crashed or stopped with an error.

What the SCM sees of a start: ``SERVICE_START_PENDING``, its checkpoint advancing while what the service runs
starts, then ``SERVICE_RUNNING`` at its runtime's ``ready`` (``WindowsServiceRuntime``): for the supervisor,
once it has started the current release's agent; for an agent run directly, once it serves. A stop or a
system shutdown asks it to stop through its thread-safe ``stop``, reports ``SERVICE_STOP_PENDING`` with a
wait hint covering ``daemon.shutdown_timeout``, and the service reports ``SERVICE_STOPPED`` once it has
returned: the supervisor closes its child's input, the agent stops on it as on SIGTERM and closes its journal,
and only a child still running after the timeout is terminated.

Facts this module relies on (pywin32's win32serviceutil.py and PythonService.cpp, the SCM documentation):

- The host (pythonservice.exe, or a frozen program through ``servicemanager.PrepareToHostSingle`` and
  ``StartServiceCtrlDispatcher``) creates the service class with ``args`` (``args[0]`` the service name),
  reports ``SERVICE_START_PENDING`` (no control accepted, wait hint 5000 ms), calls ``SvcRun`` in the service's
  thread, and reports ``SERVICE_STOPPED`` when it returns: with exit code 0, or, when it raised,
  ``ERROR_SERVICE_SPECIFIC_ERROR`` (1066), which the SCM counts as a failure.
- ``ServiceFramework.__init__`` registers ``ServiceCtrlHandlerEx`` with
  ``servicemanager.RegisterServiceCtrlHandler(name, handler, True)``; the handler runs in the dispatcher thread,
  not the service's: ``SERVICE_CONTROL_STOP`` (1) calls ``SvcStop``, ``SERVICE_CONTROL_SHUTDOWN`` (5)
  ``SvcShutdown``. The controls accepted are derived from those methods, and none while start is pending.
- ``ReportServiceStatus(state, waitHint=5000, win32ExitCode=0, svcExitCode=0)`` calls
  ``win32service.SetServiceStatus`` with the 7-tuple (type, state, accepted, exit code, service exit code,
  checkpoint, wait hint); the checkpoint grows with each pending report and is 0 for running and stopped.
  The base ``SvcRun`` reports running before ``SvcDoRun``; this service reports it when the agent is ready.
- The SCM refuses a control while the service is start or stop pending (``ERROR_SERVICE_CANNOT_ACCEPT_CTRL``,
  1061) and a stop of a stopped service (``ERROR_SERVICE_NOT_ACTIVE``, 1062). It waits for a pending state as
  long as the checkpoint advances within each wait hint.
- ``win32service.CreateService(scm, name, display, access, type, start, errorControl, binary, loadOrderGroup,
  bFetchTag, dependencies, account, password)``; ``ERROR_SERVICE_EXISTS`` (1073) when the name is taken;
  ``ChangeServiceConfig(service, type, start, errorControl, binary, loadOrderGroup, bFetchTag, dependencies,
  account, password, displayName)`` with ``SERVICE_NO_CHANGE`` for what stays.
- ``ChangeServiceConfig2(service, SERVICE_CONFIG_FAILURE_ACTIONS (2), {"ResetPeriod": seconds, "RebootMsg":
  str|None, "Command": str|None, "Actions": ((type, delay ms), ...)})`` (all four keys required; ``SC_ACTION_RESTART``
  is 1); ``SERVICE_CONFIG_FAILURE_ACTIONS_FLAG`` (4) with True applies them also when the service stops with a
  non-zero exit code, not only when its process ends without reporting stopped;
  ``SERVICE_CONFIG_DESCRIPTION`` (1) with the description.
- ``DeleteService`` marks the service for deletion; the SCM removes it once it is stopped and its handles are
  closed (``ERROR_SERVICE_MARKED_FOR_DELETE``, 1072, until then). Failures raise
  ``pywintypes.error(winerror, funcname, strerror)``; ``OpenService`` of an unknown name gives
  ``ERROR_SERVICE_DOES_NOT_EXIST`` (1060).

What the service runs (``hosted``): the supervisor (``agent.supervisor.ServiceSupervisor``) over the install
root, which runs the current release's ``openstack-agent.exe run`` as its child, restarts it, and rolls an
update back when the new release fails, as on Linux. The frozen program the MSI installed is the service's own
build: the supervisor makes it the first release (``releases\<version>`` and the pointer file ``current``) when
there is none, and the current one after an MSI upgrade. Only a service that is not a frozen program
(pythonservice.exe, a development install) with no current release runs the agent itself, unsupervised: it
cannot update (agentupdate refuses without a supervisor). The runtime's ``supervised`` is therefore False: the
service itself never swaps its program; its child's runtime is ``agent.runtime.ServiceChild``.

The log: each file has one writer, the process that rotates it (``agent.winlog``). The agent child writes
``daemon.log_file`` (``%WINDIR%\\Logs\\OpenStackAgent.log``); the service's process writes its own file beside it
(``OpenStackAgent-service.log``: the service's start and stop, the supervisor's restarts, adoptions and
rollbacks). Both send every line to the event log too. A service that runs the agent itself (unsupervised, above)
switches its log to the agent's file once it knows, since no child writes it then.

Each child is put in a job object that kills it when the job's last handle closes, and the service's process
holds the only one: a service killed outright (Task Manager, a crash) takes its agent with it, so that the next
start does not find the state directory locked by an orphan (AlreadyRunning, exit 11). Facts relied on (the job
object documentation, pywin32's win32job and win32api):

- ``win32job.CreateJobObject(jobAttributes, name)`` with None and "" makes an unnamed job and returns its handle;
  ``QueryInformationJobObject(Job, JobObjectExtendedLimitInformation)`` (9) returns the
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION structure as a dict, its ``BasicLimitInformation`` a dict whose
  ``LimitFlags`` ``SetInformationJobObject(Job, JobObjectExtendedLimitInformation, info)`` sets;
  ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` (0x2000) terminates every process of the job when its last handle is
  closed, which the system does for a process that ends however it ends.
- ``AssignProcessToJobObject(hJob, hProcess)`` needs a process handle with PROCESS_SET_QUOTA (0x0100) and
  PROCESS_TERMINATE (0x0001), which ``win32api.OpenProcess(reqdAccess, bInherit, pid)`` opens (the pid cannot be
  reused meanwhile: the Popen keeps its own handle to the process until it is waited for); since Windows 8 a
  process already in a job (nested jobs) can be assigned too. Processes the child starts join its job.
- There is a moment between the child's start and its assignment when it is in no job; the agent starts no
  process of its own in it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent import __version__, winlog
from agent.errors import AgentError, PlatformError, ReleaseError

if TYPE_CHECKING:
    import subprocess

    from agent.config import Config
    from agent.runtime import Runtime

log = logging.getLogger(__name__)

SERVICE_NAME = "OpenStackAgent"
DISPLAY_NAME = "OpenStack Agent"
DESCRIPTION = ("Takes the host's commands through XenStore (administrator password, files, network, host name, "
               "updates) and journals each one before it acts.")
#: What pythonservice.exe loads (the registry's PythonClass value) when the agent is not a frozen program.
CLASS_STRING = "agent.winservice.AgentService"

SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_AUTO_START = 2
SERVICE_ERROR_NORMAL = 1
SERVICE_NO_CHANGE = 0xFFFFFFFF
SC_MANAGER_ALL_ACCESS = 0xF003F
SERVICE_ALL_ACCESS = 0xF01FF
SERVICE_STOPPED = 1
SERVICE_START_PENDING = 2
SERVICE_STOP_PENDING = 3
SERVICE_RUNNING = 4
SERVICE_CONTROL_STOP = 1
SERVICE_CONFIG_DESCRIPTION = 1
SERVICE_CONFIG_FAILURE_ACTIONS = 2
SERVICE_CONFIG_FAILURE_ACTIONS_FLAG = 4
SC_ACTION_RESTART = 1
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063

#: Restart 5 s after a first and a second failure, 60 s after every later one; a day without a failure resets
#: the count (as the MSI sets them: packaging/windows/openstack-agent.wxs).
RESTART_DELAYS_MS = (5_000, 5_000, 60_000)
RESET_PERIOD_S = 24 * 3600
#: The wait hint of each start-pending report, and how often the checkpoint advances while the agent starts.
START_HINT_MS = 10_000
START_BEAT_S = 3.0
#: Seconds the service stays start-pending at most: the SCM accepts no stop before it reports running, and an
#: agent waiting for XenStore (PV drivers not loaded yet) could otherwise never be stopped.
START_WAIT_S = 120.0
#: Added to ``daemon.shutdown_timeout`` in the stop's wait hint: the main loop's exit and the final report.
STOP_MARGIN_S = 5.0
#: The stop's wait hint before the configuration is read: the default shutdown_timeout and the margin.
STOP_HINT_MS = 15_000
#: The process rights AssignProcessToJobObject needs.
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100


class Hosted(Protocol):
    """What the service runs in its thread: the agent, or the supervisor over its releases."""

    def run(self) -> object:
        ...

    def stop(self) -> None:
        """From the dispatcher thread: stop, and let ``run`` return."""
        ...


@dataclass(frozen=True)
class Win32:
    """The pywin32 modules the service uses: the real ones (``load``), or stand-ins in tests."""

    win32service: Any
    win32serviceutil: Any
    servicemanager: Any
    win32evtlogutil: Any
    pywintypes: Any
    win32job: Any
    win32api: Any

    @classmethod
    def load(cls) -> Win32:
        return cls(*(winlog.pywin32(name) for name in
                     ("win32service", "win32serviceutil", "servicemanager", "win32evtlogutil", "pywintypes",
                      "win32job", "win32api")))

    def failure(self, doing: str, exc: BaseException) -> PlatformError:
        return PlatformError(f"cannot {doing} the {SERVICE_NAME} service: {winlog.describe(exc)}")


class WindowsServiceRuntime:
    """The agent's runtime under the SCM: ``ready`` reports the service running (once, and not after a stop
    was asked for), ``stopping`` reports it stop-pending; status lines go to the log (the event log too), as
    the SCM keeps none. Not ``supervised``: see the module's docstring."""

    supervised = False

    def __init__(self, report: Callable[[int, int], None], stop_hint_ms: int = STOP_HINT_MS) -> None:
        #: ``report(state, wait_hint_ms)``: tells the SCM.
        self._report = report
        #: The wait hint of stop-pending reports: ``daemon.shutdown_timeout`` and a margin, in milliseconds.
        self.stop_hint_ms = stop_hint_ms
        self._lock = threading.Lock()
        self.ready_at: float | None = None
        self.running_reported = False
        self.stop_requested = False

    def ready(self, status: str) -> None:
        self.ready_at = time.monotonic()
        log.info("%s", status)
        self.report_running()

    def report_running(self) -> bool:
        """Report running unless it was, or a stop was asked for; whether it did."""
        with self._lock:
            if self.running_reported or self.stop_requested:
                return False
            self.running_reported = True
            self._report(SERVICE_RUNNING, 0)
            return True

    def report_starting(self) -> bool:
        """Report start-pending (the checkpoint advances) while neither running nor stopping; whether it did."""
        with self._lock:
            if self.running_reported or self.stop_requested:
                return False
            self._report(SERVICE_START_PENDING, START_HINT_MS)
            return True

    def uptime(self) -> float | None:
        return None if self.ready_at is None else time.monotonic() - self.ready_at

    def committed(self, version: str) -> None:
        log.info("openstack-agent %s confirmed", version)

    def stopping(self) -> None:
        with self._lock:
            self.stop_requested = True
            self._report(SERVICE_STOP_PENDING, self.stop_hint_ms)


class ChildJob:
    """A job object that ends its processes when the service's process ends (see the module's docstring)."""

    def __init__(self, win32: Win32) -> None:
        self.win32 = win32
        job = win32.win32job
        try:
            self.handle = job.CreateJobObject(None, "")
            info = job.QueryInformationJobObject(self.handle, job.JobObjectExtendedLimitInformation)
            info["BasicLimitInformation"]["LimitFlags"] |= job.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            job.SetInformationJobObject(self.handle, job.JobObjectExtendedLimitInformation, info)
        except win32.pywintypes.error as exc:
            raise PlatformError(f"cannot make the job object the agent runs in: {winlog.describe(exc)}") from exc

    def __call__(self, child: subprocess.Popen[bytes]) -> None:
        """Put ``child`` in the job. A failure is logged, not raised: the agent serves all the same, only it
        would outlive a service killed outright."""
        api, error = self.win32.win32api, self.win32.pywintypes.error
        try:
            process = api.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, child.pid)
            try:
                self.win32.win32job.AssignProcessToJobObject(self.handle, process)
            finally:
                api.CloseHandle(process)
        except error as exc:
            log.error("the agent (pid %d) is not in the service's job object, so it would outlive a service "
                      "killed outright: %s", child.pid, winlog.describe(exc))


def hosted(config: Config, runtime: Runtime, win32: Win32 | None = None, build: tuple[Path, str] | None = None,
           ) -> Hosted:
    """What the service runs (see the module's docstring): the supervisor when there is a build to make a
    release of (``build``, the folder and version of the frozen program; this program's when it is frozen) or a
    current release, with each child in a job object (``win32``'s); else the agent itself."""
    from agent import config as config_module
    from agent import logs
    from agent.daemon import Agent
    from agent.install import Layout
    from agent.supervisor import ServiceSupervisor

    if build is None and getattr(sys, "frozen", False):
        build = (Path(sys.executable).parent, __version__)
    if build is None:
        try:
            current = Layout(config.install_path).current
        except ReleaseError as exc:
            log.error("%s", exc)
            current = None
        if current is None:
            log.warning("no release under %s and this service is not a frozen build: the agent runs "
                        "unsupervised in the service's process, and cannot update itself; its log is %s",
                        config.install_path, config.log_file or "stderr")
            # No child writes the agent's file then: this process is its one writer.
            logs.setup(config.log_level, config.log_file)
            return Agent(config, reload=config_module.load, runtime=runtime)
    job = ChildJob(win32 or Win32.load())
    return ServiceSupervisor(config, runtime, build=build, contain=job)


def _default_config() -> Config:
    """The configuration file's (``%ProgramData%\\OpenStackAgent\\agent.toml``), checked, with the service's log
    set up (its own file beside the agent's, and the event log) before anything else runs."""
    from agent import config as config_module
    from agent import logs
    from agent.machines import host_commands

    resolved = config_module.resolve()
    config_module.validate(resolved.config, host_commands(), resolved.sources)
    logs.setup(resolved.config.log_level, winlog.service_log_file(resolved.config.log_file))
    return resolved.config


def _secure_state_dir(path: Path) -> None:
    from agent.winacl import secure_state_dir

    secure_state_dir(path)


class AgentServiceBase:
    """The service's behaviour; ``service_class`` joins it with pywin32's ``ServiceFramework``."""

    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = DISPLAY_NAME
    _svc_description_ = DESCRIPTION
    #: How the service gets its configuration, secures its state directory and builds its agent (replaced by
    #: the tests, which run it on the in-memory XenStore).
    load_config: Callable[[], Config] = staticmethod(_default_config)
    secure_state_dir: Callable[[Path], None] = staticmethod(_secure_state_dir)
    make_agent: Callable[[Config, Runtime], Hosted] = staticmethod(hosted)
    start_wait: float = START_WAIT_S

    # Given by ServiceFramework.
    ReportServiceStatus: Callable[..., None]

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)  # type: ignore[call-arg]  # ServiceFramework's, which follows in the class
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._agent: Hosted | None = None
        self.runtime = WindowsServiceRuntime(self._report)

    def _report(self, state: int, wait_hint_ms: int) -> None:
        self.ReportServiceStatus(state, waitHint=wait_hint_ms)

    def SvcRun(self) -> None:
        """The service's thread: the host has reported start-pending; run the agent, reporting running when it
        is ready; return once it has stopped (the host then reports stopped)."""
        beat = threading.Thread(target=self._starting, name="service-start", daemon=True)
        beat.start()
        try:
            self.SvcDoRun()
        finally:
            self._stop.set()
            beat.join()
        self.ReportServiceStatus(SERVICE_STOP_PENDING, waitHint=self.runtime.stop_hint_ms)

    def _starting(self) -> None:
        """Advance the start-pending checkpoint until the agent is ready or stopping; past ``start_wait``,
        report running anyway, so that the SCM lets the service be stopped."""
        deadline = time.monotonic() + self.start_wait
        while not self.runtime.running_reported and not self._stop.is_set():
            if time.monotonic() >= deadline:
                if self.runtime.report_running():
                    log.warning("the agent is still starting after %g s (waiting for XenStore?); the service "
                                "reports running so that it can be stopped", self.start_wait)
                return
            if not self.runtime.report_starting():
                return
            self._stop.wait(START_BEAT_S)

    def SvcDoRun(self) -> None:
        try:
            config = self.load_config()
            self.runtime.stop_hint_ms = int((config.shutdown_timeout + STOP_MARGIN_S) * 1000)
            log.info("openstack-agent %s service starting", __version__)
            self.secure_state_dir(config.state_path)
            with self._lock:
                if self.runtime.stop_requested:
                    log.info("stopped before the agent started")
                    return
                self._agent = agent = self.make_agent(config, self.runtime)
            agent.run()
        except AgentError as exc:
            # Raised on, so that the host reports the service stopped with an error and the SCM's recovery
            # actions restart it.
            log.error("%s", exc)
            raise

    def SvcStop(self) -> None:
        """In the dispatcher thread: ask the agent to stop (it closes its journal, then SvcRun returns)."""
        log.info("stop requested by the Service Control Manager")
        with self._lock:
            self.runtime.stopping()
            agent = self._agent
        self._stop.set()
        if agent is not None:
            agent.stop()

    def SvcShutdown(self) -> None:
        """The system is shutting down: stop as on a stop request."""
        self.SvcStop()


def service_class(win32: Win32) -> type:
    """The service class, a ``win32serviceutil.ServiceFramework`` of ``win32``'s."""
    framework = win32.win32serviceutil.ServiceFramework
    return type("AgentService", (AgentServiceBase, framework), {"__module__": __name__})


@functools.cache
def _real_service_class() -> type:
    return service_class(Win32.load())


def __getattr__(name: str) -> Any:
    # pythonservice.exe imports this module and takes AgentService from it (CLASS_STRING); built on first use,
    # so that the module imports where pywin32 is missing.
    if name == "AgentService":
        return _real_service_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def host(win32: Win32 | None = None) -> None:
    """Run the service in this process, as the SCM started it (the frozen program's entry, ``service run``):
    ``StartServiceCtrlDispatcher`` returns once the service has stopped. Run by hand it fails at once with
    ERROR_FAILED_SERVICE_CONTROLLER_CONNECT (1063)."""
    win32 = win32 or Win32.load()
    win32.servicemanager.Initialize()
    win32.servicemanager.PrepareToHostSingle(service_class(win32))
    try:
        win32.servicemanager.StartServiceCtrlDispatcher()
    except win32.pywintypes.error as exc:
        if getattr(exc, "winerror", None) == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            raise PlatformError("'service run' is what the Service Control Manager starts; start the service "
                                "with 'openstack-agent service start', or run the agent here with "
                                "'openstack-agent run'") from exc
        raise win32.failure("run", exc) from exc


# -- installation and control -------------------------------------------------------------------------


def command_line(win32: Win32) -> tuple[str, bool]:
    """What the SCM runs, and whether it is pythonservice.exe (which then needs the class string): the frozen
    program with ``service run`` (as the MSI installs it), or pywin32's service host."""
    if getattr(sys, "frozen", False):
        return f'"{sys.executable}" service run', False
    return f'"{win32.win32serviceutil.LocatePythonServiceExe()}"', True


def failure_actions() -> dict[str, Any]:
    """The recovery actions: restart after each failure, with ``RESTART_DELAYS_MS``."""
    return {"ResetPeriod": RESET_PERIOD_S, "RebootMsg": None, "Command": None,
            "Actions": tuple((SC_ACTION_RESTART, delay) for delay in RESTART_DELAYS_MS)}


def install(win32: Win32, wait: float = 60.0, interval: float = 0.25) -> list[tuple[str, str]]:
    """Create the service (or take over the one of that name, the earlier agent's): automatic start, the
    recovery actions, the description; register the event log source. What was done, for the output.

    A service of that name that runs (the earlier agent) is stopped first, waiting up to ``wait`` seconds, and
    started again once it is this agent's: the SCM reads a service's configuration only when it starts it, so
    the earlier program would otherwise keep running, and 'service start' would find it running."""
    service, error = win32.win32service, win32.pywintypes.error
    binary, hosted = command_line(win32)
    restart = False
    notes: list[tuple[str, str]] = []
    try:
        scm = service.OpenSCManager(None, None, SC_MANAGER_ALL_ACCESS)
    except error as exc:
        raise win32.failure("install", exc) from exc
    try:
        try:
            handle = service.CreateService(scm, SERVICE_NAME, DISPLAY_NAME, SERVICE_ALL_ACCESS,
                                           SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START, SERVICE_ERROR_NORMAL,
                                           binary, None, 0, None, None, None)
            done = "installed"
        except error as exc:
            if getattr(exc, "winerror", None) != ERROR_SERVICE_EXISTS:
                raise
            handle = service.OpenService(scm, SERVICE_NAME, SERVICE_ALL_ACCESS)
            try:
                restart, notes = _stop_to_replace(win32, handle, wait, interval)
                service.ChangeServiceConfig(handle, SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START,
                                            SERVICE_ERROR_NORMAL, binary, None, 0, None, None, None, DISPLAY_NAME)
            except BaseException:
                service.CloseServiceHandle(handle)
                raise
            done = "updated (it existed: now this agent's)"
        try:
            service.ChangeServiceConfig2(handle, SERVICE_CONFIG_DESCRIPTION, DESCRIPTION)
            service.ChangeServiceConfig2(handle, SERVICE_CONFIG_FAILURE_ACTIONS, failure_actions())
            service.ChangeServiceConfig2(handle, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True)
        finally:
            service.CloseServiceHandle(handle)
        if hosted:
            win32.win32serviceutil.InstallPythonClassString(CLASS_STRING, SERVICE_NAME)
    except error as exc:
        raise win32.failure("install", exc) from exc
    finally:
        service.CloseServiceHandle(scm)
    winlog.register_source(win32.win32evtlogutil, win32.win32service, win32.pywintypes)
    if restart:
        notes = [("was running", f"stopped, then started again: {start(win32, wait, interval)}")]
    delays = ", ".join(f"{delay // 1000} s" for delay in RESTART_DELAYS_MS)
    return [("service", f"{SERVICE_NAME} {done}"), *notes, ("runs", binary), ("start", "automatic"),
            ("on failure", f"restart after {delays}"),
            ("event log", f"source {winlog.SOURCE} in the {winlog.LOG_TYPE} log")]


def _stop_to_replace(win32: Win32, handle: Any, wait: float,
                     interval: float) -> tuple[bool, list[tuple[str, str]]]:
    """Stop the existing service if it is not stopped: whether it was running and has stopped (install then
    starts it again), and when it has not stopped in time, the output's line saying it must be restarted."""
    if _state(win32, handle) == SERVICE_STOPPED:
        return False, []
    try:
        became = _stop_handle(win32, handle, wait, interval, "install")
    except PlatformError as exc:
        raise PlatformError(f"the running {SERVICE_NAME} service must stop before this agent replaces it, and it "
                            f"did not ({exc}); nothing was changed: stop it ('sc stop {SERVICE_NAME}', or end its "
                            "process) and install again") from exc
    if became in ("stopped", "not running"):
        return True, []
    return False, [("restart needed", f"the earlier {SERVICE_NAME} is {became} and runs its own program until it "
                               "stops; then start this one with 'openstack-agent service start'")]


def remove(win32: Win32, wait: float, interval: float = 0.25) -> list[tuple[str, str]]:
    """Stop the service if it runs, delete it and its event log source."""
    service, error = win32.win32service, win32.pywintypes.error
    stopped = stop(win32, wait, interval)
    try:
        scm = service.OpenSCManager(None, None, SC_MANAGER_ALL_ACCESS)
        try:
            handle = service.OpenService(scm, SERVICE_NAME, SERVICE_ALL_ACCESS)
            try:
                service.DeleteService(handle)
            finally:
                service.CloseServiceHandle(handle)
        finally:
            service.CloseServiceHandle(scm)
    except error as exc:
        raise win32.failure("remove", exc) from exc
    winlog.remove_source(win32.win32evtlogutil, win32.pywintypes)
    return [("service", f"{SERVICE_NAME} removed"), ("was", stopped),
            ("event log", f"source {winlog.SOURCE} removed (its past events stay in the log)")]


def _state(win32: Win32, handle: Any) -> int:
    return int(win32.win32service.QueryServiceStatus(handle)[1])


def _wait_for(win32: Win32, handle: Any, wanted: int, wait: float, interval: float) -> int:
    """The service's state once it is ``wanted`` or stopped, or after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    state = _state(win32, handle)
    while state not in (wanted, SERVICE_STOPPED) and time.monotonic() < deadline:
        # The SCM offers no wait for another process's service; it is asked a few times a second, as
        # win32serviceutil does.
        time.sleep(interval)
        state = _state(win32, handle)
    return state


@contextlib.contextmanager
def _opened(win32: Win32, doing: str) -> Iterator[Any]:
    """A handle to the installed service, closed (with the SCM's) on the way out."""
    service, error = win32.win32service, win32.pywintypes.error
    try:
        scm = service.OpenSCManager(None, None, SC_MANAGER_ALL_ACCESS)
    except error as exc:
        raise win32.failure(doing, exc) from exc
    try:
        handle = service.OpenService(scm, SERVICE_NAME, SERVICE_ALL_ACCESS)
    except error as exc:
        service.CloseServiceHandle(scm)
        if getattr(exc, "winerror", None) == ERROR_SERVICE_DOES_NOT_EXIST:
            raise PlatformError(f"the {SERVICE_NAME} service is not installed; install it with "
                                "'openstack-agent service install'") from exc
        raise win32.failure(doing, exc) from exc
    try:
        yield handle
    finally:
        service.CloseServiceHandle(handle)
        service.CloseServiceHandle(scm)


def start(win32: Win32, wait: float, interval: float = 0.25) -> str:
    """Start the service and wait until it runs; what it is then, in words."""
    with _opened(win32, "start") as handle:
        try:
            win32.win32service.StartService(handle, None)
        except win32.pywintypes.error as exc:
            if getattr(exc, "winerror", None) != ERROR_SERVICE_ALREADY_RUNNING:
                raise win32.failure("start", exc) from exc
            return "already running"
        state = _wait_for(win32, handle, SERVICE_RUNNING, wait, interval)
    if state == SERVICE_RUNNING:
        return "running"
    if state == SERVICE_STOPPED:
        raise PlatformError(f"the {SERVICE_NAME} service stopped while starting; see the Application event "
                            f"log (source {winlog.SOURCE}) and the log files: the service's "
                            f"{winlog.service_log_file('OpenStackAgent.log')} beside the agent's OpenStackAgent.log, "
                            "in %WINDIR%\\Logs unless daemon.log_file says otherwise")
    return f"still starting after {wait:g} s"


def stop(win32: Win32, wait: float, interval: float = 0.25) -> str:
    """Stop the service and wait until it has stopped; what it is then, in words."""
    with _opened(win32, "stop") as handle:
        return _stop_handle(win32, handle, wait, interval, "stop")


def _stop_handle(win32: Win32, handle: Any, wait: float, interval: float, doing: str) -> str:
    """``stop`` on an open handle; ``doing`` names the command in a failure."""
    try:
        win32.win32service.ControlService(handle, SERVICE_CONTROL_STOP)
    except win32.pywintypes.error as exc:
        code = getattr(exc, "winerror", None)
        if code == ERROR_SERVICE_NOT_ACTIVE:
            return "not running"
        if code == ERROR_SERVICE_CANNOT_ACCEPT_CTRL and _state(win32, handle) == SERVICE_START_PENDING:
            raise PlatformError(f"the {SERVICE_NAME} service is starting and cannot be stopped yet; try again "
                                f"once it runs (at most {START_WAIT_S:g} s after its start)") from exc
        if code != ERROR_SERVICE_CANNOT_ACCEPT_CTRL:  # else already stopping: wait for it below
            raise win32.failure(doing, exc) from exc
    state = _wait_for(win32, handle, SERVICE_STOPPED, wait, interval)
    return "stopped" if state == SERVICE_STOPPED else f"still stopping after {wait:g} s"
