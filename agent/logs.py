"""The agent's log: one line per event, UTC timestamps, to stderr or to ``daemon.log_file``.

A log file is reopened on SIGHUP (``reopen``), as logrotate expects of a daemon: rotation renames the file,
then signals, and the next line goes to a new file at the configured path. The file is created 0600: lines
name requests and commands, never secrets, but a guest's log is still the operator's business only.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from agent.errors import ConfigError

FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class _PrivateFileHandler(logging.FileHandler):
    def _open(self):  # type: ignore[no-untyped-def]  # the base's signature is untyped
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors="backslashreplace")


def setup(level: str, file: str = "") -> None:
    """Send the process's log to ``file`` (stderr when empty) at ``level``; called again on SIGHUP, it closes
    the old file and opens the one now at the path (after a rotation, a new one)."""
    handler: logging.Handler
    if file:
        try:
            handler = _PrivateFileHandler(file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the log file {file}: {exc.strerror}; fix daemon.log_file "
                              "(--log-file) or its directory's permissions") from exc
    else:
        handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
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
