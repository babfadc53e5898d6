"""The files port on the real file system, as root: writes, refusals, symlink attacks, a full disk, recovery."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.errors import FileRefused, PlatformError
from agent.platform.files import Files, selinux_enabled, temp_name

SECRET = b"-----BEGIN TOP-SECRET CONTENTS-----"
BACKUP = re.compile(r"(?P<name>.+)\.bak\.\d{8}T\d{6}Z(-\d+)?")
NOON = datetime(2026, 11, 24, 5, 15, tzinfo=UTC)

def snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``top`` (and ``top`` itself) with its kind, owner, mode and contents; no link followed."""
    found: dict[str, tuple[object, ...]] = {}
    for entry in [top, *top.rglob("*")]:
        info = entry.lstat()
        key = str(entry.relative_to(top))
        if stat.S_ISLNK(info.st_mode):
            found[key] = ("link", os.readlink(entry))
        elif stat.S_ISREG(info.st_mode):
            found[key] = ("file", info.st_mode, info.st_uid, info.st_gid, entry.read_bytes())
        else:
            found[key] = ("other", info.st_mode, info.st_uid, info.st_gid)
    return found


def owner(path: Path) -> tuple[int, int, int]:
    """Mode bits, uid and gid, not following a link."""
    info = path.lstat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A throw-away guest root with an /etc holding a motd."""
    top = tmp_path / "root"
    (top / "etc").mkdir(parents=True)
    (top / "etc/motd").write_bytes(b"old motd\n")
    return top


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the root, which no write may ever reach."""
    there = tmp_path / "outside"
    there.mkdir()
    (there / "victim").write_bytes(b"outside the root\n")
    return there


@pytest.fixture
def public_root() -> Iterator[Path]:
    """A guest root that an unprivileged user can reach (pytest's own temporary directories are root's only),
    with an /etc anyone may write in and a motd of root's."""
    top = Path(tempfile.mkdtemp(prefix="files-test-", dir="/tmp"))
    top.chmod(0o755)
    (top / "etc").mkdir(mode=0o777)
    (top / "etc").chmod(0o777)
    (top / "etc/motd").write_bytes(b"old motd\n")
    yield top
    shutil.rmtree(top)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would strip owner bits: the modes the port sets must not depend on the agent's umask."""
    previous = os.umask(0o277)
    yield
    os.umask(previous)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, unmounted at the end; skipped only where mounting is not permitted."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"mounting a tmpfs is not permitted here ({exc}); the full-disk test needs a real one")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


# -- writing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("uid", "gid"), [(1000, 1000), (1000, 1001), (0, 0)])
def test_new_file_is_0600_and_belongs_to_the_directory_owner(root: Path, strict_umask: None, uid: int,
                                                             gid: int) -> None:
    """A new file holds the contents, is 0600 whatever the umask, and is owned by its directory's owner."""
    home = root / "home/u"
    home.mkdir(parents=True)
    os.chown(home, uid, gid)
    written = Files(root).write("/home/u/notes", b"hello\n")
    assert (home / "notes").read_bytes() == b"hello\n"
    assert owner(home / "notes") == (0o600, uid, gid)
    assert (written.path, written.size, written.created, written.backup) == ("/home/u/notes", 6, True, None)
    assert written.sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert (written.mode, written.uid, written.gid) == (0o600, uid, gid)
    assert sorted(os.listdir(home)) == ["notes"]


