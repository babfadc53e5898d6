"""A stand-in for the Service Control Manager and pywin32's service, event log and security modules.

pywin32 cannot run here. ``FakeSCM.win32()`` gives ``win32service``, ``win32serviceutil``, ``servicemanager``,
``win32evtlogutil`` and ``pywintypes`` that act on one recorded SCM, and ``FakeSecurity`` gives
``win32security`` and ``win32file``. They follow recorded facts about the real ones (pywin32's win32service.i,
win32serviceutil.py, PythonService.cpp, win32evtlogutil.py, win32security; the SCM's documentation):

- Every failure is ``pywintypes.error(winerror, funcname, strerror)``.
- ``CreateService`` of a taken name: ERROR_SERVICE_EXISTS (1073); ``OpenService`` of an unknown one:
  ERROR_SERVICE_DOES_NOT_EXIST (1060); ``OpenSCManager`` for all access without administrator rights:
  ERROR_ACCESS_DENIED (5).
- ``StartService`` sets the service start-pending and hosts it as pythonservice.exe does, in a thread of its
  own: the class is made with ``[name]``, the host reports start-pending (no control accepted, wait hint
  5000 ms), calls ``SvcRun`` and reports stopped when it returns, with ERROR_SERVICE_SPECIFIC_ERROR (1066) and
  0x20000001 when it raised. Starting a service that is not stopped: ERROR_SERVICE_ALREADY_RUNNING (1056).
- ``ControlService``: a stopped service gives ERROR_SERVICE_NOT_ACTIVE (1062), a start- or stop-pending one
  ERROR_SERVICE_CANNOT_ACCEPT_CTRL (1061), a control the service does not accept
  ERROR_INVALID_SERVICE_CONTROL (1052); otherwise the handler runs (in the caller's thread here, the dispatcher
  thread there) and the status is returned. SERVICE_CONTROL_SHUTDOWN is refused from ``ControlService``
  (ERROR_INVALID_PARAMETER, 87): only the system sends it (``FakeSCM.shutdown``).
- ``servicemanager.StartServiceCtrlDispatcher()`` in a process the SCM did not start fails at once with
  ERROR_FAILED_SERVICE_CONTROLLER_CONNECT (1063).
- ``SetServiceStatus(handle, (type, state, accepted, win32ExitCode, serviceExitCode, checkPoint, waitHint))``.
- ``ChangeServiceConfig2``: the description is a string, the failure actions a dict with exactly the keys
  ResetPeriod, RebootMsg, Command and Actions (a sequence of (type, delay) pairs of ints; TypeError
  otherwise), the failure actions flag a boolean.
- ``DeleteService`` marks the service for deletion; it goes once stopped (ERROR_SERVICE_MARKED_FOR_DELETE,
  1072, meanwhile).
- A stop that is a failure (an error exit code while the failure actions flag is set) is answered by the
  recovery action; the fake records the restart it would make (``restarts``) instead of making it.
- ``win32evtlogutil.AddSourceToRegistry(appName, msgDLL=None, eventLogType="Application", ...)``,
  ``RemoveSourceFromRegistry(appName, eventLogType="Application")`` (a missing source is no error),
  ``ReportEvent(appName, eventID, eventCategory=0, eventType=EVENTLOG_ERROR_TYPE, strings=None, ...)``.
- ``win32security.CreateWellKnownSid(type)`` gives a ``PySID``, ``ACL()`` an empty ``PyACL`` with
  ``AddAccessAllowedAceEx(revision, flags, mask, sid)``, ``GetAceCount()`` and ``GetAce(index)`` (``((type,
  flags), mask, sid)``); ``SECURITY_DESCRIPTOR()`` and ``SECURITY_ATTRIBUTES()`` (its ``SECURITY_DESCRIPTOR``);
  ``GetNamedSecurityInfo(name, type, info)`` a descriptor, ``SetNamedSecurityInfo(name, type, info, owner,
  group, dacl, sacl)`` records what it set and propagates a DACL's inheritable entries to what a directory holds
  (replacing inherited entries, keeping owners and explicit entries). ``win32file.CreateDirectory(name, sa)``:
  ERROR_ALREADY_EXISTS (183) for a name taken; ``CreateFile(name, access, share, sa, CREATE_NEW, flags,
  template)``: ERROR_FILE_EXISTS (80).
- ``os.replace`` (``MoveFileExW``) of a file, or over a file, that another process holds open without
  ``FILE_SHARE_DELETE`` (CPython's ``open`` never asks for it) fails with ERROR_SHARING_VIOLATION (32), raised
  as ``PermissionError`` (``HeldFiles``).
"""

