r"""The agent's log on Windows: the Application event log (source ``OpenStackAgent``) and a rotating file.

``agent.logs`` sends every line to the file (``%WINDIR%\Logs\OpenStackAgent.log`` by default, as the earlier
Windows agent did) and, on Windows, to the event log too, through ``EventLogHandler``. The service's
``install`` registers the event source (``register_source``); the handler only reports, so that an agent run
by hand by an account that may not write the registry still logs.

Facts this module relies on (pywin32's win32evtlogutil.py, the event logging API, CPython's
``logging.handlers.NTEventLogHandler``):

- ``win32evtlogutil.AddSourceToRegistry(appName, msgDLL=None, eventLogType="Application", eventLogFlags=None)``
  creates ``HKLM\SYSTEM\CurrentControlSet\Services\EventLog\<type>\<appName>`` with ``EventMessageFile`` (the
  message DLL) and ``TypesSupported`` (error | warning | information by default); it needs administrator
  rights. ``RemoveSourceFromRegistry(appName, eventLogType)`` deletes the key, ignoring one that is missing.
- ``win32evtlogutil.ReportEvent(appName, eventID, eventCategory=0, eventType=EVENTLOG_ERROR_TYPE,
  strings=None, data=None, sid=None)`` registers the source, reports one event, deregisters. A source that is
  not registered still reports, to the Application log, without a message text to show around the strings.
- ``win32service.pyd`` holds message 1 whose text is its one insertion string (``%1``): CPython's
  ``NTEventLogHandler`` registers it and reports every record as event 1, category 0, with the formatted line
  as the only string. The event log stores each line whole (32 KiB at most per string).
- Event types: ``EVENTLOG_ERROR_TYPE`` 1, ``EVENTLOG_WARNING_TYPE`` 2, ``EVENTLOG_INFORMATION_TYPE`` 4.
- Failures raise ``pywintypes.error(winerror, funcname, strerror)``; ``ERROR_ACCESS_DENIED`` is 5.

The file rotates by size (``logging.handlers.RotatingFileHandler``): Windows has no logrotate, and a file an
agent holds open cannot be renamed under it there, so the process that writes it must rotate it. Each new file
is created for SYSTEM and Administrators only (``agent.winacl``), as the agent's log is 0600 on Linux; one that
exists (the earlier agent's) keeps its ACL.

The MSI registers the event source too (packaging/windows/openstack-agent.wxs), with the message file where
the one-folder build has it, the path ``message_dll`` gives at run time there.
"""

from __future__ import annotations

import importlib
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agent.errors import ConfigError, PlatformError

SOURCE = "OpenStackAgent"
LOG_TYPE = "Application"
#: The event id whose text in win32service.pyd's message table is its insertion string alone.
EVENT_ID = 1
EVENTLOG_ERROR_TYPE = 1
EVENTLOG_WARNING_TYPE = 2
EVENTLOG_INFORMATION_TYPE = 4
ERROR_ACCESS_DENIED = 5
#: An event's text: the event log records the time and the level itself.
EVENT_FORMAT = "%(name)s: %(message)s"
#: The event log's limit on one insertion string, in characters.
MAX_STRING = 31_839
#: The file rotates at this size, keeping this many old files beside it (OpenStackAgent.log.1, ...).
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5


def event_type(level: int) -> int:
    """The event log's type for a logging level: debug and info are information, warning a warning, error and
    critical an error."""
    if level >= logging.ERROR:
        return EVENTLOG_ERROR_TYPE
    if level >= logging.WARNING:
        return EVENTLOG_WARNING_TYPE
    return EVENTLOG_INFORMATION_TYPE


def pywin32(name: str, given: ModuleType | None = None) -> Any:
    """The pywin32 module ``name``: ``given`` (a stand-in, in tests) or the real one, imported on first use so
    that the agent's modules import where pywin32 is not installed."""
    if given is not None:
        return given
    try:
        return importlib.import_module(name)
    except ImportError:
        raise PlatformError("pywin32 is not installed; install the agent with its Windows dependencies "
                            "(pip install pywin32)") from None


