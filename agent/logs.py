"""The agent's log: one line per event, UTC timestamps, to stderr or to ``daemon.log_file``.

A log file is reopened on SIGHUP (``reopen``), as logrotate expects of a daemon: rotation renames the file,
then signals, and the next line goes to a new file at the configured path. The file is created 0600: lines
name requests and commands, never secrets, but a guest's log is still the operator's business only.

On Windows (``agent.winlog``) the file rotates itself by size, as nothing there renames it under the agent,
and every line also goes to the Application event log, source ``OpenStackAgent``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from agent.errors import ConfigError

#: Whether this process logs the Windows way (a rotating file, and the event log beside it).
WINDOWS = sys.platform == "win32"

FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class _PrivateFileHandler(logging.FileHandler):
    def _open(self):  # type: ignore[no-untyped-def]  # the base's signature is untyped
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors="backslashreplace")


def setup(level: str, file: str = "", *, windows: bool = WINDOWS, event_log: logging.Handler | None = None) -> None:
    """Send the process's log to ``file`` (stderr when empty) at ``level``; called again on SIGHUP, it closes
    the old file and opens the one now at the path (after a rotation, a new one).

    ``windows``: the file rotates by size and the lines also go to ``event_log`` (by default the event log's
    ``OpenStackAgent`` source)."""
    handlers: list[logging.Handler] = []
    if file and windows:
        from agent import winlog

        handlers.append(winlog.rotating_file(file))
    elif file:
        try:
            handlers.append(_PrivateFileHandler(file, encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot open the log file {file}: {exc.strerror}; fix daemon.log_file "
                              "(--log-file) or its directory's permissions") from exc
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handlers[0].setFormatter(formatter)
    if windows:
        from agent import winlog

        # The event log stamps and grades each event itself: it gets the message alone (its own format).
        handlers.append(event_log if event_log is not None else winlog.EventLogHandler())
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    # The libraries' own chatter (each transition callback, each migration plugin) is not the agent's log.
    for noisy in ("transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def reopen(level: str, file: str, current_level: str, current_file: str) -> bool:
    """SIGHUP: log at ``level`` to ``file`` from now on. If that file cannot be opened, logging goes on as it
    was (``current_level`` to ``current_file``) and says why; False then."""
    try:
        setup(level, file)
    except ConfigError as exc:
        setup(current_level, current_file)
        logging.getLogger(__name__).error("%s; logging goes on where it was", exc)
        return False
    return True