from __future__ import annotations

import errno
import os
import threading
import types
from dataclasses import dataclass, field
from typing import Any

from agent.winservice import Win32

ERROR_ACCESS_DENIED = 5
ERROR_INVALID_PARAMETER = 87
ERROR_INVALID_SERVICE_CONTROL = 1052
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_SERVICE_MARKED_FOR_DELETE = 1072
ERROR_SERVICE_EXISTS = 1073
MESSAGES = {
    ERROR_ACCESS_DENIED: "Access is denied.",
    ERROR_INVALID_PARAMETER: "The parameter is incorrect.",
    ERROR_INVALID_SERVICE_CONTROL: "The requested control is not valid for this service.",
    ERROR_SERVICE_ALREADY_RUNNING: "An instance of the service is already running.",
    ERROR_SERVICE_DOES_NOT_EXIST: "The specified service does not exist as an installed service.",
    ERROR_SERVICE_CANNOT_ACCEPT_CTRL: "The service cannot accept control messages at this time.",
    ERROR_SERVICE_NOT_ACTIVE: "The service has not been started.",
    ERROR_SERVICE_MARKED_FOR_DELETE: "The specified service has been marked for deletion.",
    ERROR_SERVICE_EXISTS: "The specified service already exists.",
}

SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_AUTO_START, SERVICE_DEMAND_START = 2, 3
SERVICE_STOPPED, SERVICE_START_PENDING, SERVICE_STOP_PENDING, SERVICE_RUNNING = 1, 2, 3, 4
SERVICE_ACCEPT_STOP, SERVICE_ACCEPT_PAUSE_CONTINUE, SERVICE_ACCEPT_SHUTDOWN = 1, 2, 4
SERVICE_CONTROL_STOP, SERVICE_CONTROL_PAUSE, SERVICE_CONTROL_CONTINUE = 1, 2, 3
SERVICE_CONTROL_INTERROGATE, SERVICE_CONTROL_SHUTDOWN = 4, 5
SERVICE_CONFIG_DESCRIPTION, SERVICE_CONFIG_FAILURE_ACTIONS, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG = 1, 2, 4
SC_MANAGER_ALL_ACCESS = 0xF003F
SERVICE_ALL_ACCESS = 0xF01FF
EVENTLOG_ERROR_TYPE, EVENTLOG_WARNING_TYPE, EVENTLOG_INFORMATION_TYPE = 1, 2, 4
PYTHONSERVICE = r"C:\Python311\pythonservice.exe"
WIN32SERVICE_PYD = r"C:\Python311\Lib\site-packages\win32\win32service.pyd"
CONTROL_ACCEPTS = {SERVICE_CONTROL_STOP: SERVICE_ACCEPT_STOP, SERVICE_CONTROL_SHUTDOWN: SERVICE_ACCEPT_SHUTDOWN,
                   SERVICE_CONTROL_PAUSE: SERVICE_ACCEPT_PAUSE_CONTINUE,
                   SERVICE_CONTROL_CONTINUE: SERVICE_ACCEPT_PAUSE_CONTINUE}


