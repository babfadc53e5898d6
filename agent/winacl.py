r"""The agent's private places on Windows: the state directory ``%ProgramData%\OpenStackAgent`` and the log
file, for SYSTEM and Administrators alone.

The Windows analogue of the 0700 directory and 0600 files the agent keeps on Linux: the directory has
Administrators as its owner and a protected DACL (nothing inherited from ``%ProgramData%``, whose ACL lets every
user create and read) of two entries, full control for SYSTEM and for the Administrators group, both inherited by
every file and directory created in it (the journal, its WAL, the lock, the intake note). In SDDL:
``O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)``. The log file gets the same two entries, not inheritable.

A missing directory is created with that security descriptor (``CreateDirectory`` with security attributes),
so that it is never, even for an instant, open to the users. A directory that exists was made before this
start: by an older agent, an administrator, or a user (``%ProgramData%`` lets users create folders). It is
refused when a user owns it (the user may hold handles opened before any ACL change); otherwise it gets the
owner and protected DACL again, and then everything in it is checked: the protected DACL replaces the entries
its files and folders inherited, but an entry keeps its owner (who can always change its ACL) and its own
explicit entries, and a link leads elsewhere. So an entry owned by neither SYSTEM nor Administrators, one with
explicit access entries, a symbolic link, junction or other reparse point, or a file with several hard links,
stops the start, naming what to remove. Nothing inside is changed: resetting the ACL through a link a user
planted would change the ACL of what it points at.

Facts this module relies on (pywin32's win32security, win32file and ntsecuritycon, the Windows access control
docs):

- ``win32security.CreateWellKnownSid(WellKnownSidType, DomainSid=None)`` returns a ``PySID``;
  ``WinLocalSystemSid`` is 22 (S-1-5-18), ``WinBuiltinAdministratorsSid`` 26 (S-1-5-32-544). ``PySID``s
  compare equal when the SIDs are (``EqualSid``).
- ``win32security.ACL()`` is an empty ``PyACL``; ``PyACL.AddAccessAllowedAceEx(revision, aceflags, access,
  sid)`` appends an allow entry. ``ACL_REVISION`` is 2; ``OBJECT_INHERIT_ACE`` 1 and ``CONTAINER_INHERIT_ACE``
  2 make files and subdirectories inherit it; ``INHERITED_ACE`` (0x10) marks an entry that was inherited, an
  explicit one lacks it; ``FILE_ALL_ACCESS`` is 0x1F01FF (ntsecuritycon). ``PyACL.GetAceCount()``;
  ``PyACL.GetAce(index)`` returns ``((type, flags), mask, sid)`` (object entries have more items after the
  mask; the flags are always at ``[0][1]``).
- ``win32security.SECURITY_DESCRIPTOR()`` with ``SetSecurityDescriptorOwner(sid, defaulted)``,
  ``SetSecurityDescriptorDacl(present, acl, defaulted)`` and ``SetSecurityDescriptorControl(bits_of_interest,
  bits_to_set)`` (``SE_DACL_PROTECTED`` 0x1000); ``win32security.SECURITY_ATTRIBUTES()`` whose
  ``SECURITY_DESCRIPTOR`` it is set to. ``win32file.CreateDirectory(name, security_attributes)`` creates the
  directory with it, or fails with ``ERROR_ALREADY_EXISTS`` (183); ``win32file.CreateFile(name, access, share,
  security_attributes, creation, flags, template)`` with ``CREATE_NEW`` (1) creates a file with it, or fails with
  ``ERROR_FILE_EXISTS`` (80); the handle has ``Close()``.
- ``win32security.GetNamedSecurityInfo(ObjectName, ObjectType, SecurityInfo)`` returns a
  ``PySECURITY_DESCRIPTOR`` (``GetSecurityDescriptorOwner()``, ``GetSecurityDescriptorDacl()``, None for a
  NULL DACL, which allows everyone everything). It opens the object by name, following a link.
- ``win32security.SetNamedSecurityInfo(ObjectName, ObjectType, SecurityInfo, Owner, Group, Dacl, Sacl)`` with
  ``SE_FILE_OBJECT`` (1); ``OWNER_SECURITY_INFORMATION`` 1, ``DACL_SECURITY_INFORMATION`` 4 and
  ``PROTECTED_DACL_SECURITY_INFORMATION`` 0x80000000, which keeps the parent's inheritable entries out (the
  "disable inheritance" of the Explorer, without copying them). Set this way, the new inheritable entries are
  also propagated to the files already in the directory, replacing what they had inherited and nothing else.
  Failures raise ``pywintypes.error(winerror, funcname, strerror)``.
- Making a group the owner needs that group in the caller's token as an owner group, which the
  Administrators group is for an elevated administrator and for SYSTEM; the service runs as LocalSystem
  (``ERROR_INVALID_OWNER``, 1307, otherwise).
- ``os.lstat`` fills ``st_file_attributes`` on Windows (``FILE_ATTRIBUTE_REPARSE_POINT`` 0x400 for links and
  junctions) and ``st_nlink``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agent.errors import JournalError, PlatformError
from agent.winlog import describe, pywin32

WIN_LOCAL_SYSTEM_SID = 22
WIN_BUILTIN_ADMINISTRATORS_SID = 26
ACL_REVISION = 2
OBJECT_INHERIT_ACE = 0x1
CONTAINER_INHERIT_ACE = 0x2
INHERITED_ACE = 0x10
FILE_ALL_ACCESS = 0x1F01FF
SE_FILE_OBJECT = 1
SE_DACL_PROTECTED = 0x1000
OWNER_SECURITY_INFORMATION = 0x1
DACL_SECURITY_INFORMATION = 0x4
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
GENERIC_WRITE = 0x40000000
FILE_SHARE_ALL = 0x1 | 0x2 | 0x4  # read, write, delete: the log handler opens the file after this
CREATE_NEW = 1
FILE_ATTRIBUTE_NORMAL = 0x80
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
ERROR_FILE_EXISTS = 80
ERROR_ALREADY_EXISTS = 183
#: Who may use the state directory, by well-known SID type: SYSTEM (the service) and the Administrators.
TRUSTED = (WIN_LOCAL_SYSTEM_SID, WIN_BUILTIN_ADMINISTRATORS_SID)
INHERITED = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE
#: How many of the entries to remove a refusal names.
NAMED = 5


@dataclass
class StateDirAcl:
    """Creates and checks the agent's private places through pywin32 (injectable, for the tests)."""

    win32security: ModuleType | None = None
    pywintypes: ModuleType | None = None
    win32file: ModuleType | None = None

    def _module(self, name: str) -> Any:
        return pywin32(name, getattr(self, name))

    def dacl(self, inherit: int = INHERITED) -> Any:
        """The DACL: full control for SYSTEM and Administrators only, with ``inherit``'s inheritance flags."""
        security = self._module("win32security")
        acl = security.ACL()
        for known in TRUSTED:
            acl.AddAccessAllowedAceEx(ACL_REVISION, inherit, FILE_ALL_ACCESS, security.CreateWellKnownSid(known))
        return acl

    def attributes(self, inherit: int) -> Any:
        """Security attributes for a new object: owned by Administrators, the DACL above, protected."""
        security = self._module("win32security")
        descriptor = security.SECURITY_DESCRIPTOR()
        descriptor.SetSecurityDescriptorOwner(security.CreateWellKnownSid(WIN_BUILTIN_ADMINISTRATORS_SID), False)
        descriptor.SetSecurityDescriptorDacl(True, self.dacl(inherit), False)
        descriptor.SetSecurityDescriptorControl(SE_DACL_PROTECTED, SE_DACL_PROTECTED)
        attributes = security.SECURITY_ATTRIBUTES()
        attributes.SECURITY_DESCRIPTOR = descriptor
        return attributes

    def secure(self, directory: Path) -> None:
        """Create ``directory`` for SYSTEM and Administrators only; or, when it exists, refuse it if a user owns
        it, give it the owner and protected DACL again, and refuse it if it holds what the agent did not make."""
        error = self._module("pywintypes").error
        advice = "run the agent as LocalSystem or as an administrator"
        try:
            os.makedirs(directory.parent, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the state directory {directory}: {exc.strerror}; check its "
                               "path or choose another with --state-dir") from exc
        try:
            self._module("win32file").CreateDirectory(str(directory), self.attributes(INHERITED))
            return
        except error as exc:
            if getattr(exc, "winerror", None) != ERROR_ALREADY_EXISTS:
                raise JournalError(f"cannot create the state directory {directory} for SYSTEM and Administrators: "
                                   f"{describe(exc)}; {advice}") from exc
        if _linked(directory):
            raise JournalError(f"the state directory {directory} is a link, junction or other reparse point, not a "
                               "directory the agent made; remove it and start the agent again")
        try:
            if self._foreign(directory, check_dacl=False):
                raise JournalError(
                    f"the state directory {directory} was not made by the agent: its owner is neither SYSTEM nor "
                    "the Administrators; remove it (it then holds no journal of this agent's) and start the agent "
                    "again")
            security = self._module("win32security")
            security.SetNamedSecurityInfo(
                str(directory), SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                security.CreateWellKnownSid(WIN_BUILTIN_ADMINISTRATORS_SID), None, self.dacl(), None)
            strangers = self._strangers(directory)
        except error as exc:
            raise JournalError(f"cannot restrict the state directory {directory} to SYSTEM and Administrators: "
                               f"{describe(exc)}; {advice}") from exc
        if strangers:
            named = ", ".join(str(path) for path in strangers[:NAMED])
            more = f" and {len(strangers) - NAMED} more" if len(strangers) > NAMED else ""
            raise JournalError(
                f"the state directory {directory} holds what the agent did not make (owned by another account, "
                f"with access entries of its own, or a link): {named}{more}; remove them and start the agent "
                "again")

    def _foreign(self, path: Path, check_dacl: bool = True) -> bool:
        """Whether ``path`` is owned by neither SYSTEM nor Administrators, or (``check_dacl``) has a NULL DACL or
        an explicit entry."""
        security = self._module("win32security")
        descriptor = security.GetNamedSecurityInfo(str(path), SE_FILE_OBJECT,
                                                   OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION)
        trusted = [security.CreateWellKnownSid(known) for known in TRUSTED]
        if descriptor.GetSecurityDescriptorOwner() not in trusted:
            return True
        if not check_dacl:
            return False
        dacl = descriptor.GetSecurityDescriptorDacl()
        if dacl is None:
            return True
        return any(not dacl.GetAce(index)[0][1] & INHERITED_ACE for index in range(dacl.GetAceCount()))

    def _strangers(self, directory: Path) -> list[Path]:
        """What in ``directory`` the agent did not make: links, and entries ``_foreign`` finds. A link is not
        followed, nor is a directory found foreign entered."""
        found: list[Path] = []
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                path = Path(entry.path)
                if _linked(path) or self._foreign(path):
                    found.append(path)
                elif entry.is_dir(follow_symlinks=False):
                    found.extend(self._strangers(path))
        return found

    def create_file(self, path: str) -> None:
        """Create ``path`` for SYSTEM and Administrators only, unless it exists (which is left as it is)."""
        error = self._module("pywintypes").error
        try:
            handle = self._module("win32file").CreateFile(path, GENERIC_WRITE, FILE_SHARE_ALL, self.attributes(0),
                                                          CREATE_NEW, FILE_ATTRIBUTE_NORMAL, None)
        except error as exc:
            if getattr(exc, "winerror", None) == ERROR_FILE_EXISTS:
                return
            raise PlatformError(f"cannot create {path} for SYSTEM and Administrators: {describe(exc)}") from exc
        handle.Close()


def _linked(path: Path) -> bool:
    """Whether ``path`` leads elsewhere: a symbolic link, a junction or other reparse point, or a file with
    several hard links."""
    info = os.lstat(path)
    return bool(stat.S_ISLNK(info.st_mode) or getattr(info, "st_file_attributes", 0) & FILE_ATTRIBUTE_REPARSE_POINT
                or (stat.S_ISREG(info.st_mode) and info.st_nlink > 1))


def secure_state_dir(directory: Path) -> None:
    """Create or check the state directory as above (Windows only; the real pywin32)."""
    StateDirAcl().secure(directory)


def create_private_file(path: str) -> None:
    """Create ``path``, when missing, for SYSTEM and Administrators only (Windows only; the real pywin32)."""
    StateDirAcl().create_file(path)
