"""The Windows files port (``agent.platform.windows_files``) under a throw-away root: drive ``C:`` is
``<root>/C``, and the reparse attributes are made from the Linux file types (``tests.fakes.reparse``: a symbolic
link is a Windows symbolic link; directories the test names are junctions), so the same path rules hold as on
Windows."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.errors import FileRefused, PlatformError
from agent.platform.files import temp_name
from agent.platform.windows_files import (
    WindowsFiles,
    drive_path,
    under,
)
from tests.fakes.reparse import FakeAttributes

NOON = datetime(2026, 11, 24, 5, 15, tzinfo=UTC)
KEY = b"ssh-ed25519 AAAAC3-Windows-Marker operator@example\r\n"
@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Drive C: with C:\\Users\\Administrator and a C:\\ProgramData\\motd.txt."""
    top = tmp_path / "drives"
    (top / "C/Users/Administrator").mkdir(parents=True)
    (top / "C/ProgramData").mkdir()
    (top / "C/ProgramData/motd.txt").write_bytes(b"old\r\n")
    return top


@pytest.fixture
def attributes() -> FakeAttributes:
    return FakeAttributes()


@pytest.fixture
def files(root: Path, attributes: FakeAttributes) -> WindowsFiles:
    return port(root, attributes)


def port(root: Path, attributes: FakeAttributes, **kwargs: Any) -> WindowsFiles:
    return WindowsFiles(drives=under(root), attributes=attributes, clock=lambda: NOON, **kwargs)


def snapshot(top: Path) -> dict[str, Any]:
    """Every entry under ``top`` with its kind and contents; no link followed."""
    return {str(p.relative_to(top)): (p.lstat().st_mode, p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in [top, *top.rglob("*")]}


# -- paths ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "normal"), [
    (r"C:\Users\Administrator\.ssh\authorized_keys", r"C:\Users\Administrator\.ssh\authorized_keys"),
    ("c:/Users/Administrator/.ssh/authorized_keys", r"C:\Users\Administrator\.ssh\authorized_keys"),
    (r"C:\\a\.\b.txt", r"C:\a\b.txt"),
])
def test_drive_paths_are_normalised(path: str, normal: str) -> None:
    """Either slash, a lower-case drive, repeated separators and '.' components give one spelling."""
    assert drive_path(path).path == normal


@pytest.mark.parametrize(("path", "why"), [
    ("", "the path is empty"),
    (r"\\server\share\x.txt", "UNC and device paths"),
    (r"\\?\C:\x.txt", "UNC and device paths"),
    (r"\\.\PhysicalDrive0", "UNC and device paths"),
    ("//server/share/x.txt", "UNC and device paths"),
    (r"C:x.txt", "the path is relative"),
    (r"Users\x.txt", "the path is relative"),
    ("/etc/motd", "it is a POSIX path"),
    (r"C:\a\..\Windows\x.txt", "'..' component"),
    ("C:\\a\0b", "NUL character"),
    (r"C:\a\file.txt:hidden", "alternate data stream"),
    (r"C:\a:stream\file.txt", "alternate data stream"),
    (r"C:\a\CON", "device name Windows reserves"),
    (r"C:\a\nul.txt", "device name Windows reserves"),
    (r"C:\COM1\x.txt", "device name Windows reserves"),
    (r"C:\a\lpt9", "device name Windows reserves"),
    ("C:\\a\\COM\u00b9", "device name Windows reserves"),
    ("C:\\a\\lpt\u00b3.txt", "device name Windows reserves"),
    (r"C:\a\CONIN$", "device name Windows reserves"),
    (r"C:\a\conout$.log", "device name Windows reserves"),
    (r"C:\a\COM0", "device name Windows reserves"),
    (r"C:\a\LPT0.txt", "device name Windows reserves"),
    (r"C:\a\name.", "ends in a dot or a blank"),
    (r"C:\a \name.txt", "ends in a dot or a blank"),
    (r"C:\a\b?c.txt", "characters Windows does not allow"),
    ("C:\\a\\b\x01.txt", "characters Windows does not allow"),
    ("C:\\a\\", "names a directory"),
    ("C:\\", "names a directory"),
    (r"C:\a\.x.openstack-agent-tmp", "the agent's temporary files"),
    ("C:\\a\\" + "x" * 240, "leaves no room"),
])
def test_bad_paths_are_refused_before_anything_is_touched(files: WindowsFiles, root: Path, path: str,
                                                          why: str) -> None:
    """Each refusal names its reason; nothing on disk changes."""
    before = snapshot(root)
    with pytest.raises(FileRefused) as raised:
        files.write(path, KEY)
    assert why in str(raised.value) and str(raised.value).startswith("refused to write ")
    assert snapshot(root) == before


