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
fsync is POSIX only; NTFS journals the rename itself.

The kind is chosen per install root: what its ``current`` (or ``previous``) already is, else ``DEFAULT_KIND``
(pointer files on Windows, symbolic links elsewhere; the tests run the pointer-file layout on Linux by setting
it). Either kind is read wherever it is found.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

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

        A pointer file that does not name an existing release raises ReleaseError naming the file and the fix.
        """
        path = self.root / name
        if path.is_symlink():
            try:
                return Path(os.readlink(path)).name
            except OSError:
                return None
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_POINTER + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ReleaseError(f"cannot read the pointer file {path}: {exc.strerror}") from None
        return self._parse(path, data)

    def _parse(self, path: Path, data: bytes) -> str:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = None
        line = text[:-1] if text is not None and text.endswith("\n") else text
        prefix, _, version = (line or "").partition("/")
        if len(data) > MAX_POINTER or line is None or prefix != RELEASES or not VERSION.fullmatch(version):
            what = "is empty" if not data else f"holds {data[:40]!r}, not the line 'releases/<version>'"
        elif not (self.root / RELEASES / version).is_dir():
            what = f"names releases/{version}, which does not exist"
        else:
            return version
        raise ReleaseError(f"the pointer file {path} {what}; write the line 'releases/<version>' of a release "
                           f"installed under {self.root / RELEASES} into it, or install a release again with "
                           "'openstack-agent install BUNDLE'")

    def point(self, name: str, version: str) -> None:
        """Point ``name`` at ``releases/<version>``, atomically, and durably where the OS allows."""
        target = Path(RELEASES) / version
        temporary = self.root / f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if self.kind == SYMLINK:
            os.symlink(target, temporary)
        else:
            with temporary.open("xb") as fh:
                fh.write(f"{RELEASES}/{version}\n".encode("ascii"))
                fh.flush()
                os.fsync(fh.fileno())
        _replace(temporary, self.root / name)
        fsync_directory(self.root)

    def present(self) -> list[str]:
        """The pointers that exist, of either kind."""
        return [name for name in NAMES if (self.root / name).is_symlink() or (self.root / name).is_file()]


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