@pytest.mark.parametrize(("mode", "uid", "gid"), [(0o644, 1001, 1002), (0o4755, 1001, 1002), (0o640, 0, 42)])
def test_replaced_file_keeps_mode_owner_and_a_backup(root: Path, mode: int, uid: int, gid: int) -> None:
    """A replaced file keeps its mode (set-id bits too), owner and group; the old one is kept as a backup."""
    motd = root / "etc/motd"
    os.chown(motd, uid, gid)
    motd.chmod(mode)
    written = Files(root).write("/etc/motd", b"new motd\n")
    assert motd.read_bytes() == b"new motd\n"
    assert owner(motd) == (mode, uid, gid)
    backups = [name for name in os.listdir(root / "etc") if name != "motd"]
    assert len(backups) == 1 and BACKUP.fullmatch(backups[0]) and backups[0].startswith("motd.bak.")
    assert (root / "etc" / backups[0]).read_bytes() == b"old motd\n"
    assert owner(root / "etc" / backups[0]) == (mode, uid, gid)
    assert written.backup == f"/etc/{backups[0]}"
    assert (written.created, written.mode, written.uid, written.gid) == (False, mode, uid, gid)


def test_no_backup_when_backups_are_off(root: Path) -> None:
    """keep_backups=False replaces the file and leaves nothing beside it."""
    written = Files(root, keep_backups=False).write("/etc/motd", b"new motd\n")
    assert (root / "etc/motd").read_bytes() == b"new motd\n"
    assert os.listdir(root / "etc") == ["motd"]
    assert written.backup is None


def test_backups_in_one_second_get_a_counter(root: Path) -> None:
    """Backups made in the same second do not overwrite each other: the later ones get -2, -3."""
    files = Files(root, clock=lambda: NOON)
    for text in (b"second\n", b"third\n", b"fourth\n"):
        files.write("/etc/motd", text)
    etc = root / "etc"
    assert (etc / "motd.bak.20261124T051500Z").read_bytes() == b"old motd\n"
    assert (etc / "motd.bak.20261124T051500Z-2").read_bytes() == b"second\n"
    assert (etc / "motd.bak.20261124T051500Z-3").read_bytes() == b"third\n"
    assert (etc / "motd").read_bytes() == b"fourth\n"


@pytest.mark.parametrize(("path", "made"), [
    ("/home/u/.ssh/authorized_keys", ["home/u/.ssh"]),
    ("/home/u/a/b/c/file", ["home/u/a", "home/u/a/b", "home/u/a/b/c"]),
])
def test_missing_directories_are_made_0700_for_the_parent_owner(root: Path, strict_umask: None, path: str,
                                                                made: list[str]) -> None:
    """Missing directories are made 0700, whatever the umask, and owned by their parent's owner."""
    home = root / "home/u"
    home.mkdir(parents=True)
    os.chown(home, 1000, 1001)
    Files(root).write(path, b"ssh-ed25519 AAAA user@host\n")
    for directory in made:
        assert owner(root / directory) == (0o700, 1000, 1001), directory
    assert owner(root / path.lstrip("/")) == (0o600, 1000, 1001)


def test_a_leftover_temporary_file_is_replaced(root: Path) -> None:
    """A write finds the temporary file an interrupted write left and starts it afresh."""
    (root / "etc" / temp_name("motd")).write_bytes(b"half a fi")
    Files(root, keep_backups=False).write("/etc/motd", b"new motd\n")
    assert (root / "etc/motd").read_bytes() == b"new motd\n"
    assert os.listdir(root / "etc") == ["motd"]


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "reason"), [
    ("", "the path is empty"),
    ("etc/motd", "the path is relative"),
    ("/etc/../etc/motd", "'..' component"),
    ("/etc/mo\0td", "NUL character"),
    ("C:\\Windows\\motd.txt", "Windows paths are only for Windows guests"),
    ("C:/Windows/motd.txt", "Windows paths are only for Windows guests"),
    ("\\\\server\\share\\motd", "Windows paths are only for Windows guests"),
    ("/", "names a directory"),
    ("/etc/", "names a directory"),
    ("/etc/.", "names a directory"),
    ("/etc", "names a directory"),
    ("/etc/" + "x" * 232, "no room for the agent's temporary and backup names"),
    ("/" + "d" * 256 + "/motd", "longer than 255 bytes"),
    ("/etc/" + temp_name("motd"), "the agent's temporary files"),
    ("/etc/mo\ud800td", "cannot be encoded"),
    ("/etc/motd/inside", "'/etc/motd' is not a directory"),
])
def test_bad_paths_are_refused(root: Path, path: str, reason: str) -> None:
    """Each bad path is refused with a message naming it and why, and nothing is written."""
    before = snapshot(root)
    with pytest.raises(FileRefused, match=re.escape(reason)) as refused:
        Files(root).write(path, SECRET)
    assert repr(path)[:40] in str(refused.value)
    assert snapshot(root) == before


