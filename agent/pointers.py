"""The install root's pointers ``current`` and ``previous``: point one at a release, and read where it points.

Two kinds, one contract (a pointer names ``releases/<version>``, relative to the install root, and is switched
atomically: after a power cut it names the old release or the new one, never nothing):

- ``symlink`` (POSIX): a symbolic link, created under a temporary name and renamed over the old one.
- ``file`` (Windows): a pointer file holding the one line ``releases/<version>``, written whole under a
  temporary name, flushed to disk, and renamed over the old one with ``os.replace``.

Why pointer files on Windows rather than directory junctions or symbolic links:

- Creating a symbolic link needs SeCreateSymbolicLinkPrivilege, which Windows grants to Administrators only
  (and to others only in Developer Mode); an agent should not depend on its account's privileges for this.
- A junction needs no privilege, but it cannot be switched atomically: ``os.replace`` (MoveFileEx with
  MOVEFILE_REPLACE_EXISTING) refuses to replace an existing directory, and a junction is one, so switching means
  removing the old junction and creating the new one, with a moment in which ``current`` does not exist.
- ``os.replace`` of one regular file over another on the same NTFS volume is a single rename of the directory
  entry (MoveFileEx with MOVEFILE_REPLACE_EXISTING): a reader finds the old file or the new one. The pointer is
  written and fsynced (``FlushFileBuffers``) before it is renamed, so the file that lands is never torn or empty.

Facts about Windows this module relies on: ``os.replace`` is MoveFileExW with MOVEFILE_REPLACE_EXISTING, on one
volume; the target may not be a directory, and while any process has the target open the call fails with
ERROR_ACCESS_DENIED (PermissionError), even when that open shares delete access: a reader holds the pointer for a
moment only, so the rename is tried again a few times. CreateSymbolicLinkW without the privilege fails with
ERROR_PRIVILEGE_NOT_HELD (1314). A directory cannot be opened with ``os.open`` on Windows, so the directory
fsync is POSIX only; NTFS journals the rename itself. The writers' lock (``agent.lock.holding``) is
``msvcrt.locking`` of one byte, LockFileEx underneath, which another handle, in this process or another, is
refused at once (LK_NBLCK).

The kind is chosen per install root: what its ``current`` (or ``previous``) already is, else ``DEFAULT_KIND``
(pointer files on Windows, symbolic links elsewhere; the tests run the pointer-file layout on Linux by setting
it). Either kind is read wherever it is found, and both are checked alike: a pointer names ``releases/<version>``
of a release that exists, or reading it raises ReleaseError naming it and the fix (a link to ``/etc`` or to
``releases/..`` is no release). A pointer file is written by hand as often as not, so what the usual Windows
tools write is accepted: a line ending (CR LF), trailing blanks (``echo releases/0.2.0 > current`` in cmd), a
UTF-8 byte-order mark (Notepad) and UTF-16 with its byte-order mark (``>`` in Windows PowerShell 5.1).

Several processes switch pointers: ``openstack-agent install`` (a package upgrade runs it beside the running
service), the supervisor (rollback, adopting the service's own build) and agentupdate in the agent. Each writes
its temporary under a name of its own, so that no writer removes or renames another's and a reader never finds
a pointer empty; and each holds ``switching()``, a lock on the file ``.pointers.lock`` held for a moment, not
the install root's own lock, which the supervisor keeps for its whole life and which ``install`` therefore cannot
take. Under that lock the temporaries a crashed writer left behind are removed, and ``activate`` reads
``current`` and moves it to ``previous`` without another writer switching either in between. A link or special
file found in place of ``.pointers.lock`` is removed and the file made again; a directory there is refused with
the fix (``agent.lock.holding``).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agent import lock
from agent.errors import ReleaseError
from agent.release import VERSION

SYMLINK = "symlink"
FILE = "file"
KINDS = (SYMLINK, FILE)
DEFAULT_KIND = FILE if sys.platform == "win32" else SYMLINK
NAMES = ("current", "previous")
RELEASES = "releases"
#: A pointer file holds one short line; more than this is not a pointer file.
MAX_POINTER = 256
#: How often a rename refused by a reader holding the pointer open is tried again (Windows), and the pause.
REPLACE_ATTEMPTS = 20
REPLACE_PAUSE = 0.05
#: The file writers lock while they switch pointers, and how long one waits for another (who holds it for the
#: moment two renames take).
LOCK = ".pointers.lock"
LOCK_WAIT = 30.0
#: What a pointer file may carry besides its line: a byte-order mark, then trailing blanks and a line ending.
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_TRAILING = " \t\r\n"


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable where the OS lets a directory be fsynced (not Windows)."""
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Pointers:
    """The pointers of one install root."""

    def __init__(self, root: Path, kind: str | None = None) -> None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown pointer kind {kind!r}")
        self.root = root
        self._kind = kind

    @property
    def kind(self) -> str:
        """How pointers are written here: as asked, else as the root already has them, else the default."""
        if self._kind is not None:
            return self._kind
        for name in NAMES:
            path = self.root / name
            if path.is_symlink():
                return SYMLINK
            if path.is_file():
                return FILE
        return DEFAULT_KIND

    def read(self, name: str) -> str | None:
        """The version pointer ``name`` names, or None when there is no such pointer.

        A pointer of either kind that does not name an existing release raises ReleaseError naming it and the
        fix.
        """
        path = self.root / name
        if path.is_symlink():
            try:
                target = os.readlink(path)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise ReleaseError(f"cannot read the link {path}: {exc.strerror}") from exc
            return self._check_link(path, target)
        if path.is_dir():
            raise self._directory(path)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_POINTER + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ReleaseError(f"cannot read the pointer file {path}: {exc.strerror}") from exc
        return self._parse(path, data)

    def _check_link(self, path: Path, target: str) -> str:
        parts = Path(target).parts
        return self._checked(
            f"the link {path}", parts[1] if len(parts) == 2 and parts[0] == RELEASES else "", "points at",
            f"points at {target!r}, not at releases/<version>",
            f"point it at a release installed under {self.root / RELEASES} ('ln -sfn releases/<version> {path}')")

    def _parse(self, path: Path, data: bytes) -> str:
        line = _line(data) if len(data) <= MAX_POINTER else None
        prefix, _, version = (line or "").partition("/")
        return self._checked(
            f"the pointer file {path}", version if prefix == RELEASES else "", "names",
            "is empty" if not data else f"holds {data[:40]!r}, not the line 'releases/<version>'",
            f"write the line 'releases/<version>' of a release installed under {self.root / RELEASES} into it")

    def _checked(self, pointer: str, version: str, names: str, wrong: str, fix: str) -> str:
        """``version`` when it is one of a release that exists, else ReleaseError saying what is wrong (``wrong``
        when it is no version at all) and the fix."""
        if not VERSION.fullmatch(version):
            what = wrong
        elif not (self.root / RELEASES / version).is_dir():
            what = f"{names} releases/{version}, which does not exist"
        else:
            return version
        raise ReleaseError(f"{pointer} {what}; {fix}, or install a release again with 'openstack-agent install "
                           "BUNDLE'")

    def _directory(self, path: Path) -> ReleaseError:
        pointer = "a pointer file" if self.kind == FILE else "a symbolic link"
        return ReleaseError(f"{path} is a directory, not a pointer: {pointer} naming releases/<version> belongs "
                            "there, and releases live under releases/; move the directory away, then install a "
                            "release again with 'openstack-agent install BUNDLE'")

    @contextlib.contextmanager
    def switching(self) -> Iterator[None]:
        """Hold the writers' lock (see the module docstring) for a ``with`` block, and remove the temporaries a
        crashed writer left behind; ReleaseError when it cannot be had."""
        path = self.root / LOCK
        held = contextlib.ExitStack()
        try:  # only taking the lock is translated here, not what the block raises
            held.enter_context(lock.holding(path, LOCK_WAIT))
        except TimeoutError as exc:
            raise ReleaseError(f"another openstack-agent process has been switching the pointers of {self.root} "
                               f"for {LOCK_WAIT:.0f} s (it holds {path}); try again once it is done") from exc
        except IsADirectoryError as exc:
            raise ReleaseError(f"cannot lock {path} to switch the pointers of {self.root}: it is a directory, not "
                               "the lock file the agent makes there; move the directory away") from exc
        except OSError as exc:
            raise ReleaseError(f"cannot lock {path} to switch the pointers of {self.root}: {exc.strerror}") \
                from exc
        with held:
            for leftover in self.temporaries():
                with contextlib.suppress(OSError):  # a leftover that stays is in no one's way
                    leftover.unlink()
            yield

    def temporaries(self) -> list[Path]:
        """Temporary pointers in the root: while no writer holds ``switching()``, left behind by a crash."""
        return sorted(path for name in NAMES for path in self.root.glob(f".{name}.*new"))

    def point(self, name: str, version: str) -> None:
        """Point ``name`` at ``releases/<version>``, atomically, and durably where the OS allows (call it within
        ``switching()``). ReleaseError when it cannot; the old pointer is then left as it was."""
        path = self.root / name
        if path.is_dir() and not path.is_symlink():
            raise self._directory(path)  # a rename cannot replace it; say what can
        target = Path(RELEASES) / version
        temporary: Path | None = None
        try:
            if self.kind == SYMLINK:
                temporary = _temporary_link(target, self.root, name)
            else:
                temporary = _temporary_file(f"{RELEASES}/{version}\n".encode("ascii"), self.root, name)
            _replace(temporary, path)
            temporary = None
            fsync_directory(self.root)
        except OSError as exc:
            raise ReleaseError(f"cannot point {path} at releases/{version}: {exc.strerror or exc}") from exc
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink()

    def present(self) -> list[str]:
        """The pointers that exist, of either kind."""
        return [name for name in NAMES if (self.root / name).is_symlink() or (self.root / name).is_file()]