def test_the_policy_globs_ignore_case(root: Path, attributes: FakeAttributes) -> None:
    """inject.allowed_paths matches as Windows compares names; '/' in a glob is '\\'."""
    files = port(root, attributes, allowed_paths=("C:/Users/*/.ssh/*",))
    assert files.check(r"c:\users\Administrator\.SSH\authorized_keys", 1).path.endswith("authorized_keys")
    with pytest.raises(FileRefused, match=r"the policy does not allow this path \(inject.allowed_paths: C:/Users"):
        files.check(r"C:\Windows\System32\x.dll", 1)


def test_the_size_limit(root: Path, attributes: FakeAttributes) -> None:
    """inject.max_size bounds the contents."""
    with pytest.raises(FileRefused, match=r"5 bytes is more than the 4 bytes inject\.max_size allows"):
        port(root, attributes, max_size=4).write(r"C:\x.txt", b"12345")


# -- writing ----------------------------------------------------------------------------------------------


def test_a_new_file_and_its_directories(files: WindowsFiles, root: Path) -> None:
    """Missing directories are made; the file is written whole and reported as new, without a backup."""
    written = files.write("C:/Users/Administrator/.ssh/authorized_keys", KEY)
    assert (root / "C/Users/Administrator/.ssh/authorized_keys").read_bytes() == KEY
    assert (written.path, written.created, written.backup, written.size) == (
        r"C:\Users\Administrator\.ssh\authorized_keys", True, None, len(KEY))
    assert written.sha256 == hashlib.sha256(KEY).hexdigest() and (written.uid, written.gid) == (None, None)
    assert sorted(p.name for p in (root / "C/Users/Administrator/.ssh").iterdir()) == ["authorized_keys"]


@pytest.mark.parametrize("keep", [True, False])
def test_a_replaced_file_is_backed_up(root: Path, attributes: FakeAttributes, keep: bool) -> None:
    """The old file is kept as <name>.bak.<UTC time> (a hard link to it), unless backups are off."""
    old = os.stat(root / "C/ProgramData/motd.txt")
    written = port(root, attributes, keep_backups=keep).write(r"C:\ProgramData\motd.txt", KEY)
    assert (root / "C/ProgramData/motd.txt").read_bytes() == KEY and written.created is False
    names = sorted(p.name for p in (root / "C/ProgramData").iterdir())
    if keep:
        assert names == ["motd.txt", "motd.txt.bak.20261124T051500Z"]
        assert written.backup == r"C:\ProgramData\motd.txt.bak.20261124T051500Z"
        assert os.stat(root / "C/ProgramData/motd.txt.bak.20261124T051500Z").st_ino == old.st_ino
    else:
        assert names == ["motd.txt"] and written.backup is None


def test_no_drive_says_so(files: WindowsFiles) -> None:
    """A drive letter the system does not have is named."""
    with pytest.raises(PlatformError, match=r"cannot write 'D:\\\\x.txt': there is no drive D:"):
        files.write(r"D:\x.txt", KEY)


@pytest.mark.parametrize("fail", ["fsync", "replace"])
def test_a_failed_write_leaves_nothing(files: WindowsFiles, root: Path, monkeypatch: pytest.MonkeyPatch,
                                       fail: str) -> None:
    """A full disk: the temporary file, the backup and the directories made are removed; the old file stays."""
    before = snapshot(root)

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, fail, full)
    for path in (r"C:\ProgramData\motd.txt", r"C:\ProgramData\new\deeper\file.txt"):
        with pytest.raises(PlatformError, match=r"the disk is full; nothing was changed$"):
            files.write(path, KEY)
    assert snapshot(root) == before