@pytest.mark.parametrize(("allowed", "path", "ok"), [
    (("/root/.ssh/*", "/etc/motd"), "/root/.ssh/authorized_keys", True),
    (("/root/.ssh/*", "/etc/motd"), "//root/./.ssh//authorized_keys", True),
    (("/root/.ssh/*", "/etc/motd"), "/etc/motd", True),
    (("/root/.ssh/*", "/etc/motd"), "/etc/passwd", False),
    (("/root/.ssh/*", "/etc/motd"), "/root/.sshd/authorized_keys", False),
    (("*/authorized_keys",), "/home/u/.ssh/authorized_keys", True),
    ((), "/etc/motd", False),
])
def test_policy_globs(root: Path, allowed: tuple[str, ...], path: str, ok: bool) -> None:
    """A path is written only when a glob of the policy matches its normalised form; an empty policy allows none."""
    files = Files(root, allowed_paths=allowed)
    if ok:
        assert files.write(path, b"x\n").path == "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
        return
    before = snapshot(root)
    with pytest.raises(FileRefused, match="the policy does not allow this path"):
        files.write(path, b"x\n")
    assert snapshot(root) == before


def test_size_limit(root: Path) -> None:
    """Contents up to max_size are written; one byte more is refused and nothing is written."""
    files = Files(root, max_size=10, keep_backups=False)
    files.write("/etc/motd", b"0123456789")
    before = snapshot(root)
    with pytest.raises(FileRefused, match=r"11 bytes is more than the 10 bytes inject\.max_size allows"):
        files.write("/etc/motd", b"0123456789A")
    assert snapshot(root) == before


def test_a_fifo_is_not_written_nor_read(root: Path) -> None:
    """A FIFO (or device, socket) on the path is refused by write and digest, without blocking on it."""
    os.mkfifo(root / "etc/pipe")
    before = snapshot(root)
    with pytest.raises(FileRefused, match="not a regular file"):
        Files(root).write("/etc/pipe", b"x")
    with pytest.raises(FileRefused, match="not a regular file"):
        Files(root).digest("/etc/pipe")
    assert snapshot(root) == before


# -- symlink attacks ------------------------------------------------------------------------------------


def leaf_link(root: Path, outside: Path) -> str:
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to(outside / "victim")
    return "/etc/motd"


def dangling_leaf_link(root: Path, outside: Path) -> str:
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to(outside / "planted")
    return "/etc/motd"


def leaf_link_to_directory(root: Path, outside: Path) -> str:
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to(outside)
    return "/etc/motd"


def parent_link(root: Path, outside: Path) -> str:
    (root / "etc/ssh").symlink_to(outside)
    return "/etc/ssh/victim"


def relative_link_out_of_root(root: Path, outside: Path) -> str:
    (root / "home").symlink_to(os.path.relpath(outside, root))
    return "/home/victim"


def dangling_parent_link(root: Path, outside: Path) -> str:
    (root / "var").symlink_to(outside / "planted")
    return "/var/lib/state"


def link_within_root(root: Path, outside: Path) -> str:
    (root / "etc/real").mkdir()
    (root / "etc/alias").symlink_to(root / "etc/real")
    return "/etc/alias/motd"


@pytest.mark.parametrize("attack", [leaf_link, dangling_leaf_link, leaf_link_to_directory, parent_link,
                                    relative_link_out_of_root, dangling_parent_link, link_within_root])