def _line(data: bytes) -> str | None:
    """The line a pointer file holds, without what the usual editors and shells add; None when it is not text."""
    encoding = next((encoding for bom, encoding in _BOMS if data.startswith(bom)), "ascii")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    return text.rstrip(_TRAILING) if text.isascii() else None


def _temporary_file(data: bytes, root: Path, name: str) -> Path:
    """A new file in ``root`` of a name no other writer has, holding ``data``, on disk."""
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".new", dir=root)
    try:
        with os.fdopen(fd, "wb") as fh:
            if sys.platform != "win32":  # as readable as the link it stands in for; Windows has no mode bits
                os.fchmod(fh.fileno(), 0o644)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return Path(temporary)


def _temporary_link(target: Path, root: Path, name: str) -> Path:
    """A new symbolic link in ``root`` to ``target``, of a name no other writer has."""
    for _ in range(100):
        temporary = root / f".{name}.{secrets.token_hex(8)}.new"
        try:
            os.symlink(target, temporary)
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"no free temporary name in {root}")


def _replace(source: Path, target: Path) -> None:
    for attempt in range(REPLACE_ATTEMPTS):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            # On Windows, a reader that has the pointer open refuses the rename for a moment (see above).
            if sys.platform != "win32" or attempt == REPLACE_ATTEMPTS - 1:
                raise
            time.sleep(REPLACE_PAUSE)
