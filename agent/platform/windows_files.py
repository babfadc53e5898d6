"""Writing a file the host sends on Windows (``injectfile``, ``file_inject`` with drive paths): checked,
reparse-point-safe, atomic and durable. The files port of a Windows agent, with the interface the injectfile
machine uses of ``agent.platform.files`` (``check``, ``write``, ``digest``, ``discard_partial``).

* The path is checked before anything is touched: an absolute drive path (``C:\\...``, ``\\`` or ``/`` as the
  separator), none of ``..``, a NUL or another control character, ``<>:"|?*`` (a ``:`` after the drive would name an
  alternate data stream, ``file:stream``), a reserved device name (``CON``, ``PRN``, ``AUX``, ``NUL``,
  ``CONIN$``, ``CONOUT$``, ``COM0``-``COM9``, ``LPT0``-``LPT9`` and ``COM``/``LPT`` with a superscript 1-3, with or
  without an extension) or a component ending in a dot or a blank
  (Windows drops those, so the file written would not be the one named). UNC paths (``\\\\server\\share``) and
  device paths (``\\\\?\\``, ``\\\\.\\``) are refused. Then ``inject.allowed_paths`` (globs matched against the path
  with ``\\`` separators, ignoring case as Windows does) and ``inject.max_size``, as on Linux.
* Every existing component from the drive's root down is looked at with ``os.lstat`` before it is used, and a
  reparse point (``st_file_attributes & FILE_ATTRIBUTE_REPARSE_POINT``: a symbolic link, a junction, any
  other kind, named by its ``st_reparse_tag``) anywhere on the way, the target included, is refused: the agent
  follows none. Missing directories are made, and removed again if the write fails. Windows has no
  ``O_NOFOLLOW`` or ``dir_fd``, so the check and the use are two steps on the same path: between them someone who
  may create entries in a directory on the way could put a reparse point there. Keep ``inject.allowed_paths``
  to directories only SYSTEM and Administrators can change (the default ACLs of ``C:\\Windows``, ``C:\\Program
  Files`` and ``C:\\ProgramData`` subfolders made by them, a profile's own folders).
* The contents go to a temporary file beside the target (``.<name>.openstack-agent-tmp``), written, flushed and
  ``os.fsync``-ed (``FlushFileBuffers``), then ``os.replace``-d over the target (``MoveFileExW`` with
  ``MOVEFILE_REPLACE_EXISTING``; a rename within one directory stays on one volume, where NTFS makes it one
  metadata operation, though the API's documentation promises no atomicity). The target is therefore the old
  file or the new one, whole. The replace is refused when the target is read-only or open in another program.
  Windows cannot sync a directory; NTFS logs the rename in its metadata journal. The old file is kept beside it
  as ``<name>.bak.<UTC time>``, a hard link made before the replace (NTFS has hard links), unless backups are
  turned off.
* Security: a file or directory the agent makes inherits its directory's ACL (it is created with the default
  security descriptor, so the inheritable entries of the directory apply). A replaced file is such a new file
  too: it gets the directory's inherited ACL, not explicit entries the old file may have had (the backup keeps
  them). Files do not have a POSIX mode here; the mode reported is what ``os.stat`` makes of the read-only
  attribute.

Where the drive letters lead is the ``drives`` mapping's (``native`` on Windows: ``C:\\x`` is ``C:\\x``), and
``attributes`` reads a path's ``(st_file_attributes, st_reparse_tag)`` without following it (``os.lstat``): tests
run this module on Linux under a throw-away root (``under(root)``: ``C:\\x\\y`` is ``<root>/C/x/y``) with
attributes made from the Linux file types, and the same path rules hold.

After a crash in the middle of a write, ``digest`` and ``discard_partial`` let the machine find out whether the
write happened, as on Linux. Contents never appear in a message or a log line; only paths and sizes do.
"""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime

from agent.errors import FileRefused, PlatformError
from agent.platform.base import scrub
from agent.platform.files import (
    BACKUP_STAMP,
    CHUNK,
    DEFAULT_MAX_SIZE,
    MAX_BACKUPS_PER_SECOND,
    NAME_MAX,
    NAME_ROOM,
    TEMP_SUFFIX,
    show,
    temp_name,
)

