"""Writing a file the host sends (``injectfile``, ``file_inject``): checked, symlink-safe, atomic and durable.

The host names a guest path and its contents; a host is trusted to name the file, but neither the path nor
what already lies on it is trusted to be harmless, and a crash must never leave half a file. So:

* The path is checked before anything is touched: absolute POSIX path, no ``..``, no NUL, not a directory,
  allowed by the policy (globs matched with fnmatch against the guest path, where ``*`` also crosses ``/``),
  contents within the size limit. Refusals are ``FileRefused`` naming the path and the reason.
* Every component is opened relative to its parent's descriptor with ``O_NOFOLLOW``, from a descriptor of
  the root (``--root``, ``/`` in production). A symbolic link anywhere on the way, pointing anywhere, is
  refused: the agent follows no link, so no link can lead it outside the root or onto another file. Missing
  directories are created 0700 and owned by the owner of their parent, as sshd's StrictModes wants for
  ``~/.ssh``.
* The contents go to a temporary file beside the target (``.<name>.openstack-agent-tmp``), which is
  written, given its owner and mode, fsynced and renamed over the target; then the directory is fsynced.
  The target is therefore always either the old file or the new one, whole. A replaced file keeps its mode,
  owner and group (not its ACLs or other extended attributes); a new file is 0600 (or the mode the caller
  names) and owned by the owner of its directory. The old file is kept beside it as ``<name>.bak.<UTC
  time>``, a hard link made before the rename, unless backups are turned off. Nothing partial is left
  behind by an error: the temporary file, a backup made for the failed write and directories made for it
  are removed again.
* Where SELinux is enabled, ``restorecon`` labels the new file and the directories made for it.

After a crash (SIGKILL) in the middle of a write, a resumed command compares ``digest`` of the target with
the digest of the contents it is to write: equal means the write happened; otherwise ``discard_partial``
removes the temporary file, which cannot be trusted to be whole, and the write is done again. A backup
linked before the crash is found again (it is the same inode as the target) rather than made twice.

``read`` and ``remove`` walk the same way, for callers that manage whole files of their own (the network
configuration): a read is bounded by a size the caller gives, so a huge or endless file cannot exhaust the
agent, and a removal is made durable like a write.

Contents never appear in a message or a log line; only paths and sizes do. When the agent is not root, new
files and directories belong to the agent's own user (it cannot give them away), and replacing another
user's file fails (its owner could not be kept). This module is for POSIX guests; Windows paths are refused.
"""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import FileRefused, PlatformError
from agent.platform.base import TOOL_TIMEOUT, dies_with_agent, run_tool, scrub

log = logging.getLogger(__name__)

#: The default size limit (1 MiB). A XenStore request carries less than 4 KiB (the protocol's 4096-byte message
#: payload), so this never refuses a real request; it bounds what a larger channel or a mistake could write.
DEFAULT_MAX_SIZE = 1024 * 1024
#: How the temporary file's name ends: ``.<name>`` plus this. Names ending so are refused as targets.
TEMP_SUFFIX = ".openstack-agent-tmp"
#: A backup's name after ``<name>.bak.``: a UTC time, and a counter when one second saw several backups.
BACKUP_STAMP = re.compile(r"\d{8}T\d{6}Z(-\d+)?")
MAX_BACKUPS_PER_SECOND = 99
NAME_MAX = 255
#: Bytes a target's name leaves free for the names the agent puts beside it (``.bak.<stamp>-NN`` is longest).
NAME_ROOM = len(".bak.20261124T051500Z-99")
CHUNK = 1024 * 1024
#: The mode of a file a write creates when the caller names none: only its owner may read what the host sent.
NEW_FILE_MODE = 0o600

if sys.platform == "win32":  # pragma: no cover - Files refuses to start there; the module stays importable
    _DIR_FLAGS = _READ_FLAGS = _CREATE_FLAGS = 0
