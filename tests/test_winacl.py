"""The Windows state directory's and log file's ACL, against the fake win32security and win32file over real
files: which SIDs, which rights, owner, protected from inheritance; a new directory made with them at once; an
existing one secured again, and refused when a user owns it or it holds what the agent did not make."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import JournalError, PlatformError
from agent.winacl import StateDirAcl
from tests.fakes.win32service import USER, FakeSecurity, PySID

SYSTEM, ADMINISTRATORS = PySID(22), PySID(26)
FILE_ALL_ACCESS = 0x1F01FF
FILE_GENERIC_READ = 0x120089
OBJECT_AND_CONTAINER_INHERIT = 0x1 | 0x2
INHERITED_ACE = 0x10
SE_FILE_OBJECT = 1
SE_DACL_PROTECTED = 0x1000
OWNER_DACL_PROTECTED = 0x1 | 0x4 | 0x80000000
THE_DACL = [("allow", 2, OBJECT_AND_CONTAINER_INHERIT, FILE_ALL_ACCESS, SYSTEM),
            ("allow", 2, OBJECT_AND_CONTAINER_INHERIT, FILE_ALL_ACCESS, ADMINISTRATORS)]
#: What a file in the secured directory inherits from it.
INHERITED = [("allow", 2, INHERITED_ACE, FILE_ALL_ACCESS, SYSTEM),
             ("allow", 2, INHERITED_ACE, FILE_ALL_ACCESS, ADMINISTRATORS)]


def test_a_new_directory_is_created_with_its_security_descriptor(tmp_path: Path) -> None:
    """A missing directory is made by CreateDirectory with the descriptor (Administrators the owner, the DACL
    protected, full control inherited by files and subdirectories for SYSTEM and Administrators and no one else),
    never set afterwards, so it is not open to users for an instant."""
    fake = FakeSecurity()
    directory = tmp_path / "ProgramData" / "OpenStackAgent"
    StateDirAcl(*fake.modules()).secure(directory)
    assert directory.is_dir()
    made = fake.descriptors[str(directory)]
    assert (made.owner, made.control & SE_DACL_PROTECTED) == (ADMINISTRATORS, SE_DACL_PROTECTED)
    assert made.dacl is not None and made.dacl.aces == THE_DACL
    assert fake.calls == []


def test_an_existing_directory_is_secured_again_and_its_files_checked(tmp_path: Path) -> None:
    """A directory an older agent made gets the owner and protected DACL again; its files, the agent's, pass the
    check, and what they inherited from %ProgramData% (users' read) is replaced by the directory's entries."""
    fake = FakeSecurity()
    directory = tmp_path / "OpenStackAgent"
    (directory / "keys").mkdir(parents=True)
    for name in ("journal.sqlite3", "keys/host.pem"):
        (directory / name).write_bytes(b"")
    fake.set(directory / "journal.sqlite3", ADMINISTRATORS)
    journal = fake.descriptors[str(directory / "journal.sqlite3")]
    assert journal.dacl is not None
    journal.dacl.aces.append(("allow", 2, INHERITED_ACE, FILE_GENERIC_READ, PySID("S-1-5-32-545")))
    StateDirAcl(*fake.modules()).secure(directory)
    [(name, object_type, info, owner, group, dacl, sacl)] = fake.calls
    assert (name, object_type, info, owner, group, dacl.aces, sacl) == (
        str(directory), SE_FILE_OBJECT, OWNER_DACL_PROTECTED, ADMINISTRATORS, None, THE_DACL, None)
    for name in ("journal.sqlite3", "keys", "keys/host.pem"):
        descriptor = fake.descriptors[str(directory / name)]
        assert descriptor.owner == ADMINISTRATORS and descriptor.dacl is not None
        flags = OBJECT_AND_CONTAINER_INHERIT if name == "keys" else 0
        assert descriptor.dacl.aces == [(kind, revision, inherited | flags, mask, sid)
                                        for kind, revision, inherited, mask, sid in INHERITED], name


def _user_file(fake: FakeSecurity, directory: Path) -> Path:
    path = directory / "journal.sqlite3"
    path.write_bytes(b"")
    fake.set(path, USER)
    return path


def _explicit_entry(fake: FakeSecurity, directory: Path) -> Path:
    path = directory / "journal.sqlite3-wal"
    path.write_bytes(b"")
    fake.set(path, ADMINISTRATORS, (0, FILE_ALL_ACCESS, USER))
    return path


def _user_folder(fake: FakeSecurity, directory: Path) -> Path:
    path = directory / "keys"
    path.mkdir()
    (path / "host.pem").write_bytes(b"")
    fake.set(path, USER)
    return path


def _symlink(fake: FakeSecurity, directory: Path) -> Path:
    path = directory / "journal.sqlite3"
    path.symlink_to(directory.parent / "elsewhere")
    return path


def _hard_link(fake: FakeSecurity, directory: Path) -> Path:
    (directory.parent / "elsewhere").write_bytes(b"")
    path = directory / "journal.sqlite3"
    os.link(directory.parent / "elsewhere", path)
    return path


@pytest.mark.parametrize("plant", [_user_file, _explicit_entry, _user_folder, _symlink, _hard_link])
def test_what_the_agent_did_not_make_is_refused_and_named(tmp_path: Path,
                                                          plant: Callable[[FakeSecurity, Path], Path]) -> None:
    """A file a user made (it keeps its owner under the protected DACL), one with explicit entries (it keeps
    them), a user's folder (not entered), a symbolic link or a hard link stops the start naming it; nothing in
    the directory is changed."""
    fake = FakeSecurity()
    directory = tmp_path / "OpenStackAgent"
    directory.mkdir()
    planted = plant(fake, directory)
    before = {path: (d.owner, list(d.dacl.aces) if d.dacl else None) for path, d in fake.descriptors.items()}
    with pytest.raises(JournalError) as raised:
        StateDirAcl(*fake.modules()).secure(directory)
    assert f"holds what the agent did not make (owned by another account, with access entries of its own, or a " \
           f"link): {planted}; remove them" in str(raised.value)
    assert [call[0] for call in fake.calls] == [str(directory)]
    for path, (owner, aces) in before.items():
        descriptor = fake.descriptors[path]
        assert descriptor.owner == owner
        assert aces is None or [ace for ace in aces if not ace[2] & INHERITED_ACE] == [
            ace for ace in descriptor.dacl.aces if not ace[2] & INHERITED_ACE]  # type: ignore[union-attr]


def test_a_directory_a_user_made_is_refused_untouched(tmp_path: Path) -> None:
    """A state directory a user owns (who may hold handles into it) is refused before its ACL is changed."""
    fake = FakeSecurity()
    directory = tmp_path / "OpenStackAgent"
    directory.mkdir()
    fake.set(directory, USER, (OBJECT_AND_CONTAINER_INHERIT, FILE_ALL_ACCESS, USER))
    with pytest.raises(JournalError, match="was not made by the agent: its owner is neither SYSTEM nor"):
        StateDirAcl(*fake.modules()).secure(directory)
    assert fake.calls == []


def test_a_state_directory_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """A link (a junction, on Windows) in the state directory's place is refused: securing it would change
    the ACL of what it points at."""
    fake = FakeSecurity()
    (tmp_path / "Windows").mkdir()
    directory = tmp_path / "OpenStackAgent"
    directory.symlink_to(tmp_path / "Windows")
    with pytest.raises(JournalError, match="is a link, junction or other reparse point"):
        StateDirAcl(*fake.modules()).secure(directory)
    assert fake.calls == []


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("code", [5, 1307])
def test_a_refused_acl_is_a_journal_error(tmp_path: Path, code: int, existing: bool) -> None:
    """Access denied, or an owner the caller may not set (ERROR_INVALID_OWNER), stops the start with a
    JournalError saying what to run the agent as, whether the directory is new or not."""
    fake = FakeSecurity(refuse=code)
    directory = tmp_path / "OpenStackAgent"
    if existing:
        directory.mkdir()
    with pytest.raises(JournalError) as raised:
        StateDirAcl(*fake.modules()).secure(directory)
    function = "SetNamedSecurityInfo" if existing else "CreateDirectory"
    assert f"{function} failed with error {code}" in str(raised.value)
    assert str(raised.value).endswith("run the agent as LocalSystem or as an administrator")


def test_a_private_file_is_created_for_system_and_administrators(tmp_path: Path) -> None:
    """create_file makes a missing file with Administrators as owner and a protected DACL for SYSTEM and
    Administrators, not inheritable, and closes its handle; a file that exists is left as it is."""
    fake = FakeSecurity()
    path = tmp_path / "OpenStackAgent.log"
    StateDirAcl(*fake.modules()).create_file(str(path))
    made = fake.descriptors[str(path)]
    assert (made.owner, made.control & SE_DACL_PROTECTED) == (ADMINISTRATORS, SE_DACL_PROTECTED)
    assert made.dacl is not None and made.dacl.aces == [("allow", 2, 0, FILE_ALL_ACCESS, SYSTEM),
                                                        ("allow", 2, 0, FILE_ALL_ACCESS, ADMINISTRATORS)]
    assert [handle.closed for handle in fake.handles] == [True]
    path.write_text("earlier lines")
    StateDirAcl(*fake.modules()).create_file(str(path))
    assert path.read_text() == "earlier lines" and len(fake.handles) == 1


def test_without_pywin32_it_says_so(tmp_path: Path) -> None:
    """Here, where pywin32 is missing, the real modules are asked for and their absence is explained."""
    with pytest.raises(PlatformError, match="pywin32 is not installed"):
        StateDirAcl().secure(tmp_path / "OpenStackAgent")