class error(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


def fail(code: int, function: str) -> error:
    return error(code, function, MESSAGES[code])


@dataclass
class Status:
    """One SetServiceStatus call, as the SCM received it."""

    state: int
    accepted: int
    exit_code: int
    service_exit_code: int
    checkpoint: int
    wait_hint: int


@dataclass
class Service:
    """A service in the SCM's database."""

    name: str
    display_name: str
    service_type: int
    start_type: int
    error_control: int
    binary: str
    description: str | None = None
    failure_actions: dict[str, Any] | None = None
    failure_actions_flag: bool = False
    python_class: str | None = None
    state: int = SERVICE_STOPPED
    accepted: int = 0
    statuses: list[Status] = field(default_factory=list)
    marked_for_delete: bool = False
    handler: Any = None
    thread: threading.Thread | None = None
    #: The service class's instance the host made for the current (or last) run.
    instance: Any = None

    def status_tuple(self) -> tuple[int, ...]:
        last = self.statuses[-1] if self.statuses else Status(self.state, 0, 0, 0, 0, 0)
        return (SERVICE_WIN32_OWN_PROCESS, self.state, self.accepted, last.exit_code, last.service_exit_code,
                last.checkpoint, last.wait_hint)

    def states(self) -> list[int]:
        """The states reported, each once per run of the same state (the checkpoints are left out)."""
        runs: list[int] = []
        for status in self.statuses:
            if not runs or runs[-1] != status.state:
                runs.append(status.state)
        return runs


@dataclass
class Handle:
    kind: str
    name: str = ""
    closed: bool = False


def fake_module(name: str, owner: object, functions: tuple[str, ...], constants: dict[str, Any],
                prefixes: tuple[str, ...]) -> types.ModuleType:
    """A stand-in module ``name``: ``owner``'s methods of those names, and the ``constants`` with those prefixes."""
    module = types.ModuleType(name)
    for function in functions:
        setattr(module, function, getattr(owner, function))
    for constant, value in constants.items():
        if constant.startswith(prefixes):
            setattr(module, constant, value)
    return module


class FakeSCM:
    """The Service Control Manager, its event log, and the service classes the host would load."""

    def __init__(self, elevated: bool = True) -> None:
        self.elevated = elevated
        self.services: dict[str, Service] = {}
        #: Service name -> the class pythonservice.exe would load for it (the registry's PythonClass).
        self.classes: dict[str, type] = {}
        #: (log, source) -> the registry values of an event source.
        self.sources: dict[tuple[str, str], dict[str, Any]] = {}
        #: Reported events: (source, event id, category, type, strings).
        self.events: list[tuple[str, int, int, int, list[str]]] = []
        self.restarts: list[str] = []
        self.handles: list[Handle] = []
        #: The class ``servicemanager.PrepareToHostSingle`` was given.
        self.prepared: type | None = None
        from tests.fakes.win32job import FakeJobs  # which raises this module's pywintypes.error

        #: The job objects and process handles made through ``win32job`` and ``win32api``.
        self.jobs = FakeJobs()
        self._lock = threading.RLock()

    # -- the modules --------------------------------------------------------------------------------

    def win32(self) -> Win32:
        pywintypes = types.ModuleType("pywintypes")
        pywintypes.error = error  # type: ignore[attr-defined]
        service = fake_module("win32service", self, ("OpenSCManager", "OpenService", "CreateService",
                                                     "ChangeServiceConfig", "ChangeServiceConfig2", "DeleteService",
                                                     "CloseServiceHandle", "StartService", "ControlService",
                                                     "QueryServiceStatus", "SetServiceStatus"),
                              globals(), ("SERVICE_", "SC_"))
        service.__file__ = WIN32SERVICE_PYD
        service.error = error  # type: ignore[attr-defined]
        manager = types.ModuleType("servicemanager")
        manager.RegisterServiceCtrlHandler = self.register_handler  # type: ignore[attr-defined]
        manager.SetEventSourceName = lambda name, register_now=False: None  # type: ignore[attr-defined]
        manager.Initialize = lambda name=None, file=None: None  # type: ignore[attr-defined]
        manager.PrepareToHostSingle = self.prepare  # type: ignore[attr-defined]
        manager.StartServiceCtrlDispatcher = self.dispatch  # type: ignore[attr-defined]
        util = types.ModuleType("win32serviceutil")
        util.ServiceFramework = self._framework(service, manager)  # type: ignore[attr-defined]
        util.LocatePythonServiceExe = lambda exe=None: PYTHONSERVICE  # type: ignore[attr-defined]
        util.InstallPythonClassString = self.install_python_class  # type: ignore[attr-defined]
        evtlogutil = types.ModuleType("win32evtlogutil")
        evtlogutil.AddSourceToRegistry = self.add_source  # type: ignore[attr-defined]
        evtlogutil.RemoveSourceFromRegistry = self.remove_source  # type: ignore[attr-defined]
        evtlogutil.ReportEvent = self.report_event  # type: ignore[attr-defined]
        return Win32(service, util, manager, evtlogutil, pywintypes, *self.jobs.modules())

    @staticmethod
    def _framework(win32service: types.ModuleType, manager: Any) -> type:
        """pywin32's ServiceFramework, as win32serviceutil.py has it."""

        class ServiceFramework:
            _svc_deps_ = None
            _exe_name_ = None
            _exe_args_ = None
            _svc_description_ = None

            def __init__(self, args: list[str]) -> None:
                # The real one imports servicemanager here, the module of the process hosting the service.
                self.ssh = manager.RegisterServiceCtrlHandler(args[0], self.ServiceCtrlHandlerEx, True)
                manager.SetEventSourceName(self._svc_name_)  # type: ignore[attr-defined]
                self.checkPoint = 0

            def GetAcceptedControls(self) -> int:
                accepted = 0
                if hasattr(self, "SvcStop"):
                    accepted |= SERVICE_ACCEPT_STOP
                if hasattr(self, "SvcPause") and hasattr(self, "SvcContinue"):
                    accepted |= SERVICE_ACCEPT_PAUSE_CONTINUE
                if hasattr(self, "SvcShutdown"):
                    accepted |= SERVICE_ACCEPT_SHUTDOWN
                return accepted

            def ReportServiceStatus(self, serviceStatus: int, waitHint: int = 5000,
                                    win32ExitCode: int = 0, svcExitCode: int = 0) -> None:
                accepted = 0 if serviceStatus == SERVICE_START_PENDING else self.GetAcceptedControls()
                if serviceStatus in (SERVICE_RUNNING, SERVICE_STOPPED):
                    checkpoint = 0
                else:
                    self.checkPoint += 1
                    checkpoint = self.checkPoint
                win32service.SetServiceStatus(self.ssh, (SERVICE_WIN32_OWN_PROCESS, serviceStatus, accepted,
                                                         win32ExitCode, svcExitCode, checkpoint, waitHint))

            def SvcInterrogate(self) -> None:
                self.ReportServiceStatus(SERVICE_RUNNING)

            def SvcOther(self, control: int) -> None:
                pass

            def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: Any) -> Any:
                if control == SERVICE_CONTROL_STOP:
                    return self.SvcStop()  # type: ignore[attr-defined]
                if control == SERVICE_CONTROL_SHUTDOWN:
                    return self.SvcShutdown()  # type: ignore[attr-defined]
                if control == SERVICE_CONTROL_INTERROGATE:
                    return self.SvcInterrogate()
                return self.SvcOther(control)

            def SvcRun(self) -> None:
                self.ReportServiceStatus(SERVICE_RUNNING)
                self.SvcDoRun()  # type: ignore[attr-defined]
                self.ReportServiceStatus(SERVICE_STOP_PENDING)

        return ServiceFramework

    # -- win32service ---------------------------------------------------------------------------------

    def _handle(self, kind: str, name: str = "") -> Handle:
        handle = Handle(kind, name)
        self.handles.append(handle)
        return handle

    def _service(self, handle: Handle, function: str) -> Service:
        if handle.closed or handle.kind != "service" or handle.name not in self.services:
            raise error(6, function, "The handle is invalid.")
        return self.services[handle.name]

    def OpenSCManager(self, machine: str | None, database: str | None, access: int) -> Handle:
        if not self.elevated and access == SC_MANAGER_ALL_ACCESS:
            raise fail(ERROR_ACCESS_DENIED, "OpenSCManager")
        return self._handle("scm")

    def CreateService(self, scm: Handle, name: str, display_name: str, access: int, service_type: int,
                      start_type: int, error_control: int, binary: str, load_order_group: str | None,
                      fetch_tag: int, dependencies: Any, account: str | None, password: str | None) -> Handle:
        with self._lock:
            if name in self.services:
                raise fail(ERROR_SERVICE_MARKED_FOR_DELETE if self.services[name].marked_for_delete
                           else ERROR_SERVICE_EXISTS, "CreateService")
            self.services[name] = Service(name, display_name, service_type, start_type, error_control, binary)
            return self._handle("service", name)

    def OpenService(self, scm: Handle, name: str, access: int) -> Handle:
        if name not in self.services:
            raise fail(ERROR_SERVICE_DOES_NOT_EXIST, "OpenService")
        return self._handle("service", name)

    def ChangeServiceConfig(self, handle: Handle, service_type: int, start_type: int,
                            error_control: int, binary: str | None, load_order_group: str | None,
                            fetch_tag: int, dependencies: Any, account: str | None, password: str | None,
                            display_name: str | None) -> None:
        service = self._service(handle, "ChangeServiceConfig")
        no_change = 0xFFFFFFFF
        service.service_type = service.service_type if service_type == no_change else service_type
        service.start_type = service.start_type if start_type == no_change else start_type
        service.error_control = service.error_control if error_control == no_change else error_control
        service.binary = binary or service.binary
        service.display_name = display_name or service.display_name

    def ChangeServiceConfig2(self, handle: Handle, level: int, info: Any) -> None:
        service = self._service(handle, "ChangeServiceConfig2")
        if level == SERVICE_CONFIG_DESCRIPTION:
            if info is not None and not isinstance(info, str):
                raise TypeError("description must be a string")
            service.description = info
        elif level == SERVICE_CONFIG_FAILURE_ACTIONS:
            message = ("SERVICE_FAILURE_ACTIONS must be a dictionary containing {'ResetPeriod':int,'RebootMsg':"
                       "unicode,'Command':unicode,'Actions':sequence of 2 tuples(int,int)")
            if not isinstance(info, dict) or set(info) != {"ResetPeriod", "RebootMsg", "Command", "Actions"}:
                raise TypeError(message)
            actions = info["Actions"]
            if not isinstance(info["ResetPeriod"], int) or not all(
                    isinstance(a, tuple) and len(a) == 2 and all(isinstance(v, int) for v in a) for a in actions):
                raise TypeError(message)
            service.failure_actions = {**info, "Actions": tuple(actions)}
        elif level == SERVICE_CONFIG_FAILURE_ACTIONS_FLAG:
            service.failure_actions_flag = bool(info)
        else:
            raise ValueError(f"Info type {level} is not supported")

    def DeleteService(self, handle: Handle) -> None:
        with self._lock:
            service = self._service(handle, "DeleteService")
            if service.marked_for_delete:
                raise fail(ERROR_SERVICE_MARKED_FOR_DELETE, "DeleteService")
            service.marked_for_delete = True
            self._collect(service)

    def _collect(self, service: Service) -> None:
        if service.marked_for_delete and service.state == SERVICE_STOPPED:
            del self.services[service.name]

    def CloseServiceHandle(self, handle: Handle) -> None:
        handle.closed = True

    def QueryServiceStatus(self, handle: Handle) -> tuple[int, ...]:
        return self._service(handle, "QueryServiceStatus").status_tuple()

    def StartService(self, handle: Handle, args: Any) -> None:
        with self._lock:
            service = self._service(handle, "StartService")
            if service.marked_for_delete:
                raise fail(ERROR_SERVICE_MARKED_FOR_DELETE, "StartService")
            if service.state != SERVICE_STOPPED:
                raise fail(ERROR_SERVICE_ALREADY_RUNNING, "StartService")
            service.state, service.accepted = SERVICE_START_PENDING, 0
            service.statuses.clear()
            service.thread = threading.Thread(target=self._host, args=(service,), name=f"service-{service.name}",
                                              daemon=True)
            service.thread.start()

    def _host(self, service: Service) -> None:
        """PythonService.cpp's service_main."""
        instance = service.instance = self.classes[service.name]([service.name])
        self.SetServiceStatus(service.name, (SERVICE_WIN32_OWN_PROCESS, SERVICE_START_PENDING, 0, 0, 0, 0, 5000))
        failed = False
        try:
            instance.SvcRun()  # type: ignore[attr-defined]
        except Exception:
            failed = True
        if failed:
            self.SetServiceStatus(service.name, (SERVICE_WIN32_OWN_PROCESS, SERVICE_STOPPED, 0,
                                                 ERROR_SERVICE_SPECIFIC_ERROR, 0x20000001, 0, 0))
        else:
            self.SetServiceStatus(service.name, (SERVICE_WIN32_OWN_PROCESS, SERVICE_STOPPED, 0, 0, 0, 0, 0))

    def SetServiceStatus(self, handle: str, status: tuple[int, ...]) -> None:
        if len(status) != 7:
            raise TypeError("SERVICE_STATUS must be a tuple of 7 ints")
        with self._lock:
            service = self.services[handle]
            _type, state, accepted, exit_code, service_exit, checkpoint, hint = status
            service.statuses.append(Status(state, accepted, exit_code, service_exit, checkpoint, hint))
            service.state, service.accepted = state, accepted
            if state == SERVICE_STOPPED:
                if exit_code and service.failure_actions_flag and service.failure_actions:
                    self.restarts.append(service.name)
                self._collect(service)

    def ControlService(self, handle: Handle, control: int) -> tuple[int, ...]:
        service = self._service(handle, "ControlService")
        if control == SERVICE_CONTROL_SHUTDOWN:
            raise fail(ERROR_INVALID_PARAMETER, "ControlService")
        return self._control(service, control, "ControlService")

    def run_elsewhere(self, name: str, stops: bool = True) -> None:
        """``name`` runs in a process this fake does not host (the earlier agent's): it accepts stop and
        shutdown, and on a stop reports stopped (or, unless ``stops``, stays stop-pending)."""
        service = self.services[name]

        def handler(control: int, event_type: int, data: Any) -> None:
            if control in (SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN):
                self.SetServiceStatus(name, (SERVICE_WIN32_OWN_PROCESS, SERVICE_STOP_PENDING, 0, 0, 0, 1, 30_000))
                if stops:
                    self.SetServiceStatus(name, (SERVICE_WIN32_OWN_PROCESS, SERVICE_STOPPED, 0, 0, 0, 0, 0))

        service.handler = handler
        self.SetServiceStatus(name, (SERVICE_WIN32_OWN_PROCESS, SERVICE_RUNNING,
                                     SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN, 0, 0, 0, 0))

    def shutdown(self, name: str) -> None:
        """The system shuts down: SERVICE_CONTROL_SHUTDOWN to a service that accepts it."""
        service = self.services[name]
        if service.state == SERVICE_RUNNING and service.accepted & SERVICE_ACCEPT_SHUTDOWN:
            service.handler(SERVICE_CONTROL_SHUTDOWN, 0, None)

    def _control(self, service: Service, control: int, function: str) -> tuple[int, ...]:
        with self._lock:
            if service.state == SERVICE_STOPPED:
                raise fail(ERROR_SERVICE_NOT_ACTIVE, function)
            if service.state in (SERVICE_START_PENDING, SERVICE_STOP_PENDING):
                raise fail(ERROR_SERVICE_CANNOT_ACCEPT_CTRL, function)
            needed = CONTROL_ACCEPTS.get(control, 0)
            if needed and not service.accepted & needed:
                raise fail(ERROR_INVALID_SERVICE_CONTROL, function)
            handler = service.handler
        handler(control, 0, None)
        return service.status_tuple()

    # -- servicemanager, win32serviceutil -----------------------------------------------------------

    def register_handler(self, name: str, handler: Any, use_ex: bool = False) -> str:
        if name not in self.services:
            raise ValueError("The service name is not hosted by this process")
        self.services[name].handler = handler
        return name

    def prepare(self, klass: type) -> None:
        self.prepared = klass

    def dispatch(self) -> None:
        """StartServiceCtrlDispatcher in a process the SCM did not start (the only one the tests run)."""
        raise error(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT, "StartServiceCtrlDispatcher",
                    "The service process could not connect to the service controller.")

    def install_python_class(self, class_string: str, name: str) -> None:
        self.services[name].python_class = class_string

    # -- win32evtlogutil ----------------------------------------------------------------------------

    def add_source(self, app_name: str, msg_dll: str | None = None, event_log_type: str = "Application",
                   event_log_flags: int | None = None, category_dll: str | None = None,
                   category_count: int = 0) -> None:
        if not self.elevated:
            raise fail(ERROR_ACCESS_DENIED, "RegCreateKey")
        flags = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE
        self.sources[(event_log_type, app_name)] = {
            "EventMessageFile": msg_dll or r"C:\Python311\Lib\site-packages\win32\win32evtlog.pyd",
            "TypesSupported": flags if event_log_flags is None else event_log_flags}

    def remove_source(self, app_name: str, event_log_type: str = "Application") -> None:
        if not self.elevated:
            raise fail(ERROR_ACCESS_DENIED, "RegDeleteKey")
        self.sources.pop((event_log_type, app_name), None)

    def report_event(self, app_name: str, event_id: int, event_category: int = 0,
                     event_type: int = EVENTLOG_ERROR_TYPE, strings: list[str] | None = None,
                     data: bytes | None = None, sid: Any = None) -> None:
        self.events.append((app_name, event_id, event_category, event_type, list(strings or [])))


