"""The install root's pointers: atomic switching of either kind by writers that may run at once, pointer files
as Windows tools write them, and pointers of either kind that do not name a release refused with the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import pointers
from agent.errors import ReleaseError
from agent.pointers import FILE, KINDS, SYMLINK, Pointers


def with_releases(root: Path, *versions: str) -> Path:
    for version in versions:
        (root / "releases" / version).mkdir(parents=True)
    return root


@pytest.mark.parametrize("kind", KINDS)
def test_point_and_read(tmp_path: Path, kind: str) -> None:
    """A pointer of either kind names releases/<version>, is switched in place and leaves no temporary file."""
    store = Pointers(with_releases(tmp_path, "0.1.0", "0.2.0"), kind)
    assert store.read("current") is None
    store.point("current", "0.1.0")
    store.point("current", "0.2.0")
    assert store.read("current") == "0.2.0"
    path = tmp_path / "current"
    if kind == FILE:
        assert not path.is_symlink() and path.read_bytes() == b"releases/0.2.0\n"
    else:
        assert str(path.readlink()) == "releases/0.2.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "releases"]


def test_kind_follows_what_the_root_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A root keeps the kind its pointers have; an empty one takes the default (pointer files on Windows)."""
    monkeypatch.setattr(pointers, "DEFAULT_KIND", FILE)
    root = with_releases(tmp_path, "0.1.0")
    assert Pointers(root).kind == FILE
    Pointers(root, SYMLINK).point("previous", "0.1.0")
    assert Pointers(root).kind == SYMLINK


def test_a_pointer_file_is_read_in_a_symlink_root(tmp_path: Path) -> None:
    """Either kind is read wherever it is found: a pointer file replaces a link in one rename."""
    root = with_releases(tmp_path, "0.1.0", "0.2.0")
    Pointers(root, SYMLINK).point("current", "0.1.0")
    Pointers(root, FILE).point("current", "0.2.0")
    assert Pointers(root, SYMLINK).read("current") == "0.2.0"


@pytest.mark.parametrize(("content", "what"), [
    (b"", "is empty"),
    (b"releases/0.", "holds b'releases/0.', not the line 'releases/<version>'"),
    (b"releases/0.2.0\n\x00\x00", "holds b'releases/0.2.0\\n\\x00\\x00', not the line"),
    (b"../etc\n", "holds b'../etc\\n', not the line"),
    (b"releases/../../etc\n", "not the line 'releases/<version>'"),
    (b"/opt/openstack-agent/releases/0.2.0\n", "not the line 'releases/<version>'"),
    (b"releases\\0.2.0\n", "not the line 'releases/<version>'"),
    (b"releases/0.9.0\n", "names releases/0.9.0, which does not exist"),
    (b"releases/0.2.0" + b" " * 300, "not the line 'releases/<version>'"),
], ids=["empty", "torn", "trailing-garbage", "outside", "dot-dot", "absolute", "backslash", "missing", "long"])
def test_a_pointer_file_that_names_no_release_is_refused(tmp_path: Path, content: bytes, what: str) -> None:
    """A torn, empty or foreign pointer file, or one naming anything but an existing releases/<version>, is an
    error naming the file, what is wrong with it, and how to put it right."""
    root = with_releases(tmp_path, "0.2.0")
    (root / "current").write_bytes(content)
    with pytest.raises(ReleaseError) as raised:
        Pointers(root).read("current")
    message = str(raised.value)
    assert message.startswith(f"the pointer file {root / 'current'} ")
    assert what in message, message
    assert "write the line 'releases/<version>' of a release installed under" in message
    assert "'openstack-agent install BUNDLE'" in message