#: ``FILE_ATTRIBUTE_REPARSE_POINT`` and the reparse tags messages name (winnt.h).
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003
IO_REPARSE_TAG_SYMLINK = 0xA000000C
_TAGS = {IO_REPARSE_TAG_MOUNT_POINT: "a junction (mount point)", IO_REPARSE_TAG_SYMLINK: "a symbolic link"}
#: Device names Windows reserves in every directory, with or without an extension: the console's CONIN$ and
#: CONOUT$ too, and COM and LPT with a superscript 1, 2 or 3 (which Windows reads as the digit). COM0 and LPT0
#: are on Windows' list of reserved names too, though Windows 10 was seen to create ``com0.c``: refused, as a
#: name no host needs.
RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                      *(f"{device}{n}" for device in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3")})
_DRIVE_PATH = re.compile(r"([A-Za-z]):[\\/]")
_SEPARATORS = re.compile(r"[\\/]")
_FORBIDDEN = frozenset('<>"|?*')
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)

#: Where a drive path leads on this system: ``(drive letter, components)`` to a path ``os`` takes.
Drives = Callable[[str, Sequence[str]], str]
#: ``(st_file_attributes, st_reparse_tag)`` of a path, not following it; FileNotFoundError when there is none.
Attributes = Callable[[str], tuple[int, int]]


def native(drive: str, parts: Sequence[str]) -> str:
    """The drive path itself (on Windows)."""
    return f"{drive}:\\" + "\\".join(parts)


def under(root: str | os.PathLike[str]) -> Drives:
    """Drive paths under ``root``: ``C:\\x\\y`` is ``<root>/C/x/y`` (for tests, and a ``--root`` on Windows)."""
    base = os.fspath(root)
    return lambda drive, parts: os.path.join(base, drive, *parts)


def lstat_attributes(path: str) -> tuple[int, int]:
    """What Windows' ``os.lstat`` says of ``path``'s reparse point (0s where the platform has no such fields)."""
    found = os.lstat(path)
    return getattr(found, "st_file_attributes", 0), getattr(found, "st_reparse_tag", 0)


@dataclasses.dataclass(frozen=True)
class DrivePath:
    """A checked drive path: ``path`` normalised (upper-case drive, ``\\`` separators), its drive letter, its
    directories and its file name."""

    path: str
    drive: str
    dirs: tuple[str, ...]
    name: str

    @property
    def shown(self) -> str:
        return show(self.path)

    def join(self, dirs: Sequence[str], name: str | None = None) -> str:
        return native(self.drive, [*dirs, name] if name is not None else list(dirs))


@dataclasses.dataclass(frozen=True)
class WrittenFile:
    """What a write did, for the journal (as ``agent.platform.files.WrittenFile``; Windows files have no owner
    ids, so ``uid`` and ``gid`` are None)."""

    path: str
    size: int
    sha256: str
    backup: str | None
    created: bool
    mode: int
    uid: None = None
    gid: None = None


def drive_path(path: str, verb: str = "write") -> DrivePath:
    """``path`` checked and split; FileRefused saying why it cannot be ``verb``-ed."""
    if not path:
        raise FileRefused(f"refused to {verb} '': the path is empty; give the file's drive path, such as C:\\...")
    shown = show(path)
    if "\0" in path:
        raise FileRefused(f"refused to {verb} {shown}: the path contains a NUL character")
    if path[:2] in ("\\\\", "//", "\\/", "/\\"):
        raise FileRefused(f"refused to {verb} {shown}: UNC and device paths (\\\\server\\share, \\\\?\\, \\\\.\\) are "
                          "refused; give a drive path such as C:\\...")
    drive = _DRIVE_PATH.match(path)
    if drive is None:
        if path.startswith("/"):
            raise FileRefused(f"refused to {verb} {shown}: it is a POSIX path, and this Windows guest takes drive "
                              "paths such as C:\\Users\\Administrator\\.ssh\\authorized_keys")
        raise FileRefused(f"refused to {verb} {shown}: the path is relative; give the file's drive path, such as "
                          "C:\\...")
    raw = _SEPARATORS.split(path[3:])
    if ".." in raw:
        raise FileRefused(f"refused to {verb} {shown}: the path has a '..' component")
    parts = [p for p in raw if p not in ("", ".")]
    if raw[-1] in ("", ".") or not parts:
        raise FileRefused(f"refused to {verb} {shown}: the path names a directory, not a file")
    for part in parts:
        _check_component(part, shown, verb)
    name = parts[-1]
    if len(name) > NAME_MAX - NAME_ROOM:
        raise FileRefused(f"refused to {verb} {shown}: the file name is longer than {NAME_MAX - NAME_ROOM} "
                          "characters, which leaves no room for the agent's temporary and backup names beside it")
    if name.lower().endswith(TEMP_SUFFIX):
        raise FileRefused(f"refused to {verb} {shown}: names ending {TEMP_SUFFIX} are the agent's temporary files")
    letter = drive.group(1).upper()
    return DrivePath(native(letter, parts), letter, tuple(parts[:-1]), name)