# -- win32security, win32file -------------------------------------------------------------------------

INHERITED_ACE = 0x10
SE_DACL_PROTECTED = 0x1000
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
ERROR_PATH_NOT_FOUND = 3
ERROR_FILE_EXISTS = 80
ERROR_ALREADY_EXISTS = 183
ERROR_INVALID_OWNER = 1307
CREATE_NEW = 1
MESSAGES.update({ERROR_INVALID_OWNER: "This security ID may not be assigned as the owner of this object.",
                 ERROR_PATH_NOT_FOUND: "The system cannot find the path specified.",
                 ERROR_FILE_EXISTS: "The file exists.",
                 ERROR_ALREADY_EXISTS: "Cannot create a file when that file already exists."})


@dataclass(frozen=True)
class PySID:
    """A SID: a well-known one by its type (WinLocalSystemSid 22, WinBuiltinAdministratorsSid 26, ...), or
    another account's by its string."""

    well_known: int | str


#: An ordinary user's SID, for what a user made.
USER = PySID("S-1-5-21-1004336348-1177238915-682003330-1001")


@dataclass
class PyACL:
    aces: list[tuple[str, int, int, int, PySID]] = field(default_factory=list)

    def AddAccessAllowedAceEx(self, revision: int, flags: int, mask: int, sid: PySID) -> None:
        if not isinstance(sid, PySID):
            raise TypeError("The object is not a PySID object")
        self.aces.append(("allow", revision, flags, mask, sid))

    def GetAceCount(self) -> int:
        return len(self.aces)

    def GetAce(self, index: int) -> tuple[tuple[int, int], int, PySID]:
        kind, _revision, flags, mask, sid = self.aces[index]
        return ((0 if kind == "allow" else 1, flags), mask, sid)


