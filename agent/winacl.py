r"""The state directory on Windows: ``%ProgramData%\OpenStackAgent``, for SYSTEM and Administrators alone.

The Windows analogue of the 0700 directory and 0600 files the agent keeps on Linux: the directory gets a
protected DACL (nothing inherited from ``%ProgramData%``, whose ACL lets every user create and read) of two
entries, full control for SYSTEM and for the Administrators group, both inherited by every file and directory
created in it (the journal, its WAL, the lock, the intake note). Administrators also become its owner, so that
a user who created the directory before the agent did (``%ProgramData%`` allows it) keeps no rights over it.
In SDDL: ``O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)``.

Facts this module relies on (pywin32's win32security and ntsecuritycon, the Windows access control docs):

- ``win32security.CreateWellKnownSid(WellKnownSidType, DomainSid=None)`` returns a ``PySID``;
  ``WinLocalSystemSid`` is 22 (S-1-5-18), ``WinBuiltinAdministratorsSid`` 26 (S-1-5-32-544).
- ``win32security.ACL()`` is an empty ``PyACL``; ``PyACL.AddAccessAllowedAceEx(revision, aceflags, access,
  sid)`` appends an allow entry. ``ACL_REVISION`` is 2; ``OBJECT_INHERIT_ACE`` 1 and ``CONTAINER_INHERIT_ACE``
  2 make files and subdirectories inherit it; ``FILE_ALL_ACCESS`` is 0x1F01FF (ntsecuritycon).
- ``win32security.SetNamedSecurityInfo(ObjectName, ObjectType, SecurityInfo, Owner, Group, Dacl, Sacl)`` with
  ``SE_FILE_OBJECT`` (1); ``OWNER_SECURITY_INFORMATION`` 1, ``DACL_SECURITY_INFORMATION`` 4 and
  ``PROTECTED_DACL_SECURITY_INFORMATION`` 0x80000000, which keeps the parent's inheritable entries out (the
  "disable inheritance" of the Explorer, without copying them). Set this way, the new inheritable entries are
  also propagated to the files already in the directory (automatic propagation), replacing what they had
  inherited. Failures raise ``pywintypes.error(winerror, "SetNamedSecurityInfo", strerror)``.
- Making a group the owner needs that group in the caller's token as an owner group, which the
  Administrators group is for an elevated administrator and for SYSTEM; the service runs as LocalSystem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agent.errors import JournalError
from agent.winlog import describe, pywin32

WIN_LOCAL_SYSTEM_SID = 22
WIN_BUILTIN_ADMINISTRATORS_SID = 26
ACL_REVISION = 2
OBJECT_INHERIT_ACE = 0x1
CONTAINER_INHERIT_ACE = 0x2
FILE_ALL_ACCESS = 0x1F01FF
SE_FILE_OBJECT = 1
OWNER_SECURITY_INFORMATION = 0x1
DACL_SECURITY_INFORMATION = 0x4
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
#: Who may use the state directory, by well-known SID type: SYSTEM (the service) and the Administrators.
TRUSTED = (WIN_LOCAL_SYSTEM_SID, WIN_BUILTIN_ADMINISTRATORS_SID)
INHERITED = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE


@dataclass
class StateDirAcl:
    """Sets the state directory's owner and protected DACL through pywin32 (injectable, for the tests)."""

    win32security: ModuleType | None = None
    pywintypes: ModuleType | None = None

    def _module(self, name: str) -> Any:
        return pywin32(name, getattr(self, name))

    def dacl(self) -> Any:
        """The DACL: full control, inherited by files and subdirectories, for SYSTEM and Administrators only."""
        security = self._module("win32security")
        acl = security.ACL()
        for known in TRUSTED:
            acl.AddAccessAllowedAceEx(ACL_REVISION, INHERITED, FILE_ALL_ACCESS, security.CreateWellKnownSid(known))
        return acl

    def secure(self, directory: Path) -> None:
        """Create ``directory`` if needed, then make Administrators its owner and give it the DACL, protected."""
        security, error = self._module("win32security"), self._module("pywintypes").error
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the state directory {directory}: {exc.strerror}; check its "
                               "path or choose another with --state-dir") from exc
        try:
            owner = security.CreateWellKnownSid(WIN_BUILTIN_ADMINISTRATORS_SID)
            security.SetNamedSecurityInfo(
                str(directory), SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                owner, None, self.dacl(), None)
        except error as exc:
            raise JournalError(f"cannot restrict the state directory {directory} to SYSTEM and Administrators: "
                               f"{describe(exc)}; run the agent as LocalSystem or as an administrator") from exc


def secure_state_dir(directory: Path) -> None:
    """Create the state directory with the ACL above (Windows only; the real pywin32)."""
    StateDirAcl().secure(directory)