else:
    _DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    _READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO must not hang us
    _CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WINDOWS_PATH = re.compile(r"[A-Za-z]:|\\")


@dataclasses.dataclass(frozen=True)
class WrittenFile:
    """What a write did, for the journal: never the contents, only their digest."""

    #: The guest path written, normalised (no repeated ``/``, no ``.`` components).
    path: str
    size: int
    #: SHA-256 of the contents, in hex.
    sha256: str
    #: The guest path of the backup of the file replaced, or None (a new file, or backups turned off).
    backup: str | None
    #: Whether the file did not exist before.
    created: bool
    #: Permission bits (``st_mode & 0o7777``), owner and group of the file now in place.
    mode: int
    uid: int
    gid: int


@dataclasses.dataclass(frozen=True)
class GuestPath:
    """A checked guest path: normalised, and split into its directories and file name."""

    path: str
    dirs: tuple[str, ...]
    name: str

    @property
    def shown(self) -> str:
        return show(self.path)


@dataclasses.dataclass(frozen=True)
class MadeDir:
    """A directory a write made: removed again if the write fails, labelled if it succeeds."""

    parent: int
    name: str
    guest: tuple[str, ...]


def show(path: str) -> str:
    """A path as messages quote it: repr'd (a NUL or newline stays visible), on one bounded line."""
    return scrub(repr(path), "")


def temp_name(name: str) -> str:
    """The temporary file a write of ``name`` uses, in the same directory."""
    return f".{name}{TEMP_SUFFIX}"


def guest_path(path: str, verb: str = "write") -> GuestPath:
    """``path`` checked and split into its directories and file name; FileRefused saying why it cannot be
    ``verb``-ed (the word messages use: write, read, remove)."""
    if not path:
        raise FileRefused(f"refused to {verb} '': the path is empty; give the file's absolute path")
    shown = show(path)
    if "\0" in path:
        raise FileRefused(f"refused to {verb} {shown}: the path contains a NUL character")
    if _WINDOWS_PATH.match(path):
        raise FileRefused(f"refused to {verb} {shown}: it is a Windows path, and Windows paths are only for "
                          "Windows guests; this guest takes absolute POSIX paths such as /root/.ssh/authorized_keys")
    if not path.startswith("/"):
        raise FileRefused(f"refused to {verb} {shown}: the path is relative; give the file's absolute path")
    raw = path.split("/")
    if ".." in raw:
        raise FileRefused(f"refused to {verb} {shown}: the path has a '..' component")
    parts = [p for p in raw if p not in ("", ".")]
    if raw[-1] in ("", ".") or not parts:
        raise FileRefused(f"refused to {verb} {shown}: the path names a directory, not a file")
    try:
        sizes = [len(os.fsencode(p)) for p in parts]
    except UnicodeEncodeError:
        raise FileRefused(f"refused to {verb} {shown}: the path cannot be encoded as a file name") from None
    if max(sizes) > NAME_MAX:
        raise FileRefused(f"refused to {verb} {shown}: a component is longer than {NAME_MAX} bytes")
    name = parts[-1]
    if sizes[-1] > NAME_MAX - NAME_ROOM:
        raise FileRefused(f"refused to {verb} {shown}: the file name is longer than {NAME_MAX - NAME_ROOM} "
                          f"bytes, which leaves no room for the agent's temporary and backup names beside it")
    if name.endswith(TEMP_SUFFIX):
        raise FileRefused(f"refused to {verb} {shown}: names ending {TEMP_SUFFIX} are the agent's temporary files")
    return GuestPath("/" + "/".join(parts), tuple(parts[:-1]), name)