@dataclass
class PySECURITY_DESCRIPTOR:
    owner: PySID | None = None
    dacl: PyACL | None = None
    control: int = 0

    def SetSecurityDescriptorOwner(self, sid: PySID, defaulted: bool) -> None:
        self.owner = sid

    def SetSecurityDescriptorDacl(self, present: bool, acl: PyACL | None, defaulted: bool) -> None:
        self.dacl = acl if present else None

    def SetSecurityDescriptorControl(self, interest: int, bits: int) -> None:
        self.control = (self.control & ~interest) | (bits & interest)

    def GetSecurityDescriptorOwner(self) -> PySID | None:
        return self.owner

    def GetSecurityDescriptorDacl(self) -> PyACL | None:
        return self.dacl


@dataclass
class PySECURITY_ATTRIBUTES:
    SECURITY_DESCRIPTOR: PySECURITY_DESCRIPTOR = field(default_factory=PySECURITY_DESCRIPTOR)
    bInheritHandle: int = 0


class FileHandle:
    def __init__(self) -> None:
        self.closed = False

    def Close(self) -> None:
        self.closed = True


@dataclass
class FakeSecurity:
    """win32security's SID, ACL and security information calls and win32file's creations, over the real files
    of a test's directory; each file's owner and DACL kept here (``descriptors``, by path).

    A file made by the test (as by a process of the agent's, in a directory it secured) has Administrators as
    its owner and inherits its directory's inheritable entries. ``SetNamedSecurityInfo`` with a protected DACL
    propagates the new inheritable entries to what is inside, replacing the inherited ones only, as Windows'
    automatic propagation does."""

    #: The error every write (a creation, SetNamedSecurityInfo) fails with, if any.
    refuse: int | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: Path -> the security descriptor recorded for it.
    descriptors: dict[str, PySECURITY_DESCRIPTOR] = field(default_factory=dict)
    #: The files CreateFile made, with the handles it gave.
    handles: list[FileHandle] = field(default_factory=list)

    def modules(self) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
        """``(win32security, pywintypes, win32file)``."""
        security = types.ModuleType("win32security")
        security.CreateWellKnownSid = lambda known, domain=None: PySID(known)  # type: ignore[attr-defined]
        security.ACL = PyACL  # type: ignore[attr-defined]
        security.SECURITY_DESCRIPTOR = PySECURITY_DESCRIPTOR  # type: ignore[attr-defined]
        security.SECURITY_ATTRIBUTES = PySECURITY_ATTRIBUTES  # type: ignore[attr-defined]
        security.SetNamedSecurityInfo = self.set_named_security_info  # type: ignore[attr-defined]
        security.GetNamedSecurityInfo = self.get_named_security_info  # type: ignore[attr-defined]
        pywintypes = types.ModuleType("pywintypes")
        pywintypes.error = error  # type: ignore[attr-defined]
        win32file = types.ModuleType("win32file")
        win32file.CreateDirectory = self.create_directory  # type: ignore[attr-defined]
        win32file.CreateFile = self.create_file  # type: ignore[attr-defined]
        return security, pywintypes, win32file

    def set(self, path: os.PathLike[str] | str, owner: PySID, *explicit: tuple[int, int, PySID]) -> None:
        """Record ``path``'s owner and its explicit entries ((flags, mask, sid) each), as another account left
        them."""
        self.descriptors[str(path)] = PySECURITY_DESCRIPTOR(
            owner, PyACL([("allow", 2, flags, mask, sid) for flags, mask, sid in explicit]))

    def _refused(self, function: str) -> None:
        if self.refuse is not None:
            raise error(self.refuse, function, MESSAGES.get(self.refuse, "error"))

    def _inheritable(self, path: str) -> list[tuple[str, int, int, int, PySID]]:
        parent = self.descriptors.get(os.path.dirname(path))
        if parent is None or parent.dacl is None:
            return []
        # A subdirectory keeps the inheritance flags (to pass them on), a file does not.
        kept = 0x1 | 0x2 if os.path.isdir(path) else 0
        return [(kind, revision, INHERITED_ACE | flags & kept, mask, sid)
                for kind, revision, flags, mask, sid in parent.dacl.aces if flags & (0x1 | 0x2)]

    def get_named_security_info(self, name: str, object_type: int, info: int) -> PySECURITY_DESCRIPTOR:
        if not os.path.exists(name):
            raise fail(ERROR_PATH_NOT_FOUND, "GetNamedSecurityInfo")
        if name not in self.descriptors:
            self.descriptors[name] = PySECURITY_DESCRIPTOR(PySID(26), PyACL(self._inheritable(name)))
        return self.descriptors[name]

    def set_named_security_info(self, name: str, object_type: int, info: int, owner: PySID | None,
                                group: PySID | None, dacl: PyACL | None, sacl: Any) -> None:
        self._refused("SetNamedSecurityInfo")
        self.calls.append((name, object_type, info, owner, group, dacl, sacl))
        descriptor = self.descriptors.setdefault(name, PySECURITY_DESCRIPTOR())
        descriptor.owner = owner or descriptor.owner
        if dacl is not None:
            descriptor.dacl = PyACL(list(dacl.aces))
            descriptor.control |= SE_DACL_PROTECTED if info & PROTECTED_DACL_SECURITY_INFORMATION else 0
            self._propagate(name)

    def _propagate(self, directory: str) -> None:
        if not os.path.isdir(directory) or os.path.islink(directory):
            return
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            descriptor = self.descriptors.setdefault(path, PySECURITY_DESCRIPTOR(PySID(26), PyACL()))
            if descriptor.control & SE_DACL_PROTECTED:
                continue
            explicit = [ace for ace in (descriptor.dacl.aces if descriptor.dacl else []) if not ace[2] & INHERITED_ACE]
            descriptor.dacl = PyACL(explicit + self._inheritable(path))
            self._propagate(path)

    def create_directory(self, name: str, attributes: PySECURITY_ATTRIBUTES | None) -> None:
        if os.path.lexists(name):
            raise fail(ERROR_ALREADY_EXISTS, "CreateDirectory")
        self._refused("CreateDirectory")
        if not os.path.isdir(os.path.dirname(name)):
            raise fail(ERROR_PATH_NOT_FOUND, "CreateDirectory")
        os.mkdir(name)
        self._record(name, attributes)

    def create_file(self, name: str, access: int, share: int, attributes: PySECURITY_ATTRIBUTES | None,
                    creation: int, flags: int, template: Any) -> FileHandle:
        if creation != CREATE_NEW:
            raise NotImplementedError("the fake creates new files only")
        if os.path.lexists(name):
            raise fail(ERROR_FILE_EXISTS, "CreateFile")
        self._refused("CreateFile")
        if not os.path.isdir(os.path.dirname(name) or "."):
            raise fail(ERROR_PATH_NOT_FOUND, "CreateFile")
        open(name, "xb").close()
        self._record(name, attributes)
        handle = FileHandle()
        self.handles.append(handle)
        return handle

    def _record(self, name: str, attributes: PySECURITY_ATTRIBUTES | None) -> None:
        given = attributes.SECURITY_DESCRIPTOR if attributes is not None else PySECURITY_DESCRIPTOR()
        self.descriptors[name] = PySECURITY_DESCRIPTOR(
            given.owner or PySID(26), PyACL(list(given.dacl.aces)) if given.dacl else PyACL(self._inheritable(name)),
            given.control)


class HeldFiles:
    """Windows' rule for renaming open files, as ``os.replace`` meets it there: a file another process holds open
    (``hold``) can be neither moved nor replaced until it lets go (``release``). ``replace`` stands in for
    ``os.replace`` and records each attempt."""

    SHARING_VIOLATION = "The process cannot access the file because it is being used by another process"

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.attempts: list[tuple[str, str]] = []

    def hold(self, path: os.PathLike[str] | str) -> None:
        self.held.add(os.fspath(path))

    def release(self, path: os.PathLike[str] | str) -> None:
        self.held.discard(os.fspath(path))

    def replace(self, source: str, destination: str) -> None:
        self.attempts.append((source, destination))
        if any(name in self.held and os.path.exists(name) for name in (source, destination)):
            # What CPython raises for ERROR_SHARING_VIOLATION there: errno EACCES, the two names.
            raise PermissionError(errno.EACCES, self.SHARING_VIOLATION, source, None, destination)
        os.replace(source, destination)
