"""What the running agent publishes about itself, and how ``openstack-agent status`` reads it back.

Only the agent knows its version, when it started, whether it is ready and whether its XenStore connection is
up. It writes that to ``agent.status`` in the state directory (JSON, 0600, replaced atomically by a rename):
when it has the directory's lock, when it is ready, when the connection drops or comes back, and once more,
marked stopped, at a clean shutdown. A crash leaves the file as it was, so the file alone cannot say whether
an agent runs.

That is the lock's to say. ``status`` never takes it, not even briefly (an agent starting at that moment would
find it taken and exit with AlreadyRunning's status): it looks the directory's ``flock`` up in
``/proc/locks``. The file is trusted only when the lock is held by the pid the file names; otherwise it tells
what the last agent did, nothing about the one that runs.

Everything here only reads what it inspects: the journal through ``Journal.open_readonly``, the install root
through its pointers (``agent.pointers``: links or pointer files) and directory listings. The daemon imports
this module for ``Publisher``: nothing at its top level loads SQLAlchemy (the journal is read with literal SQL)
or the install layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import Config
from agent.errors import AgentError, ReleaseError
from agent.journal import Journal, releases, times
from agent.journal.engine import COMPANIONS, DATABASE_NAME

log = logging.getLogger(__name__)

STATUS_FILE = "agent.status"
#: The agent's pid file, as ``agent.lock.StateLock`` writes it for the holder "agent".
PID_FILE = "agent.pid"
PROC_LOCKS = Path("/proc/locks")

#: ``state``: the agent holds the lock and starts; it serves; it stopped cleanly.
STARTING, READY, STOPPED = "starting", "ready", "stopped"
#: ``xenstore``: before the first connection; up; lost, and being re-established.
CONNECTING, CONNECTED, RECONNECTING = "connecting", "connected", "reconnecting"

#: What the agent's small files are read with: never through a link, never blocking on a FIFO planted there.
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_NONBLOCK", 0))
#: The most of such a file read: the agent writes a few hundred bytes; anything larger is not its file.
MAX_READ = 64 * 1024

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


@dataclasses.dataclass(frozen=True)
class Published:
    """The agent's own account of itself, as it last wrote it."""

    version: str
    pid: int
    started: str
    state: str
    xenstore: str
    xenstore_since: str
    ready_at: str | None = None
    stopped_at: str | None = None

    @classmethod
    def from_json(cls, text: str) -> Published | None:
        """The published state, or None for a file that is not one (damaged, or written by someone else)."""
        try:
            document = json.loads(text)
            fields = {f.name: document.get(f.name) for f in dataclasses.fields(cls)}
            published = cls(**fields)
        except (ValueError, TypeError, AttributeError):
            return None
        if not isinstance(published.pid, int) or not all(
                isinstance(getattr(published, name), str)
                for name in ("version", "started", "state", "xenstore", "xenstore_since")):
            return None
        return published