def selinux_enabled(root: Path) -> bool:
    """Whether SELinux labels the files under ``root``: only a real root (``/``) has the running system's
    labels; a ``--root`` directory is not a booted system, so its labels are left as they come."""
    if root.resolve() != Path("/"):
        return False
    if Path("/sys/fs/selinux/enforce").exists():
        return True
    tool = shutil.which("selinuxenabled")
    if tool is None:
        return False
    try:
        return subprocess.run(dies_with_agent([tool]), capture_output=True, timeout=TOOL_TIMEOUT,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Files:
    """The files port: writes, digests and crash leftovers of files under ``root`` (the guest's ``/``).

    ``allowed_paths`` are the globs a write's guest path must match (an empty tuple allows none);
    ``max_size`` bounds the contents in bytes; ``keep_backups`` keeps each replaced file as a backup;
    ``selinux`` forces labelling on or off (None: find out, see ``selinux_enabled``); ``clock`` gives the
    backups' time.
    """

    def __init__(self, root: str | os.PathLike[str] = "/", *, allowed_paths: Sequence[str] = ("*",),
                 max_size: int = DEFAULT_MAX_SIZE, keep_backups: bool = True, selinux: bool | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        if sys.platform == "win32":  # pragma: no cover
            raise PlatformError("file injection by path is for POSIX guests; Windows has no O_NOFOLLOW or dir_fd")
        if max_size <= 0:
            raise ValueError("max_size must be greater than zero")
        self.root = Path(os.fspath(root) or "/")
        self.allowed_paths = tuple(allowed_paths)
        self.max_size = max_size
        self.keep_backups = keep_backups
        self.clock = clock
        self._selinux = selinux

    @functools.cached_property
    def selinux(self) -> bool:
        """Whether to run restorecon after a write (found out once)."""
        return selinux_enabled(self.root) if self._selinux is None else self._selinux

    # -- the checks -----------------------------------------------------------------------------------

    def check(self, path: str, size: int) -> GuestPath:
        """Everything that can be said about a write of ``size`` bytes to ``path`` without touching the disk."""
        target = self._allowed(path, "write")
        if size > self.max_size:
            raise FileRefused(f"refused to write {target.shown}: {size} bytes is more than the {self.max_size} "
                              "bytes inject.max_size allows")
        return target

    def _allowed(self, path: str, verb: str) -> GuestPath:
        """``path`` checked, and allowed by the policy for a change (a write or a removal)."""
        target = guest_path(path, verb)
        if not any(fnmatch.fnmatchcase(target.path, glob) for glob in self.allowed_paths):
            allowed = ", ".join(self.allowed_paths) or "none"
            raise FileRefused(f"refused to {verb} {target.shown}: the policy does not allow this path "
                              f"(inject.allowed_paths: {scrub(allowed, '')})")
        return target

    # -- writing --------------------------------------------------------------------------------------

    def write(self, path: str, contents: bytes, mode: int | None = None) -> WrittenFile:
        """Put ``contents`` at the guest ``path``, atomically and durably; see the module's description.

        ``mode`` is the permission bits a new file gets (0600 when None); a replaced file keeps its own.
        FileRefused when the path is refused (nothing written); PlatformError when the system fails the
        write (nothing changed either: the old file, if any, is untouched), naming a full disk as such.
        """
        if mode is not None and not 0 <= mode <= 0o7777:
            raise ValueError(f"mode {mode:#o} is not a file's permission bits")
        target = self.check(path, len(contents))
        made_dirs: list[MadeDir] = []
        with ExitStack() as stack:
            try:
                folder = self._walk(stack, target, "write", made_dirs)
                assert folder is not None
                written = self._replace(folder, target, contents, NEW_FILE_MODE if mode is None else mode)
            except BaseException as exc:
                # Cleaning up must not hide the failure: a second error here would only mask the first.
                for made in reversed(made_dirs):
                    with suppress(OSError):
                        os.rmdir(made.name, dir_fd=made.parent)
                        os.fsync(made.parent)
                if isinstance(exc, OSError):
                    raise _failure(target, exc, "write", "nothing was changed") from None
                raise
        if self.selinux:
            self._relabel(target, made_dirs)
        return written

    def _replace(self, folder: int, target: GuestPath, contents: bytes, new_mode: int) -> WrittenFile:
        """Write the temporary file in ``folder``, back the old file up, rename, and sync the directory."""
        old = self._existing(folder, target, "write")
        temp = temp_name(target.name)
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder)  # a leftover of an interrupted write: never whole, never trusted
        fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=folder)
        backup: str | None = None
        made_backup = renamed = False
        try:
            _write_all(fd, contents)
            if old is not None:
                uid, gid, mode = old.st_uid, old.st_gid, stat.S_IMODE(old.st_mode)
            else:
                parent = os.fstat(folder)
                uid, gid, mode = parent.st_uid, parent.st_gid, new_mode
            mine = os.fstat(fd)
            if (mine.st_uid, mine.st_gid) != (uid, gid) and (old is not None or os.geteuid() == 0):
                try:
                    os.fchown(fd, uid, gid)  # before fchmod: a change of owner clears set-id bits
                except PermissionError:
                    raise PlatformError(f"cannot write {target.shown}: its owner ({uid}:{gid}) cannot be kept "
                                        "by an agent that is not root; nothing was changed") from None
            os.fchmod(fd, mode)
            os.fsync(fd)
            now = os.fstat(fd)
            if old is not None and self.keep_backups:
                backup, made_backup = self._backup(folder, target, old)
            os.rename(temp, target.name, src_dir_fd=folder, dst_dir_fd=folder)
            renamed = True
        except BaseException:
            if not renamed:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=folder)
                if made_backup and backup is not None:
                    with suppress(OSError):
                        os.unlink(backup, dir_fd=folder)
                with suppress(OSError):
                    os.fsync(folder)
            raise
        finally:
            os.close(fd)
        try:
            os.fsync(folder)
        except OSError as exc:
            raise _failure(target, exc, "make durable", "the new file is in place but may not survive a power "
                           "loss") from None
        return WrittenFile(
            path=target.path, size=len(contents), sha256=hashlib.sha256(contents).hexdigest(),
            backup=None if backup is None else _join(target.dirs, backup), created=old is None,
            mode=stat.S_IMODE(now.st_mode), uid=now.st_uid, gid=now.st_gid)

    def _existing(self, folder: int, target: GuestPath, verb: str) -> os.stat_result | None:
        """The target's lstat, or None when there is none; FileRefused when it is no regular file."""
        try:
            found = os.stat(target.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(found.st_mode):
            raise FileRefused(f"refused to {verb} {target.shown}: it is a symbolic link, and the agent follows none")
        if stat.S_ISDIR(found.st_mode):
            raise FileRefused(f"refused to {verb} {target.shown}: the path names a directory, not a file")
        if not stat.S_ISREG(found.st_mode):
            raise FileRefused(f"refused to {verb} {target.shown}: it is not a regular file (a device, FIFO or "
                              "socket)")
        return found

    def _backup(self, folder: int, target: GuestPath, old: os.stat_result) -> tuple[str, bool]:
        """A backup name linked to the old file, and whether this call made it.

        A backup that already is the old file (linked by a write that was then killed) is reused.
        """
        prefix = f"{target.name}.bak."
        for entry in os.listdir(folder):
            if entry.startswith(prefix) and BACKUP_STAMP.fullmatch(entry[len(prefix):]):
                try:
                    found = os.stat(entry, dir_fd=folder, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if (found.st_dev, found.st_ino) == (old.st_dev, old.st_ino):
                    return entry, False
        stamp = self.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        for count in range(1, MAX_BACKUPS_PER_SECOND + 1):
            name = prefix + stamp + (f"-{count}" if count > 1 else "")
            try:
                os.link(target.name, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise PlatformError(f"cannot keep a backup of {target.shown}: the file system refused a hard "
                                    f"link ({exc.strerror}); set inject.keep_backups = false to write it "
                                    "without one; nothing was changed") from None
            os.fsync(folder)
            return name, True
        raise PlatformError(f"cannot keep a backup of {target.shown}: {MAX_BACKUPS_PER_SECOND} backups were "
                            f"made at {stamp} already; nothing was changed")

    def _relabel(self, target: GuestPath, made_dirs: list[MadeDir]) -> None:
        """Run restorecon on the new file and the directories made for it. A failure is logged, not raised: the
        file is in place and labelled by its directory's default, which is usually right."""
        if shutil.which("restorecon") is None:
            return
        paths = [str(self.root.joinpath(*made.guest)) for made in made_dirs]
        paths.append(str(self.root.joinpath(*target.dirs, target.name)))
        try:
            run_tool(["restorecon", "--", *paths], "", "", "policycoreutils")
        except PlatformError as exc:
            log.warning("%s was written, but its SELinux label was not restored: %s", target.shown, exc)

    # -- recovery ------------------------------------------------------------------------------------------

    def digest(self, path: str) -> str | None:
        """SHA-256 (hex) of the file at the guest ``path``, read without following links; None when there is
        no such file. FileRefused when the path is refused or a link, directory or non-regular file is on it."""
        target = guest_path(path, "read")
        with ExitStack() as stack:
            try:
                opened = self._open_regular(stack, target)
                if opened is None:
                    return None
                fd, _ = opened
                hashed = hashlib.sha256()
                while chunk := os.read(fd, CHUNK):
                    hashed.update(chunk)
                return hashed.hexdigest()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise _failure(target, exc, "read", "") from None

    def read(self, path: str, max_size: int | None = None) -> bytes | None:
        """The bytes of the file at the guest ``path``, read without following links; None when there is no
        such file. FileRefused when the path is refused, a link, directory or non-regular file is on it, or
        the file is larger than ``max_size`` bytes (None: no bound)."""
        target = guest_path(path, "read")
        with ExitStack() as stack:
            try:
                opened = self._open_regular(stack, target)
                if opened is None:
                    return None
                fd, size = opened
                if max_size is not None and size.st_size > max_size:
                    raise FileRefused(f"refused to read {target.shown}: it is {size.st_size} bytes, more than "
                                      f"the {max_size} bytes allowed")
                chunks: list[bytes] = []
                got = 0
                # Read to the end, not to the size fstat gave: the file may be growing under us. The bound is
                # kept while reading for the same reason.
                while chunk := os.read(fd, CHUNK):
                    got += len(chunk)
                    if max_size is not None and got > max_size:
                        raise FileRefused(f"refused to read {target.shown}: it grew past the {max_size} bytes "
                                          "allowed while it was read")
                    chunks.append(chunk)
                return b"".join(chunks)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise _failure(target, exc, "read", "") from None

    def _open_regular(self, stack: ExitStack, target: GuestPath) -> tuple[int, os.stat_result] | None:
        """The guest file opened for reading without following links (closed with ``stack``), and its status;
        None when there is no such file. FileRefused when a link, directory or non-regular file is in the way."""
        folder = self._walk(stack, target, "read", None)
        if folder is None or self._existing(folder, target, "read") is None:
            return None
        fd = os.open(target.name, _READ_FLAGS, dir_fd=folder)
        stack.callback(os.close, fd)
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise FileRefused(f"refused to read {target.shown}: it is not a regular file")
        return fd, status

    def remove(self, path: str) -> bool:
        """Remove the file at the guest ``path`` (a link on the path is refused, never followed) and make the
        removal durable; whether there was a file. FileRefused when the path or policy refuses it."""
        target = self._allowed(path, "remove")
        with ExitStack() as stack:
            try:
                folder = self._walk(stack, target, "remove", None)
                if folder is None or self._existing(folder, target, "remove") is None:
                    return False
                try:
                    os.unlink(target.name, dir_fd=folder)
                except FileNotFoundError:
                    return False
                os.fsync(folder)
                return True
            except OSError as exc:
                raise _failure(target, exc, "remove", "") from None

    def discard_partial(self, path: str) -> bool:
        """Remove the temporary file an interrupted write of ``path`` left behind; whether there was one.

        A leftover is never finished: nothing tells whether it was written whole. The target itself is not
        touched (it is the old file or the new one, whole).
        """
        target = guest_path(path)
        with ExitStack() as stack:
            try:
                folder = self._walk(stack, target, "clean up after", None)
                if folder is None:
                    return False
                try:
                    os.unlink(temp_name(target.name), dir_fd=folder)
                except FileNotFoundError:
                    return False
                os.fsync(folder)
                return True
            except OSError as exc:
                raise _failure(target, exc, "clean up after", "") from None

    # -- walking ------------------------------------------------------------------------------------------

    def _walk(self, stack: ExitStack, target: GuestPath, verb: str, made: list[MadeDir] | None) -> int | None:
        """A descriptor of the target's directory, opened component by component from the root without
        following a link. Missing directories are made when ``made`` is a list (and recorded in it); otherwise
        a missing one gives None. The root itself is the operator's choice, and is opened as given."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise PlatformError(f"cannot {verb} {target.shown}: the root directory {show(str(self.root))} cannot "
                                f"be opened ({exc.strerror}); check the agent's --root") from None
        stack.callback(os.close, fd)
        for depth, name in enumerate(target.dirs):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if made is None:
                    return None
                child = self._mkdir(fd, target.dirs[:depth + 1], made)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                found = os.stat(name, dir_fd=fd, follow_symlinks=False)
                what = "a symbolic link, and the agent follows none" if stat.S_ISLNK(found.st_mode) else \
                    "not a directory"
                raise FileRefused(f"refused to {verb} {target.shown}: {show(_join(target.dirs[:depth + 1]))} "
                                  f"is {what}") from None
            stack.callback(os.close, child)
            fd = child
        return fd

    def _mkdir(self, parent: int, guest: tuple[str, ...], made: list[MadeDir]) -> int:
        """Make the directory ``guest`` (whose parent is open as ``parent``): 0700, owned by the parent's owner
        when the agent is root, else by the agent's user.

        A SIGKILL between mkdir and fchown leaves the directory 0700 and root's, which sshd's StrictModes
        accepts; a resumed write uses it as it is.
        """
        name = guest[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)  # made meanwhile by someone else: theirs
        made.append(MadeDir(parent, name, guest))
        child = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            if os.geteuid() == 0:
                owner = os.fstat(parent)
                os.fchown(child, owner.st_uid, owner.st_gid)
            os.fchmod(child, 0o700)
            os.fsync(parent)
        except BaseException:
            os.close(child)
            raise
        return child


def _join(dirs: Sequence[str], name: str | None = None) -> str:
    return "/" + "/".join([*dirs, name] if name is not None else dirs)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:CHUNK]):]


def _failure(target: GuestPath, exc: OSError, doing: str, outcome: str) -> PlatformError:
    """``exc`` as a PlatformError naming the path and the cause (never the contents)."""
    code = errno.errorcode.get(exc.errno or 0, "")
    if exc.errno == errno.ENOSPC:
        cause = "the disk is full (ENOSPC: no space left on device)"
    elif exc.errno == errno.EDQUOT:
        cause = "the disk quota is exhausted (EDQUOT)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        cause = f"permission denied ({code}); the agent must run as root"
    elif exc.errno == errno.EROFS:
        cause = "the file system is read-only (EROFS)"
    else:
        cause = f"{exc.strerror or type(exc).__name__}" + (f" ({code})" if code else "")
    return PlatformError(f"cannot {doing} {target.shown}: {cause}" + (f"; {outcome}" if outcome else ""))