def test_symlink_attacks_are_refused(root: Path, outside: Path, attack: Callable[[Path, Path], str]) -> None:
    """A link anywhere on the path, pointing anywhere, is refused: nothing is written inside or outside the root."""
    path = attack(root, outside)
    inside, there = snapshot(root), snapshot(outside)
    with pytest.raises(FileRefused, match="is a symbolic link, and the agent follows none"):
        Files(root).write(path, SECRET)
    with pytest.raises(FileRefused, match="symbolic link"):
        Files(root).digest(path)
    assert snapshot(root) == inside
    assert snapshot(outside) == there


# -- a full disk ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/etc/motd", "/new/dirs/motd"])
def test_a_full_disk_changes_nothing(small_fs: Path, path: str, caplog: pytest.LogCaptureFixture) -> None:
    """A write larger than the free space fails naming ENOSPC; the old file stays, and no temporary file,
    backup or new directory is left behind."""
    (small_fs / "etc").mkdir()
    (small_fs / "etc/motd").write_bytes(b"old motd\n")
    before = snapshot(small_fs)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PlatformError, match=r"the disk is full \(ENOSPC") as failed:
        Files(small_fs).write(path, SECRET * 4096)
    assert repr(path) in str(failed.value)
    assert snapshot(small_fs) == before
    assert b"TOP-SECRET" not in str(failed.value).encode() and "TOP-SECRET" not in caplog.text


# -- recovery -------------------------------------------------------------------------------------------


def test_discard_partial(root: Path) -> None:
    """discard_partial removes an interrupted write's temporary file, says whether there was one, and leaves
    the target alone."""
    files = Files(root)
    (root / "etc" / temp_name("motd")).write_bytes(b"half a fi")
    assert files.discard_partial("/etc/motd") is True
    assert os.listdir(root / "etc") == ["motd"]
    assert (root / "etc/motd").read_bytes() == b"old motd\n"
    assert files.discard_partial("/etc/motd") is False
    assert files.discard_partial("/no/such/dir/motd") is False


def test_discard_partial_follows_no_link(root: Path, outside: Path) -> None:
    """discard_partial through a linked directory is refused and removes nothing there."""
    (outside / temp_name("victim")).write_bytes(b"not ours")
    (root / "srv").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(FileRefused, match="symbolic link"):
        Files(root).discard_partial("/srv/victim")
    assert snapshot(outside) == before


def test_digest(root: Path) -> None:
    """digest is the SHA-256 of the file now in place, None when it or its directory does not exist."""
    files = Files(root)
    assert files.digest("/etc/motd") == hashlib.sha256(b"old motd\n").hexdigest()
    assert files.digest("/etc/absent") is None
    assert files.digest("/no/such/dir/file") is None
    written = files.write("/etc/motd", b"new motd\n")
    assert files.digest("/etc/motd") == written.sha256


def test_a_resumed_write_reuses_its_backup(root: Path) -> None:
    """After a write killed between backup and rename, the resumed one tells old from new by digest, discards
    the temporary file and reuses the backup already made instead of making a second."""
    files = Files(root, clock=lambda: NOON)
    new = b"new motd\n"
    os.link(root / "etc/motd", root / "etc/motd.bak.20261124T051400Z")
    (root / "etc" / temp_name("motd")).write_bytes(new[:3])
    assert files.digest("/etc/motd") != hashlib.sha256(new).hexdigest()
    assert files.discard_partial("/etc/motd")
    written = files.write("/etc/motd", new)
    assert written.backup == "/etc/motd.bak.20261124T051400Z"
    assert sorted(os.listdir(root / "etc")) == ["motd", "motd.bak.20261124T051400Z"]
    assert files.digest("/etc/motd") == written.sha256