def message_dll(win32service: ModuleType | None = None) -> str:
    """The message DLL the source is registered with: pywin32's win32service.pyd."""
    return str(pywin32("win32service", win32service).__file__)


def register_source(win32evtlogutil: ModuleType | None = None, win32service: ModuleType | None = None,
                    pywintypes: ModuleType | None = None) -> None:
    """Register the ``OpenStackAgent`` source in the Application log (needs administrator rights)."""
    utility, error = pywin32("win32evtlogutil", win32evtlogutil), pywin32("pywintypes", pywintypes).error
    try:
        utility.AddSourceToRegistry(SOURCE, message_dll(win32service), LOG_TYPE)
    except error as exc:
        raise PlatformError(f"cannot register the event log source {SOURCE}: {describe(exc)}") from exc


def remove_source(win32evtlogutil: ModuleType | None = None, pywintypes: ModuleType | None = None) -> None:
    """Remove the source's registration (a missing one is no error)."""
    utility, error = pywin32("win32evtlogutil", win32evtlogutil), pywin32("pywintypes", pywintypes).error
    try:
        utility.RemoveSourceFromRegistry(SOURCE, LOG_TYPE)
    except error as exc:
        raise PlatformError(f"cannot remove the event log source {SOURCE}: {describe(exc)}") from exc


class EventLogHandler(logging.Handler):
    """Each record as one event of the ``OpenStackAgent`` source, its type from its level."""

    def __init__(self, win32evtlogutil: ModuleType | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._utility = pywin32("win32evtlogutil", win32evtlogutil)
        self.setFormatter(logging.Formatter(EVENT_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)[:MAX_STRING]
            self._utility.ReportEvent(SOURCE, EVENT_ID, 0, event_type(record.levelno), [line])
        except Exception:
            # A full or unreachable event log must not stop the agent; logging's own error report says why.
            self.handleError(record)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file each new file of which (the first, and the one started by each rotation) is made by
    ``create`` before it is opened: on Windows, for SYSTEM and Administrators only, the 0600 of the agent's log
    on Linux."""

    def __init__(self, path: str, create: Callable[[str], None], **options: Any) -> None:
        self._create = create
        super().__init__(path, **options)

    def _open(self) -> Any:
        if not os.path.exists(self.baseFilename):
            self._create(self.baseFilename)
        return super()._open()


def rotating_file(path: str, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                  create: Callable[[str], None] | None = None) -> logging.Handler:
    """The log file, rotated by size: at ``max_bytes`` it becomes ``<path>.1`` (older ones shift up to
    ``<path>.<backups>``, the oldest dropped) and a new file starts. Each new file is made by ``create`` (by
    default on Windows ``agent.winacl.create_private_file``: SYSTEM and Administrators only); a file that
    exists keeps its ACL."""
    if create is None and sys.platform == "win32":
        from agent.winacl import create_private_file

        create = create_private_file
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        options: dict[str, Any] = {"maxBytes": max_bytes, "backupCount": backups, "encoding": "utf-8",
                                   "errors": "backslashreplace"}
        if create is None:
            return logging.handlers.RotatingFileHandler(path, **options)
        return PrivateRotatingFileHandler(path, create, **options)
    except OSError as exc:
        raise ConfigError(f"cannot open the log file {path}: {exc.strerror}; fix daemon.log_file "
                          "(--log-file) or its directory's permissions") from exc
    except PlatformError as exc:
        raise ConfigError(f"fix daemon.log_file (--log-file) or its directory's permissions: {exc}") from exc


def describe(exc: BaseException) -> str:
    """A ``pywintypes.error`` in words: the function, the Windows error code and its text."""
    code, function, text = (getattr(exc, name, None) for name in ("winerror", "funcname", "strerror"))
    return f"{function or 'the Windows API'} failed with error {code}: {text or type(exc).__name__}"