def _check_component(part: str, shown: str, verb: str) -> None:
    if ":" in part:
        raise FileRefused(f"refused to {verb} {shown}: {scrub(repr(part), '')} has a ':', which would name an "
                          "alternate data stream")
    bad = sorted({c for c in part if c in _FORBIDDEN or ord(c) < 32})
    if bad:
        raise FileRefused(f"refused to {verb} {shown}: {scrub(repr(part), '')} has characters Windows does not "
                          f"allow in names ({scrub(repr(''.join(bad)), '')})")
    if part.split(".")[0].rstrip(" ").upper() in RESERVED:
        raise FileRefused(f"refused to {verb} {shown}: {scrub(repr(part), '')} is a device name Windows reserves")
    if part.endswith((".", " ")):
        raise FileRefused(f"refused to {verb} {shown}: {scrub(repr(part), '')} ends in a dot or a blank, which "
                          "Windows drops, so another name would be written")
    if len(part) > NAME_MAX:
        raise FileRefused(f"refused to {verb} {shown}: a component is longer than {NAME_MAX} characters")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WindowsFiles:
    """The files port of a Windows agent: writes, digests and crash leftovers of files at drive paths.

    ``allowed_paths``, ``max_size``, ``keep_backups`` and ``clock`` are as in ``agent.platform.files.Files``;
    ``drives`` maps a drive path to the system's (``native``), ``attributes`` reads reparse attributes
    (``lstat_attributes``).
    """

    def __init__(self, *, allowed_paths: Sequence[str] = ("*",), max_size: int = DEFAULT_MAX_SIZE,
                 keep_backups: bool = True, clock: Callable[[], datetime] = _utcnow, drives: Drives = native,
                 attributes: Attributes = lstat_attributes) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be greater than zero")
        self.allowed_paths = tuple(allowed_paths)
        self.max_size = max_size
        self.keep_backups = keep_backups
        self.clock = clock
        self.drives = drives
        self.attributes = attributes

    def local(self, path: str) -> str:
        """Where the checked drive ``path`` is on this system (no link is looked at)."""
        target = drive_path(path, "find")
        return self.drives(target.drive, [*target.dirs, target.name])

    # -- the checks -----------------------------------------------------------------------------------

    def check(self, path: str, size: int) -> DrivePath:
        """Everything that can be said about a write of ``size`` bytes to ``path`` without touching the disk."""
        target = drive_path(path, "write")
        folded = target.path.casefold()
        if not any(fnmatch.fnmatchcase(folded, glob.replace("/", "\\").casefold()) for glob in self.allowed_paths):
            allowed = ", ".join(self.allowed_paths) or "none"
            raise FileRefused(f"refused to write {target.shown}: the policy does not allow this path "
                              f"(inject.allowed_paths: {scrub(allowed, '')})")
        if size > self.max_size:
            raise FileRefused(f"refused to write {target.shown}: {size} bytes is more than the {self.max_size} "
                              "bytes inject.max_size allows")
        return target

    # -- writing --------------------------------------------------------------------------------------

    def write(self, path: str, contents: bytes) -> WrittenFile:
        """Put ``contents`` at the drive ``path``, atomically; see the module's description. FileRefused when
        the path is refused, PlatformError when the system fails the write (nothing changed either way)."""
        target = self.check(path, len(contents))
        made: list[str] = []
        try:
            folder = self._walk(target, "write", made)
            assert folder is not None
            return self._replace(folder, target, contents)
        except BaseException as exc:
            for directory in reversed(made):
                with suppress(OSError):
                    os.rmdir(directory)
            if isinstance(exc, OSError):
                raise _failure(target, exc, "write", "nothing was changed") from None
            raise

    def _replace(self, folder: str, target: DrivePath, contents: bytes) -> WrittenFile:
        local = os.path.join(folder, target.name)
        old = self._existing(local, target, "write")
        temp = self._temp(folder, target, "write", "; nothing was changed")
        with suppress(FileNotFoundError):
            os.unlink(temp)  # a leftover of an interrupted write: never whole, never trusted
        backup: str | None = None
        made_backup = replaced = False
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600)
            try:
                view = memoryview(contents)
                while view:
                    view = view[os.write(fd, view[:CHUNK]):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if old is not None and self.keep_backups:
                backup, made_backup = self._backup(folder, target, old)
            os.replace(temp, local)
            replaced = True
        finally:
            if not replaced:
                with suppress(OSError):
                    os.unlink(temp)
                if made_backup and backup is not None:
                    with suppress(OSError):
                        os.unlink(os.path.join(folder, backup))
        now = os.stat(local, follow_symlinks=False)
        return WrittenFile(path=target.path, size=len(contents), sha256=hashlib.sha256(contents).hexdigest(),
                           backup=None if backup is None else target.join(target.dirs, backup),
                           created=old is None, mode=stat.S_IMODE(now.st_mode))

    def _backup(self, folder: str, target: DrivePath, old: os.stat_result) -> tuple[str, bool]:
        """A backup name linked to the old file, and whether this call made it (one linked by a write that was
        then killed is the old file already, and is reused)."""
        prefix = f"{target.name}.bak."
        for entry in os.listdir(folder):
            if entry.startswith(prefix) and BACKUP_STAMP.fullmatch(entry[len(prefix):]):
                try:
                    found = os.stat(os.path.join(folder, entry), follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if (found.st_dev, found.st_ino) == (old.st_dev, old.st_ino):
                    return entry, False
        stamp = self.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        for count in range(1, MAX_BACKUPS_PER_SECOND + 1):
            name = prefix + stamp + (f"-{count}" if count > 1 else "")
            try:
                os.link(os.path.join(folder, target.name), os.path.join(folder, name))
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                raise PlatformError(f"cannot keep a backup of {target.shown}: the file system refused a hard "
                                    f"link ({exc.strerror}); set inject.keep_backups = false to write it "
                                    "without one; nothing was changed") from None
            return name, True
        raise PlatformError(f"cannot keep a backup of {target.shown}: {MAX_BACKUPS_PER_SECOND} backups were "
                            f"made at {stamp} already; nothing was changed")

    # -- recovery ---------------------------------------------------------------------------------------

    def digest(self, path: str) -> str | None:
        """SHA-256 (hex) of the file at the drive ``path``; None when there is none. FileRefused when the path
        is refused or a reparse point, a directory or a device is on it."""
        target = drive_path(path, "read")
        try:
            folder = self._walk(target, "read", None)
            if folder is None:
                return None
            local = os.path.join(folder, target.name)
            if self._existing(local, target, "read") is None:
                return None
            hashed = hashlib.sha256()
            fd = os.open(local, _READ_FLAGS)
            try:
                while chunk := os.read(fd, CHUNK):
                    hashed.update(chunk)
            finally:
                os.close(fd)
            return hashed.hexdigest()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _failure(target, exc, "read", "") from None

    def discard_partial(self, path: str) -> bool:
        """Remove the temporary file an interrupted write of ``path`` left behind; whether there was one."""
        target = drive_path(path, "clean up after")
        try:
            folder = self._walk(target, "clean up after", None)
            if folder is None:
                return False
            temp = os.path.join(folder, temp_name(target.name))
            try:
                if self._reparse(temp) is not None:
                    raise FileRefused(f"refused to clean up after {target.shown}: its temporary file is a reparse "
                                      "point, which the agent does not touch")
                self._temp(folder, target, "clean up after", "")
                os.unlink(temp)
            except FileNotFoundError:
                return False
            return True
        except OSError as exc:
            raise _failure(target, exc, "clean up after", "") from None

    @staticmethod
    def _temp(folder: str, target: DrivePath, doing: str, outcome: str) -> str:
        """The local path of ``target``'s temporary file; PlatformError when a directory is there (Windows would
        only say access is denied, to the unlink and to the open alike)."""
        temp = os.path.join(folder, temp_name(target.name))
        try:
            found = os.stat(temp, follow_symlinks=False)
        except FileNotFoundError:
            return temp
        if stat.S_ISDIR(found.st_mode):
            shown = show(target.join(target.dirs, temp_name(target.name)))
            raise PlatformError(f"cannot {doing} {target.shown}: {shown} is a directory where the agent's temporary "
                                f"file goes{outcome}")
        return temp

    # -- walking ------------------------------------------------------------------------------------------

    def _reparse(self, local: str) -> str | None:
        """What kind of reparse point ``local`` is, or None when it is none; FileNotFoundError when missing."""
        attributes, tag = self.attributes(local)
        if not attributes & FILE_ATTRIBUTE_REPARSE_POINT:
            return None
        return _TAGS.get(tag, f"a reparse point (tag 0x{tag:08X})")

    def _walk(self, target: DrivePath, verb: str, made: list[str] | None) -> str | None:
        """The local path of the target's directory, every component from the drive's root down checked to be a
        directory and no reparse point. Missing directories are made when ``made`` is a list (and recorded in
        it); otherwise a missing one gives None."""
        root = self.drives(target.drive, [])
        try:
            kind = self._reparse(root)
        except FileNotFoundError:
            raise PlatformError(f"cannot {verb} {target.shown}: there is no drive {target.drive}:") from None
        if kind is not None:
            raise FileRefused(f"refused to {verb} {target.shown}: the drive's root is {kind}, and the agent "
                              "follows none")
        for depth in range(1, len(target.dirs) + 1):
            local = self.drives(target.drive, target.dirs[:depth])
            shown = show(target.join(target.dirs[:depth]))
            try:
                kind = self._reparse(local)
            except FileNotFoundError:
                if made is None:
                    return None
                os.mkdir(local)  # the directory's inheritable ACL applies
                made.append(local)
                continue
            if kind is not None:
                raise FileRefused(f"refused to {verb} {target.shown}: {shown} is {kind}, and the agent follows none")
            if not stat.S_ISDIR(os.stat(local, follow_symlinks=False).st_mode):
                raise FileRefused(f"refused to {verb} {target.shown}: {shown} is not a directory")
        return self.drives(target.drive, target.dirs)

    def _existing(self, local: str, target: DrivePath, verb: str) -> os.stat_result | None:
        """The target's lstat, or None when there is none; FileRefused when it is no regular file."""
        try:
            kind = self._reparse(local)
            found = os.stat(local, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if kind is not None:
            raise FileRefused(f"refused to {verb} {target.shown}: it is {kind}, and the agent follows none")
        if stat.S_ISDIR(found.st_mode):
            raise FileRefused(f"refused to {verb} {target.shown}: the path names a directory, not a file")
        if not stat.S_ISREG(found.st_mode):
            raise FileRefused(f"refused to {verb} {target.shown}: it is not a regular file")
        return found


def _failure(target: DrivePath, exc: OSError, doing: str, outcome: str) -> PlatformError:
    """``exc`` as a PlatformError naming the path and the cause (never the contents). Python maps Windows
    error codes to errno: ERROR_DISK_FULL and ERROR_HANDLE_DISK_FULL to ENOSPC, ERROR_ACCESS_DENIED and
    ERROR_SHARING_VIOLATION (a file another process holds open) to EACCES, ERROR_WRITE_PROTECT to EROFS."""
    winerror = getattr(exc, "winerror", None)
    if exc.errno == errno.ENOSPC:
        cause = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        cause = ("access is denied (the agent must run as SYSTEM or an administrator; a read-only file or one "
                 "another program holds open is refused too)")
    elif exc.errno == errno.EROFS:
        cause = "the disk is write-protected"
    else:
        cause = exc.strerror or type(exc).__name__
    if winerror:
        cause += f" (Windows error {winerror})"
    return PlatformError(f"cannot {doing} {target.shown}: {cause}" + (f"; {outcome}" if outcome else ""))
