"""The agent's one exception hierarchy.

Errors from pyxs, sqlite3 (and SQLAlchemy, in the inspection commands) and the operating system are translated
into these at the module that talks to them (``raise ... from``), so callers above that boundary only ever see
this tree::

    AgentError                      base of everything the agent raises on purpose
    ├── ConfigError                 bad configuration file or flag (CLI exit code 2)
    ├── XenStoreError               talking to XenStore failed
    │   ├── XenStoreUnavailable     no connection, or it dropped (the daemon reconnects)
    │   └── XenStoreTimeout         a call got no answer in time (treated as a dropped connection)
    ├── JournalError                the journal database cannot be opened, migrated or written
    │   ├── JournalCorrupt          ``journal verify`` found a broken hash chain
    │   └── CommandNotFound         no journaled command with that id
    ├── CommandError                a command must end with a protocol error reply
    │   ├── RequestRejected         the request itself is bad (malformed, unknown, refused by policy)
    │   └── CommandFailed           a machine could not complete; carries the reply to send
    ├── PlatformError               the operating system refused an effect (setting a password, ...)
    │   └── FileRefused             a file write was refused before anything was written (bad or unsafe path)
    ├── NetworkDataError            nova's network data is malformed or names an interface the guest lacks
    ├── ReleaseError                a release bundle could not be built, checked, downloaded or installed
    │   └── DownloadInterrupted     a download stopped short (timeout, dropped connection); it can resume
    ├── RestartRequested            not a failure: a command needs the agent restarted (the supervisor does it)
    ├── AlreadyRunning              another agent (or supervisor) holds the state directory
    ├── HostCallError               the host side of the protocol got no usable answer
    └── SandboxError                the local xenstored harness could not start

Every error carries a message meant for an operator: what failed and, where there is one, the fix.
Messages never contain secrets (passwords, key-exchange secrets, file contents). For an unexpected exception,
whose text could hold anything, ``where(exc)`` gives what a log may say instead: the place it was raised.
"""

from __future__ import annotations

import os
from types import TracebackType


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    #: Process exit code the CLI uses when this error reaches it.
    exit_code = 1


class ConfigError(AgentError):
    """Configuration file or command-line flag is invalid."""

    exit_code = 2


class XenStoreError(AgentError):
    """A XenStore operation failed; ``code`` is xenstored's errno when it refused the operation."""

    exit_code = 3

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class XenStoreUnavailable(XenStoreError):
    """The XenStore connection could not be opened or has dropped."""


class XenStoreTimeout(XenStoreUnavailable):
    """A XenStore call received no answer within the configured timeout."""


class JournalError(AgentError):
    """The journal database could not be opened, migrated, read or written."""

    exit_code = 4


class JournalCorrupt(JournalError):
    """The journal's transition hash chain does not verify."""

    exit_code = 5


class CommandNotFound(JournalError):
    """No journaled command has the requested id."""

    exit_code = 6


class CommandError(AgentError):
    """A command ends with an error reply on the protocol.

    ``returncode`` and ``message`` are exactly what the host receives.
    """

    def __init__(self, returncode: str, message: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.message = message


class RequestRejected(CommandError):
    """The request is malformed, names an unknown command, or is refused by policy."""


class CommandFailed(CommandError):
    """A command's machine could not complete its work."""


class PlatformError(AgentError):
    """An operating-system tool or API failed; the message names the cause and never holds the secret."""

    exit_code = 9


class FileRefused(PlatformError):
    """A file the host asked for cannot be written as asked (relative path, ``..``, a symlink on the way, a
    directory, a path the policy does not allow); nothing was written. The message names the path and why."""


class NetworkDataError(AgentError):
    """nova's network data (``vm-data/networking``, ``vm-data/hostname``) is malformed or names an interface
    the guest does not have; the message names the entry and what is wrong."""

    exit_code = 2


class ReleaseError(AgentError):
    """A release bundle is invalid or untrusted, or could not be built, downloaded or installed."""

    exit_code = 10


class DownloadInterrupted(ReleaseError):
    """A download stopped before its end; what arrived is kept and the next attempt resumes from it."""


class RestartRequested(AgentError):
    """A command (agentupdate, after switching releases) asks for the agent to be restarted.

    The daemon stops and exits with ``exit_code``; the supervisor starts the current release at once, and
    that process finishes the command from the journal.
    """

    exit_code = 75  # EX_TEMPFAIL


class AlreadyRunning(AgentError):
    """Another process holds the state directory's lock: one agent (and one supervisor) per journal.

    Its own exit code tells the supervisor, and systemd (``RestartPreventExitStatus``), that restarting
    would not help: the directory is another process's to serve.
    """

    exit_code = 11


class HostCallError(AgentError):
    """The host-side call timed out, or the domain went away while waiting."""

    exit_code = 7


class SandboxError(AgentError):
    """The sandbox xenstored could not be built or started."""

    exit_code = 8


def where(exc: BaseException) -> str:
    """Where an exception was raised, as ``file:line in function``: enough to find a defect from the log,
    while the exception's text (which could quote a request or a secret) stays out of it."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "an unknown place"
    code = tb.tb_frame.f_code
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"