class Publisher:
    """The agent's side: writes ``agent.status`` as its state changes (``agent.daemon`` calls it).

    A write that fails (a full disk) is logged once and skipped: status would show an older state, which is
    far better than an agent that stops serving over it.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATUS_FILE
        self.current: Published | None = None
        self._warned = False

    def starting(self) -> None:
        """The lock is ours: a new run begins (call only once the lock is held: the file is the holder's)."""
        now = times.utcnow()
        self._write(Published(version=__version__, pid=os.getpid(), started=now, state=STARTING,
                              xenstore=CONNECTING, xenstore_since=now))

    def ready(self) -> None:
        if self.current is not None:
            self._write(dataclasses.replace(self.current, state=READY, ready_at=times.utcnow()))

    def xenstore(self, connected: bool) -> None:
        """The connection came up, or dropped (the agent reconnects)."""
        current = self.current
        if current is None:
            return
        state = CONNECTED if connected else RECONNECTING
        if current.xenstore != state:
            self._write(dataclasses.replace(current, xenstore=state, xenstore_since=times.utcnow()))

    def stopped(self) -> None:
        """A clean shutdown, before the lock is let go."""
        if self.current is not None:
            self._write(dataclasses.replace(self.current, state=STOPPED, stopped_at=times.utcnow()))

    def _write(self, published: Published) -> None:
        self.current = published
        data = (json.dumps(dataclasses.asdict(published), indent=2, sort_keys=True) + "\n").encode()
        temporary = self.path.with_name(f".{STATUS_FILE}.{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            # No fsync: after a power cut the lock is free whatever the file says, and status then reads the
            # file as the last run's account only.
            fd = os.open(temporary, _FLAGS, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write the agent's status file %s: %s; 'openstack-agent status' shows an "
                            "older state until it can", self.path, exc.strerror)
                self._warned = True
            return
        self._warned = False


def open_regular(path: Path) -> int:
    """A file descriptor on ``path`` for reading, only if it is a regular file reached without a link
    (OSError otherwise): what an inspection reads may have been planted, and it must neither hang on a FIFO,
    read a device without end, nor follow a link to a file it should not show."""
    fd = os.open(path, _READ_FLAGS)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def read_small(path: Path) -> str:
    """A small regular file's text (OSError or UnicodeDecodeError otherwise), as ``open_regular`` opens it."""
    fd = open_regular(path)
    try:
        return os.read(fd, MAX_READ).decode("utf-8")
    finally:
        os.close(fd)


def read_published(state_dir: Path) -> Published | None:
    """What the last agent of this state directory published, or None."""
    try:
        text = read_small(state_dir / STATUS_FILE)
    except (OSError, UnicodeDecodeError):
        return None
    return Published.from_json(text)


# -- is it running? ---------------------------------------------------------------------------------------

def lock_holder(state_dir: Path) -> int | None:
    """The pid of the process holding the state directory's lock, 0 when one holds it whose pid cannot be
    seen (another pid namespace), or None when the lock is free. Never takes the lock."""
    try:
        info = os.stat(state_dir)
    except OSError:
        return None
    if sys.platform == "win32":  # no /proc/locks there: the pid file, as on FreeBSD
        return _pid_file_alive(state_dir)
    try:
        table = PROC_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return _pid_file_alive(state_dir)  # no /proc/locks (FreeBSD): the pid file, if that process exists
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
    recorded = _pid_from_file(state_dir)
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; a waiter's line has "->" after the number.
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        lock_device, _, inode = fields[5].rpartition(":")
        pid = int(fields[4]) if fields[4].lstrip("-").isdigit() else 0
        if inode != str(info.st_ino):
            continue
        # The same device, or (btrfs, whose stat shows a subvolume's device, not the one /proc/locks names)
        # the same inode held by the very pid the pid file names.
        if lock_device == device or (recorded is not None and pid == recorded):
            return max(0, pid)
    return None


def _pid_file_alive(state_dir: Path) -> int | None:
    pid = _pid_from_file(state_dir)
    try:
        if pid is not None:
            os.kill(pid, 0)
    except OSError:
        return None
    return pid


@dataclasses.dataclass(frozen=True)
class Observed:
    """The agent as status sees it: whether it runs (the lock) and what it published, if that is trusted."""

    running: bool
    pid: int | None
    #: The running agent's published state; None when not running or it has not published yet.
    live: Published | None
    #: What the last agent published, when no agent runs now (None: nothing recorded).
    last: Published | None

    @property
    def ready(self) -> bool:
        """Serving: ready, and connected to XenStore as far as it last saw."""
        return self.live is not None and self.live.state == READY and self.live.xenstore == CONNECTED

    @property
    def state(self) -> str:
        """One word for scripts: ready, starting, reconnecting, stopping or not-running."""
        if not self.running:
            return "not-running"
        if self.live is None:
            return STARTING
        if self.live.state == READY:
            return READY if self.live.xenstore == CONNECTED else RECONNECTING
        return "stopping" if self.live.state == STOPPED else STARTING


def observe(state_dir: Path) -> Observed:
    """Whether an agent serves ``state_dir`` now, and what it published (only read, never locked)."""
    holder = lock_holder(state_dir)
    published = read_published(state_dir)
    if holder is None:
        return Observed(running=False, pid=None, live=None, last=published)
    pid = holder or _pid_from_file(state_dir)
    trusted = published is not None and pid is not None and published.pid == pid
    return Observed(running=True, pid=pid, live=published if trusted else None, last=None)


def _pid_from_file(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return int(read_small(state_dir / PID_FILE).strip())
    return None


# -- the whole report -------------------------------------------------------------------------------------

def report(config: Config, observed: Observed, last: int = 5) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-able document: the agent, the releases, the journal."""
    journal = journal_report(config.state_path, last)
    return {"agent": agent_report(observed), "releases": releases_report(config.install_path, config.state_path),
            "journal": journal}


def agent_report(observed: Observed) -> dict[str, Any]:
    live = observed.live
    document: dict[str, Any] = {
        "running": observed.running, "ready": observed.ready, "state": observed.state, "pid": observed.pid,
        "version": live.version if live else None, "started": live.started if live else None,
        "ready_at": live.ready_at if live else None,
        "xenstore": {"state": live.xenstore, "since": live.xenstore_since} if live else None,
        "last_run": None}
    if observed.last is not None:
        past = observed.last
        document["last_run"] = {"pid": past.pid, "version": past.version, "started": past.started,
                                "stopped_at": past.stopped_at, "clean_stop": past.state == STOPPED}
    return document


def releases_report(install_root: Path, state_dir: Path) -> dict[str, Any]:
    from agent.install import COMPLETE, Layout  # the report's side only: the daemon's Publisher needs none of it

    layout = Layout(install_root)
    installed: list[str] = []
    with contextlib.suppress(OSError):
        installed = sorted(p.name for p in layout.releases.iterdir() if (p / COMPLETE).exists())
    verdicts = _verdicts(state_dir)
    document: dict[str, Any] = {"install_root": str(install_root)}
    errors = []
    for name in ("current", "previous"):
        try:
            document[name] = layout.link(name)
        except ReleaseError as exc:  # a pointer file naming no release: said, and the rest still reported
            document[name] = None
            errors.append(str(exc))
    document.update({"installed": installed,
                     "verdicts": {version: dataclasses.asdict(v) for version, v in sorted(verdicts.items())},
                     "bad": sorted(v for v, verdict in verdicts.items() if verdict.bad)})
    if errors:
        document["errors"] = errors
    return document


def _verdicts(state_dir: Path) -> dict[str, releases.Verdict]:
    if not (state_dir / DATABASE_NAME).is_file():
        return {}
    try:
        journal = Journal.open_readonly(state_dir)
    except AgentError:
        return {}
    try:
        return releases.verdicts(journal)
    except AgentError:
        return {}  # a journal too old to have verdicts, or unreadable: the journal report says which
    finally:
        journal.close()


def journal_size(state_dir: Path) -> int:
    """Bytes the journal takes on disk: the database and its WAL and shared-memory files."""
    total = 0
    for name in (DATABASE_NAME, *(DATABASE_NAME + suffix for suffix in COMPANIONS)):
        with contextlib.suppress(OSError):
            total += (state_dir / name).stat().st_size
    return total


def journal_report(state_dir: Path, last: int) -> dict[str, Any]:
    """The journal's size, its newest commands, the unfinished ones and ``journal verify``'s result."""
    database = state_dir / DATABASE_NAME
    document: dict[str, Any] = {"path": str(database), "present": database.is_file(), "bytes": None,
                                "commands": None, "last": [], "unfinished": [], "verify": None, "error": None}
    if not document["present"]:
        return document
    document["bytes"] = journal_size(state_dir)
    try:
        journal = Journal.open_readonly(state_dir)
        try:
            document["commands"] = journal.command_count()
            document["last"] = [_command(r) for r in journal.commands(limit=last)]
            document["unfinished"] = [_command(r) for r in journal.unfinished()]
            document["verify"] = dataclasses.asdict(journal.verify())
        finally:
            journal.close()
    except AgentError as exc:
        document["error"] = str(exc)
    return document


def _command(record: Any) -> dict[str, Any]:
    return {"id": record.id, "request_id": record.request_id, "name": record.name, "state": record.state,
            "reply_code": record.reply_code, "reply_message": record.reply_message,
            "received_at": record.received_at, "replied_at": record.replied_at}
