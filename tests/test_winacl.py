"""The Windows state directory's ACL, built against the fake win32security: which SIDs, which rights, owner,
protected from inheritance, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import JournalError, PlatformError
from agent.winacl import StateDirAcl
from tests.fakes.win32service import FakeSecurity, PySID

SYSTEM, ADMINISTRATORS = PySID(22), PySID(26)
FILE_ALL_ACCESS = 0x1F01FF
OBJECT_AND_CONTAINER_INHERIT = 0x1 | 0x2
SE_FILE_OBJECT = 1
OWNER_DACL_PROTECTED = 0x1 | 0x4 | 0x80000000


def test_the_directory_gets_a_protected_dacl_for_system_and_administrators(tmp_path: Path) -> None:
    """The directory is made, Administrators own it, and its DACL, protected from the parent's entries, allows
    full control, inherited by files and subdirectories, to SYSTEM and Administrators and to no one else."""
    fake = FakeSecurity()
    security, pywintypes = fake.modules()
    directory = tmp_path / "ProgramData" / "OpenStackAgent"
    StateDirAcl(security, pywintypes).secure(directory)
    assert directory.is_dir()
    [(name, object_type, info, owner, group, dacl, sacl)] = fake.calls
    assert (name, object_type, info, owner, group, sacl) == (str(directory), SE_FILE_OBJECT, OWNER_DACL_PROTECTED,
                                                             ADMINISTRATORS, None, None)
    assert dacl.aces == [("allow", 2, OBJECT_AND_CONTAINER_INHERIT, FILE_ALL_ACCESS, SYSTEM),
                         ("allow", 2, OBJECT_AND_CONTAINER_INHERIT, FILE_ALL_ACCESS, ADMINISTRATORS)]


def test_an_existing_directory_is_secured_again(tmp_path: Path) -> None:
    """A directory that exists (made by someone else, or by an older agent) gets the same owner and ACL."""
    fake = FakeSecurity()
    directory = tmp_path / "OpenStackAgent"
    directory.mkdir()
    (directory / "journal.sqlite3").write_bytes(b"")
    StateDirAcl(*fake.modules()).secure(directory)
    assert len(fake.calls) == 1 and fake.calls[0][3] == ADMINISTRATORS


@pytest.mark.parametrize(("code", "words"), [(5, "error 5"), (1307, "error 1307")])
def test_a_refused_acl_is_a_journal_error(tmp_path: Path, code: int, words: str) -> None:
    """Access denied, or an owner the caller may not set (ERROR_INVALID_OWNER), stops the start with a
    JournalError saying what to run the agent as."""
    fake = FakeSecurity(refuse=code)
    with pytest.raises(JournalError) as raised:
        StateDirAcl(*fake.modules()).secure(tmp_path / "OpenStackAgent")
    assert f"SetNamedSecurityInfo failed with {words}" in str(raised.value)
    assert str(raised.value).endswith("run the agent as LocalSystem or as an administrator")


def test_without_pywin32_it_says_so(tmp_path: Path) -> None:
    """Here, where pywin32 is missing, the real modules are asked for and their absence is explained."""
    with pytest.raises(PlatformError, match="pywin32 is not installed"):
        StateDirAcl().secure(tmp_path / "OpenStackAgent")