@pytest.mark.parametrize("content", [
    b"releases/0.2.0\r\n", b"releases/0.2.0 \r\n", b"releases/0.2.0\n\n", b"\xef\xbb\xbfreleases/0.2.0\r\n",
    "releases/0.2.0\r\n".encode("utf-16-le").join([b"\xff\xfe", b""]),
    "releases/0.2.0".encode("utf-16-be").join([b"\xfe\xff", b""]),
], ids=["cmd-echo", "cmd-echo-space", "blank-line", "notepad-bom", "powershell-5.1", "utf-16-be"])
def test_a_pointer_file_written_by_windows_tools_is_read(tmp_path: Path, content: bytes) -> None:
    """What cmd's echo, Notepad and Windows PowerShell write for the line (CR LF, blanks, a UTF-8 or UTF-16
    byte-order mark) names the release as the bare line does."""
    root = with_releases(tmp_path, "0.2.0")
    (root / "current").write_bytes(content)
    assert Pointers(root).read("current") == "0.2.0"


@pytest.mark.parametrize("content", [
    "releases/0.2.0".encode("utf-16-le"), b"\xef\xbb\xbfreleases/0.2.0\xc2\xa0", "releases/0.2.\u0660".encode("utf-16"),
], ids=["utf-16-without-bom", "non-ascii-utf-8", "non-ascii-utf-16"])
def test_only_an_ascii_line_is_a_pointer(tmp_path: Path, content: bytes) -> None:
    """Text that is not the ASCII line, in whatever encoding, is still refused with the fix."""
    root = with_releases(tmp_path, "0.2.0")
    (root / "current").write_bytes(content)
    with pytest.raises(ReleaseError, match="not the line 'releases/<version>'"):
        Pointers(root).read("current")


@pytest.mark.parametrize(("target", "what"), [
    ("/etc", "points at '/etc', not at releases/<version>"),
    ("releases/..", "points at 'releases/..', not at releases/<version>"),
    ("releases/../../../tmp/evil", "not at releases/<version>"),
    ("releases", "not at releases/<version>"),
    ("RELEASE_ABSOLUTE", "not at releases/<version>"),
    ("releases/0.9.0", "points at releases/0.9.0, which does not exist"),
], ids=["outside", "dot-dot", "escape", "the-releases", "absolute", "missing"])
def test_a_link_that_names_no_release_is_refused(tmp_path: Path, target: str, what: str) -> None:
    """A link is checked as a pointer file is: anything but releases/<version> of an existing release is an error
    naming the link, what it points at, and how to put it right."""
    root = with_releases(tmp_path, "0.2.0")
    (root / "previous").symlink_to(str(root / "releases/0.2.0") if target == "RELEASE_ABSOLUTE" else target)
    with pytest.raises(ReleaseError) as raised:
        Pointers(root).read("previous")
    message = str(raised.value)
    assert message.startswith(f"the link {root / 'previous'} points at ") and what in message, message
    assert f"'ln -sfn releases/<version> {root / 'previous'}'" in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_directory_in_place_of_a_pointer_is_refused(tmp_path: Path, kind: str) -> None:
    """A directory named current can be neither read nor replaced by a rename: both say so, with the fix."""
    root = with_releases(tmp_path, "0.2.0")
    (root / "current").mkdir()
    store = Pointers(root, kind)
    for attempt in (lambda: store.read("current"), lambda: store.point("current", "0.2.0")):
        with pytest.raises(ReleaseError, match=f"^{root / 'current'} is a directory, not a pointer: .* move the "
                                               "directory away, then install a release again"):
            attempt()
    assert sorted(p.name for p in root.iterdir()) == ["current", "releases"]


