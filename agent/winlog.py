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

The file rotates by size (``RotatingLog``): Windows has no logrotate, and a file a process holds open cannot be
renamed under it there, so the process that writes it must rotate it, and it must be the file's only writer. The
agent writes ``daemon.log_file`` (``OpenStackAgent.log``); the service's process, which hosts the supervisor and
starts the agent as its child, writes its own file beside it (``service_log_file``:
``OpenStackAgent-service.log``). Both report to the event log, which takes events from any number of processes.
Each new file is created for SYSTEM and Administrators only (``agent.winacl``), as the agent's log is 0600 on
Linux; one that exists (the earlier agent's) keeps its ACL.

A rotation can still be refused: a viewer, a backup or an antivirus scan may hold the file open for a while.
``logging.handlers.RotatingFileHandler`` then loses lines: its ``emit`` hands the rename's error to
``handleError`` (a traceback on stderr, which a service does not have) and never writes the record; it tries
again on every later record, and each try shifts the backups once more, dropping the oldest, before the rename
fails again. ``RotatingLog`` moves the file being written first (to ``<file>.rotating``), so that the commonest
refusal, the file itself held, moves nothing. It then moves only the old files it must: those up to the first
free number (a crash or a refusal may have left a gap there), or, when none is free, all of them, the oldest
dropped. If one of them is refused, it moves back what it moved, so that a refused rotation leaves every file
where it was but, the first time, the oldest that the rotation drops anyway, and its retries lose nothing; a
rotation cut short all the same (a crash, an undo refused) leaves its file aside and a gap, which the next
rotation finishes and fills. A refused rotation is reported once, as a line in the file itself, the record is
written all the same, and the rotation is tried again each time the file has grown by another
``RETRY_FRACTION`` of its size limit, not on every line. A ``<file>.rotating`` that is not a regular file (a
directory, a link) was not left by the agent: it is left alone, reported once with what to remove, and the
rotations go on without it, the full file moved straight to ``.1``.

Facts about files on Windows this relies on (the ``MoveFileEx`` and ``CreateFile`` documentation, CPython's
``open``): a file opened without ``FILE_SHARE_DELETE`` cannot be renamed or replaced until that handle is closed;
CPython's ``open`` does not ask for that sharing; ``os.replace`` (``MoveFileExW`` with
``MOVEFILE_REPLACE_EXISTING``) then fails with ``ERROR_SHARING_VIOLATION`` (32) or ``ERROR_ACCESS_DENIED`` (5),
both raised as ``PermissionError``. CPython's files are not inherited by child processes (PEP 446), so the
agent the service starts does not hold the service's log open.

The MSI registers the event source too (packaging/windows/openstack-agent.wxs), with the message file where
the one-folder build has it, the path ``message_dll`` gives at run time there.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import stat
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agent.errors import ConfigError, PlatformError
from agent.platform.wmi import import_pywin32

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
#: After a refused rotation, the next is tried once the file has grown by this fraction of its size limit more.
RETRY_FRACTION = 0.1
#: Where a rotation puts the file it moves aside before it shifts the older ones.
PENDING = ".rotating"
#: Added to the agent's log file's name (before its extension) for the service process's own log.
SERVICE_SUFFIX = "-service"


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
    return given if given is not None else import_pywin32(name)


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


def service_log_file(agent_log: str) -> str:
    """The service process's log file beside the agent's (``OpenStackAgent.log``: ``OpenStackAgent-service.log``);
    empty (stderr) when the agent's is."""
    if not agent_log:
        return ""
    stem, extension = os.path.splitext(agent_log)
    return f"{stem}{SERVICE_SUFFIX}{extension}"


