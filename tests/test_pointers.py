"""The install root's pointers: atomic switching of either kind, and pointer files that do not name a release
refused with the file and the fix."""

from __future__ import annotations

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


def test_a_failed_write_leaves_the_old_pointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pointer file is written whole before the rename: a write that fails never touches the old pointer."""
    root = with_releases(tmp_path, "0.1.0", "0.2.0")
    store = Pointers(root, FILE)
    store.point("current", "0.1.0")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pointers.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        store.point("current", "0.2.0")
    assert store.read("current") == "0.1.0"