@pytest.mark.parametrize("kind", KINDS)
def test_two_writers_at_once_each_switch_whole(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer whose temporary is ready when another writer runs whole still switches: each has a temporary of
    its own, so neither removes nor renames the other's, and the pointer never ends up empty."""
    root = with_releases(tmp_path, "0.1.0", "0.2.0")
    store = Pointers(root, kind)
    replace = pointers._replace
    interleaved = []

    def another_writer_first(source: Path, target: Path) -> None:
        if not interleaved:
            interleaved.append(source)
            store.point("current", "0.1.0")
        replace(source, target)

    monkeypatch.setattr(pointers, "_replace", another_writer_first)
    store.point("current", "0.2.0")
    assert interleaved and store.read("current") == "0.2.0"
    assert sorted(p.name for p in root.iterdir()) == ["current", "releases"]


def test_switching_is_one_writer_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While one writer holds the pointers' lock another is refused once it has waited LOCK_WAIT, with a
    ReleaseError naming the lock; the next holder removes the temporaries a crashed writer left."""
    monkeypatch.setattr(pointers, "LOCK_WAIT", 0.0)
    root = with_releases(tmp_path, "0.2.0")
    left = [root / ".current.new", root / ".previous.k2j3h4.new"]
    for path in left:
        path.write_bytes(b"")
    busy = f"switching the pointers of {root} .* holds {root / pointers.LOCK}"
    with Pointers(root).switching():
        assert not any(path.exists() for path in left)
        with pytest.raises(ReleaseError, match=busy), Pointers(root).switching():
            pass


@pytest.mark.parametrize(("kind", "failing"), [(FILE, "fsync"), (SYMLINK, "symlink")])
def test_a_failed_write_leaves_the_old_pointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
                                              failing: str) -> None:
    """A pointer is made whole before the rename: a write that fails is a ReleaseError naming the pointer, leaves
    the old pointer and no temporary behind."""
    root = with_releases(tmp_path, "0.1.0", "0.2.0")
    store = Pointers(root, kind)
    store.point("current", "0.1.0")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pointers.os, failing, fail)
    with pytest.raises(ReleaseError, match=f"^cannot point {root / 'current'} at releases/0.2.0: No space left"):
        store.point("current", "0.2.0")
    assert store.read("current") == "0.1.0"
    assert sorted(p.name for p in root.iterdir()) == ["current", "releases"]


@pytest.mark.parametrize("planted", ["link", "dangling link", "fifo"])
def test_something_planted_in_place_of_the_lock_is_replaced(tmp_path: Path, planted: str) -> None:
    """A link (dangling or not) or a FIFO in place of the lock file is removed, never followed or opened, and the
    lock taken on a regular file made there; what a link named is untouched."""
    root = with_releases(tmp_path, "0.2.0")
    lock = root / pointers.LOCK
    (tmp_path / "elsewhere").write_text("keep me\n")
    if planted == "fifo":
        os.mkfifo(lock)
    else:
        lock.symlink_to(tmp_path / ("elsewhere" if planted == "link" else "nothing"))
    with Pointers(root).switching():
        Pointers(root, FILE).point("current", "0.2.0")
    assert lock.is_file() and not lock.is_symlink()
    assert (tmp_path / "elsewhere").read_text() == "keep me\n" and not (tmp_path / "nothing").exists()
    assert Pointers(root).read("current") == "0.2.0"


def test_a_directory_in_place_of_the_lock_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A directory in place of the lock file is an operator's to move: ReleaseError naming it and the fix, and
    the directory and what it holds are left as they were."""
    root = with_releases(tmp_path, "0.2.0")
    (root / pointers.LOCK / "inside").mkdir(parents=True)
    with pytest.raises(ReleaseError, match=f"cannot lock {root / pointers.LOCK} .*: it is a directory.*move the "
                                           "directory away"), Pointers(root).switching():
        pass
    assert [p.name for p in (root / pointers.LOCK).iterdir()] == ["inside"]


def test_what_a_switch_raises_is_not_taken_for_the_lock(tmp_path: Path) -> None:
    """An error inside switching() reaches the caller as it is, not as a failure to take the lock, and the lock
    is free again afterwards."""
    root = with_releases(tmp_path, "0.2.0")
    with pytest.raises(PermissionError, match="refused"), Pointers(root).switching():
        raise PermissionError(13, "refused")
    with Pointers(root).switching():
        Pointers(root, FILE).point("current", "0.2.0")
    assert Pointers(root).read("current") == "0.2.0"