class RotatingLog(logging.handlers.RotatingFileHandler):
    """A file rotated by size that a refused rotation does not stop (see the module's docstring). Each new file
    (the first, and the one each rotation starts) is made by ``create`` before it is opened: on Windows, for
    SYSTEM and Administrators only. ``rename`` moves one file over another (``os.replace``; a stand-in in tests)."""

    def __init__(self, path: str, create: Callable[[str], None] | None = None,
                 rename: Callable[[str, str], None] = os.replace, **options: Any) -> None:
        self._create = create
        self._rename = rename
        #: The size at which a rotation is tried again after one was refused; None while none was.
        self._retry_at: int | None = None
        #: Rotations refused since the last one that worked.
        self.refused = 0
        #: Whether a ``.rotating`` that is not the agent's was reported.
        self._refused_pending = False
        super().__init__(path, **options)

    def _open(self) -> Any:
        if self._create is not None and not os.path.exists(self.baseFilename):
            self._create(self.baseFilename)
        return super()._open()

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if not super().shouldRollover(record):
            return False
        # The base opened the stream and sought to its end.
        return self._retry_at is None or self.stream is None or self.stream.tell() >= self._retry_at

    def doRollover(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None
        notes: list[str] = []
        try:
            if self.backupCount > 0:
                self._rotate(notes)
        except OSError as exc:
            self.refused += 1
            if self.refused == 1:
                notes.append(f"the log file cannot be rotated ({exc}); it grows past {self.maxBytes} bytes, and the "
                             f"rotation is tried again every {self._retry_step()} bytes. {_why(exc)}")
        else:
            if self.refused:
                notes.append(f"the log file rotated after {self.refused} refused attempts")
            self.refused = 0
        self.stream = self._open()
        self._retry_at = self.stream.seek(0, os.SEEK_END) + self._retry_step() if self.refused else None
        for note in notes:
            logging.FileHandler.emit(self, logging.LogRecord(__name__, logging.WARNING, __file__, 0, note, None,
                                                             None))

    def _retry_step(self) -> int:
        return max(1, int(self.maxBytes * RETRY_FRACTION))

    def _rotate(self, notes: list[str]) -> None:
        """Move the file aside (a refusal moves nothing), then shift the old files up and make it ``.1``; if that is
        refused, put it back. A rotation cut short (a crash) left its file aside: it is finished first."""
        pending = self._pending(notes)
        if pending is None:
            self._shift(self.baseFilename)
            return
        if os.path.lexists(pending):
            self._shift(pending)
        self._rename(self.baseFilename, pending)
        try:
            self._shift(pending)
        except OSError:
            # Put back; if even that is refused, it waits aside for the next rotation to finish.
            with contextlib.suppress(OSError):
                self._rename(pending, self.baseFilename)
            raise

    def _pending(self, notes: list[str]) -> str | None:
        """Where the file waits during a rotation; None, reported once, when something not the agent's is there."""
        pending = self.baseFilename + PENDING
        try:
            mode = os.lstat(pending).st_mode
        except FileNotFoundError:
            return pending
        if stat.S_ISREG(mode):
            return pending
        if not self._refused_pending:
            self._refused_pending = True
            kind = "a directory" if stat.S_ISDIR(mode) else "a link" if stat.S_ISLNK(mode) else "not a regular file"
            notes.append(f"{pending} is {kind}, not a file the agent left; the agent leaves it alone and rotates "
                         "without it (the full file moves straight to .1). Remove it")
        return None

    def _shift(self, source: str) -> None:
        """Make ``source`` the ``.1``: the old files up to the first free number move up one (all of them, the
        oldest dropped, when none is free). A refused move puts back those made before it and raises."""
        names = [self.rotation_filename(f"{self.baseFilename}.{number}") for number in range(1, self.backupCount + 1)]
        free = next((index for index, name in enumerate(names) if not os.path.lexists(name)), len(names) - 1)
        moves = [*((names[index - 1], names[index]) for index in range(free, 0, -1)), (source, names[0])]
        done: list[tuple[str, str]] = []
        try:
            for old, new in moves:
                self._rename(old, new)
                done.append((old, new))
        except OSError:
            for old, new in reversed(done):
                try:
                    self._rename(new, old)
                except OSError:
                    break  # Going on would move a file over one left where it is; a gap is filled next time.
            raise


def _why(exc: OSError) -> str:
    """What most likely refused a rotation, for its report."""
    if isinstance(exc, PermissionError):
        # Windows raises this for a file held open and, as ERROR_ACCESS_DENIED, for a directory in the way alike.
        return ("Windows refuses this while another process holds the file open (another agent, a viewer, a backup "
                "or an antivirus scan), or when a directory or a read-only file is in the way: remove that")
    return "Remove or fix what the error names"


def rotating_file(path: str, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                  create: Callable[[str], None] | None = None,
                  rename: Callable[[str, str], None] = os.replace) -> RotatingLog:
    """The log file, rotated by size: at ``max_bytes`` it becomes ``<path>.1`` (older ones shift up to
    ``<path>.<backups>``, the oldest dropped) and a new file starts. Each new file is made by ``create`` (by
    default on Windows ``agent.winacl.create_private_file``: SYSTEM and Administrators only); a file that
    exists keeps its ACL. ``rename``: see ``RotatingLog``."""
    if create is None and sys.platform == "win32":
        from agent.winacl import create_private_file

        create = create_private_file
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        options: dict[str, Any] = {"maxBytes": max_bytes, "backupCount": backups, "encoding": "utf-8",
                                   "errors": "backslashreplace"}
        return RotatingLog(path, create, rename, **options)
    except OSError as exc:
        raise ConfigError(f"cannot open the log file {path}: {exc.strerror}; fix daemon.log_file "
                          "(--log-file) or its directory's permissions") from exc
    except PlatformError as exc:
        raise ConfigError(f"fix daemon.log_file (--log-file) or its directory's permissions: {exc}") from exc


def describe(exc: BaseException) -> str:
    """A ``pywintypes.error`` in words: the function, the Windows error code and its text."""
    code, function, text = (getattr(exc, name, None) for name in ("winerror", "funcname", "strerror"))
    return f"{function or 'the Windows API'} failed with error {code}: {text or type(exc).__name__}"