# -- secrecy, SELinux, construction ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ["oversize", "policy", "link", "directory", "no root"])
def test_contents_never_appear_in_errors_or_logs(root: Path, outside: Path, case: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Whatever refuses or fails a write, its message and the log hold the path, never the contents."""
    caplog.set_level(logging.DEBUG)
    files = Files(root, max_size=len(SECRET) - 1 if case == "oversize" else 1024,
                  allowed_paths=("/srv/*",) if case == "policy" else ("*",))
    path = "/etc/motd"
    if case == "link":
        leaf_link(root, outside)
    elif case == "directory":
        path = "/etc"
    elif case == "no root":
        files = Files(root / "missing")
    with pytest.raises(PlatformError) as failed:
        files.write(path, SECRET)
    assert "TOP-SECRET" not in str(failed.value)
    assert "TOP-SECRET" not in caplog.text


def test_not_root_cannot_give_a_replaced_file_away(public_root: Path) -> None:
    """An agent that is not root refuses to replace another user's file rather than change its owner, and
    leaves no temporary file."""
    before = snapshot(public_root)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        with pytest.raises(PlatformError, match=r"its owner \(0:0\) cannot be kept by an agent that is not root"):
            Files(public_root).write("/etc/motd", SECRET)
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert snapshot(public_root) == before


def test_not_root_makes_new_files_its_own(public_root: Path) -> None:
    """An agent that is not root cannot give files away: a new file and directory are its own, 0600 and 0700."""
    os.setegid(65534)
    os.seteuid(65534)
    try:
        Files(public_root).write("/etc/new/file", b"x\n")
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert owner(public_root / "etc/new") == (0o700, 65534, 65534)
    assert owner(public_root / "etc/new/file") == (0o600, 65534, 65534)


def fake_restorecon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int) -> Path:
    """A restorecon on PATH that records its arguments (SELinux cannot run in this sandbox)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "restorecon.args"
    tool = bin_dir / "restorecon"
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\necho "restorecon: no policy" >&2\nexit {status}\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return record


def test_selinux_relabels_the_file_and_new_directories(root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With SELinux on, restorecon is run on the new file and on the directories made for it."""
    record = fake_restorecon(tmp_path, monkeypatch, 0)
    Files(root, selinux=True).write("/root/.ssh/authorized_keys", b"key\n")
    assert record.read_text().split("\n")[:-1] == ["--", str(root / "root"), str(root / "root/.ssh"),
                                                   str(root / "root/.ssh/authorized_keys")]


def test_selinux_failure_is_logged_not_raised(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A failing restorecon leaves the written file in place and says so in a warning."""
    fake_restorecon(tmp_path, monkeypatch, 1)
    Files(root, selinux=True).write("/etc/motd", SECRET)
    assert (root / "etc/motd").read_bytes() == SECRET
    assert "SELinux label was not restored" in caplog.text and "TOP-SECRET" not in caplog.text


def test_selinux_off_runs_nothing(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SELinux, and always under a --root directory, restorecon is not run."""
    record = fake_restorecon(tmp_path, monkeypatch, 0)
    assert selinux_enabled(root) is False
    assert Files(root).selinux is False
    Files(root, selinux=False).write("/etc/motd", b"x\n")
    assert not record.exists()


def test_empty_root_means_slash() -> None:
    """An empty root (the configuration's default) is the real root, never the current directory."""
    assert Files("").root == Path("/")


# -- new-file modes, reading, removing ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755, 0o4750])
def test_a_new_file_gets_the_mode_asked(root: Path, strict_umask: None, mode: int) -> None:
    """A new file gets exactly the mode the caller names, whatever the umask."""
    written = Files(root).write("/etc/network/interfaces", b"auto lo\n", mode=mode)
    assert owner(root / "etc/network/interfaces") == (mode, 0, 0)
    assert (written.created, written.mode) == (True, mode)


def test_a_replaced_file_keeps_its_mode_whatever_is_asked(root: Path) -> None:
    """The mode asked is for new files only: a replaced file keeps the mode it had."""
    (root / "etc/motd").chmod(0o640)
    written = Files(root, keep_backups=False).write("/etc/motd", b"new motd\n", mode=0o600)
    assert owner(root / "etc/motd")[0] == 0o640 and written.mode == 0o640


@pytest.mark.parametrize("mode", [-1, 0o10000])
def test_a_mode_that_is_no_mode_is_a_programming_error(root: Path, mode: int) -> None:
    """Only permission bits are a mode; anything else is refused before the disk is touched."""
    before = snapshot(root)
    with pytest.raises(ValueError, match="permission bits"):
        Files(root).write("/etc/new", b"x", mode=mode)
    assert snapshot(root) == before


def test_read(root: Path) -> None:
    """read gives the file's bytes; None when it, or its directory, does not exist."""
    files = Files(root)
    assert files.read("/etc/motd") == b"old motd\n"
    assert files.read("//etc/./motd") == b"old motd\n"
    assert files.read("/etc/absent") is None
    assert files.read("/no/such/dir/file") is None
    (root / "etc/empty").write_bytes(b"")
    assert files.read("/etc/empty") == b""


@pytest.mark.parametrize(("size", "refused"), [(9, False), (8, True)])
def test_read_is_bounded(root: Path, size: int, refused: bool) -> None:
    """A file larger than max_size is refused, naming the path and both sizes; one within it is read."""
    if not refused:
        assert Files(root).read("/etc/motd", max_size=size) == b"old motd\n"
        return
    with pytest.raises(FileRefused, match=r"refused to read '/etc/motd': it is 9 bytes, more than the 8 bytes"):
        Files(root).read("/etc/motd", max_size=size)


@pytest.mark.parametrize("attack", [leaf_link, dangling_leaf_link, parent_link, relative_link_out_of_root,
                                    link_within_root])
def test_read_and_remove_follow_no_link(root: Path, outside: Path, attack: Callable[[Path, Path], str]) -> None:
    """A link anywhere on the path is refused by read and remove: nothing is read or removed inside or
    outside the root."""
    path = attack(root, outside)
    inside, there = snapshot(root), snapshot(outside)
    with pytest.raises(FileRefused, match=r"refused to read .*symbolic link"):
        Files(root).read(path)
    with pytest.raises(FileRefused, match=r"refused to remove .*symbolic link"):
        Files(root).remove(path)
    assert snapshot(root) == inside
    assert snapshot(outside) == there


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_read_and_remove_refuse_what_is_no_regular_file(root: Path, make: Callable[[Path], None]) -> None:
    """A FIFO or directory on the path is refused by read (without blocking on it) and by remove."""
    make(root / "etc/thing")
    before = snapshot(root)
    for call in (Files(root).read, Files(root).remove):
        with pytest.raises(FileRefused, match=r"not a regular file|names a directory"):
            call("/etc/thing")
    assert snapshot(root) == before


def test_remove(root: Path) -> None:
    """remove deletes the file and says whether there was one; a missing file or directory is no error."""
    files = Files(root)
    assert files.remove("/etc/motd") is True
    assert os.listdir(root / "etc") == []
    assert files.remove("/etc/motd") is False
    assert files.remove("/no/such/dir/file") is False


def test_remove_obeys_the_policy(root: Path) -> None:
    """A path the policy does not allow to be written is not removed either."""
    before = snapshot(root)
    with pytest.raises(FileRefused, match="refused to remove '/etc/motd': the policy does not allow"):
        Files(root, allowed_paths=("/srv/*",)).remove("/etc/motd")
    assert snapshot(root) == before


def test_write_read_remove_round_trip(root: Path) -> None:
    """What write puts in place read gives back, with the mode asked; remove takes it away again."""
    files = Files(root, keep_backups=False)
    files.write("/etc/network/interfaces.d/eth0", b"auto eth0\n", mode=0o644)
    assert files.read("/etc/network/interfaces.d/eth0") == b"auto eth0\n"
    assert owner(root / "etc/network/interfaces.d/eth0")[0] == 0o644
    assert files.remove("/etc/network/interfaces.d/eth0") is True
    assert files.read("/etc/network/interfaces.d/eth0") is None
