"""A stand-in for pywin32's ``win32job`` and the part of ``win32api`` a job needs, over real processes of this
machine: a job whose limits include JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE kills the processes assigned to it when its
handle is closed, as Windows does when the last handle to such a job closes (the service's process ending).

Signatures as pywin32 has them: ``CreateJobObject(jobAttributes, name)``; ``QueryInformationJobObject(Job,
JobObjectInfoClass)`` returning the structure as a dict (``JOBOBJECT_EXTENDED_LIMIT_INFORMATION``: its
``BasicLimitInformation`` a dict with ``LimitFlags``); ``SetInformationJobObject(Job, JobObjectInfoClass,
JobObjectInfo)``; ``AssignProcessToJobObject(hJob, hProcess)``; ``win32api.OpenProcess(reqdAccess, bInherit,
pid)`` and ``win32api.CloseHandle(handle)``. Failures raise ``pywintypes.error(winerror, funcname, strerror)``:
ERROR_ACCESS_DENIED (5) for a process handle without PROCESS_SET_QUOTA and PROCESS_TERMINATE, ERROR_INVALID_HANDLE
(6) for a closed handle, ERROR_INVALID_PARAMETER (87) for a pid that names no process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import types
from dataclasses import dataclass, field

from tests.fakes.win32service import error, fake_module

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JobObjectBasicLimitInformation = 2
JobObjectExtendedLimitInformation = 9
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87


@dataclass(eq=False)
class Handle:
    """A PyHANDLE: a job's or a process's."""

    kind: str
    pid: int = 0
    access: int = 0
    closed: bool = False
    flags: int = 0
    assigned: list[int] = field(default_factory=list)

    def Close(self) -> None:
        self.closed = True


class FakeJobs:
    """The job objects and process handles made through the modules ``modules()`` returns."""

    def __init__(self) -> None:
        self.handles: list[Handle] = []
        self.fail_assign: int | None = None

    @property
    def jobs(self) -> list[Handle]:
        return [handle for handle in self.handles if handle.kind == "job"]

    def modules(self) -> tuple[types.ModuleType, types.ModuleType]:
        """``win32job`` and ``win32api``."""
        job = fake_module("win32job", self, ("CreateJobObject", "QueryInformationJobObject",
                                             "SetInformationJobObject", "AssignProcessToJobObject"),
                          globals(), ("JOB_", "JobObject"))
        api = types.ModuleType("win32api")
        api.OpenProcess = self.OpenProcess  # type: ignore[attr-defined]
        api.CloseHandle = self.CloseHandle  # type: ignore[attr-defined]
        return job, api

    def _open(self, handle: Handle, kind: str, funcname: str) -> Handle:
        if not isinstance(handle, Handle) or handle.kind != kind or handle.closed:
            raise error(ERROR_INVALID_HANDLE, funcname, "The handle is invalid.")
        return handle

    def CreateJobObject(self, jobAttributes: object, name: str, /) -> Handle:
        assert jobAttributes is None and isinstance(name, str)
        handle = Handle("job")
        self.handles.append(handle)
        return handle

    def QueryInformationJobObject(self, Job: Handle, JobObjectInfoClass: int, /) -> dict[str, object]:
        job = self._open(Job, "job", "QueryInformationJobObject")
        basic: dict[str, object] = {"PerProcessUserTimeLimit": 0, "PerJobUserTimeLimit": 0, "LimitFlags": job.flags,
                 "MinimumWorkingSetSize": 0, "MaximumWorkingSetSize": 0, "ActiveProcessLimit": 0, "Affinity": 0,
                 "PriorityClass": 0, "SchedulingClass": 0}
        if JobObjectInfoClass == JobObjectBasicLimitInformation:
            return basic
        assert JobObjectInfoClass == JobObjectExtendedLimitInformation
        return {"BasicLimitInformation": basic, "IoInfo": {}, "ProcessMemoryLimit": 0, "JobMemoryLimit": 0,
                "PeakProcessMemoryUsed": 0, "PeakJobMemoryUsed": 0}

    def SetInformationJobObject(self, Job: Handle, JobObjectInfoClass: int, JobObjectInfo: dict[str, object],
                                /) -> None:
        job = self._open(Job, "job", "SetInformationJobObject")
        basic = (JobObjectInfo["BasicLimitInformation"] if JobObjectInfoClass == JobObjectExtendedLimitInformation
                 else JobObjectInfo)
        assert isinstance(basic, dict)
        job.flags = int(basic["LimitFlags"])

    def AssignProcessToJobObject(self, hJob: Handle, hProcess: Handle, /) -> None:
        job = self._open(hJob, "job", "AssignProcessToJobObject")
        process = self._open(hProcess, "process", "AssignProcessToJobObject")
        if self.fail_assign is not None:
            raise error(self.fail_assign, "AssignProcessToJobObject", "Access is denied.")
        if process.access & (PROCESS_SET_QUOTA | PROCESS_TERMINATE) != PROCESS_SET_QUOTA | PROCESS_TERMINATE:
            raise error(ERROR_ACCESS_DENIED, "AssignProcessToJobObject", "Access is denied.")
        job.assigned.append(process.pid)

    def OpenProcess(self, reqdAccess: int, bInherit: int | bool, pid: int, /) -> Handle:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise error(ERROR_INVALID_PARAMETER, "OpenProcess", "The parameter is incorrect.") from None
        handle = Handle("process", pid=pid, access=reqdAccess)
        self.handles.append(handle)
        return handle

    def CloseHandle(self, handle: Handle, /) -> None:
        """Close a handle; the last (here: the one) handle of a kill-on-close job kills what was assigned to it."""
        self._open(handle, handle.kind if isinstance(handle, Handle) else "", "CloseHandle").Close()
        if handle.kind == "job" and handle.flags & JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE:
            for pid in handle.assigned:
                with contextlib.suppress(ProcessLookupError):  # it ended before
                    os.kill(pid, signal.SIGKILL)

    def open_process_handles(self) -> list[Handle]:
        return [handle for handle in self.handles if handle.kind == "process" and not handle.closed]