def test_a_directory_where_the_temporary_file_goes_is_named(files: WindowsFiles, root: Path) -> None:
    """A directory in the temporary file's place fails the write and the clean-up with a message naming it (not
    the "access is denied" Windows gives), and the old file and the directory stay."""
    (root / "C/ProgramData" / temp_name("motd.txt")).mkdir()
    before = snapshot(root)
    why = r"'C:\\ProgramData\\.motd.txt.openstack-agent-tmp' is a directory where the agent's temporary file goes"
    with pytest.raises(PlatformError, match=rf"^cannot write 'C:\\\\ProgramData\\\\motd.txt': {re.escape(why)}; "
                                            "nothing was changed$"):
        files.write(r"C:\ProgramData\motd.txt", KEY)
    with pytest.raises(PlatformError, match=re.escape(why)):
        files.discard_partial(r"C:\ProgramData\motd.txt")
    assert snapshot(root) == before


# -- reparse points -----------------------------------------------------------------------------------------


def junction(root: Path, attributes: FakeAttributes) -> None:
    attributes.junctions.add(str(root / "C/ProgramData"))


def symlinked_dir(root: Path, attributes: FakeAttributes) -> None:
    (root / "C/Users/Administrator/.ssh").symlink_to(root / "C/ProgramData")


def symlinked_target(root: Path, attributes: FakeAttributes) -> None:
    (root / "C/ProgramData/link.txt").symlink_to(root / "C/ProgramData/motd.txt")


def other_tag(root: Path, attributes: FakeAttributes) -> None:
    attributes.others[str(root / "C/ProgramData")] = 0x8000001B  # IO_REPARSE_TAG_APPEXECLINK


@pytest.mark.parametrize(("make", "path", "why"), [
    (junction, r"C:\ProgramData\motd.txt", r"'C:\\ProgramData' is a junction (mount point), and the agent follows"),
    (symlinked_dir, r"C:\Users\Administrator\.ssh\motd.txt", "is a symbolic link, and the agent follows none"),
    (symlinked_target, r"C:\ProgramData\link.txt", "it is a symbolic link, and the agent follows none"),
    (other_tag, r"C:\ProgramData\x.txt", "is a reparse point (tag 0x8000001B)"),
])
def test_reparse_points_on_the_way_are_refused(files: WindowsFiles, root: Path, attributes: FakeAttributes,
                                               make: Callable[[Path, FakeAttributes], None], path: str,
                                               why: str) -> None:
    """A symbolic link or junction anywhere on the path, the target included, is refused for writes and
    reads alike; nothing is written through it."""
    make(root, attributes)
    before = snapshot(root)
    with pytest.raises(FileRefused) as raised:
        files.write(path, KEY)
    assert why in str(raised.value)
    with pytest.raises(FileRefused):
        files.digest(path)
    assert snapshot(root) == before


# -- recovery -----------------------------------------------------------------------------------------------


def test_digest_and_leftovers(files: WindowsFiles, root: Path) -> None:
    """digest reads the file (None when missing); discard_partial removes a temporary file left by a crash."""
    assert files.digest(r"C:\ProgramData\motd.txt") == hashlib.sha256(b"old\r\n").hexdigest()
    assert files.digest(r"C:\ProgramData\none.txt") is None
    assert files.digest(r"C:\Nowhere\none.txt") is None
    leftover = root / "C/ProgramData" / temp_name("motd.txt")
    leftover.write_bytes(b"half")
    assert files.discard_partial(r"C:\ProgramData\motd.txt") is True
    assert not leftover.exists() and files.discard_partial(r"C:\ProgramData\motd.txt") is False
    assert (root / "C/ProgramData/motd.txt").read_bytes() == b"old\r\n"


def test_local_follows_the_drive_mapping(files: WindowsFiles, root: Path) -> None:
    """local gives where a drive path is on this system."""
    assert files.local("c:/ProgramData/motd.txt") == str(root / "C/ProgramData/motd.txt")
