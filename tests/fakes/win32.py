"""A stand-in for pywin32's ``win32net``, ``win32security`` and ``pywintypes``, which cannot run here.

It follows recorded facts about the real modules (pywin32's win32netuser.cpp and win32security, the NetUser
API and LogonUser docs):
- ``pywintypes.error(winerror, funcname, strerror)``, with those three as attributes.
- ``NetUserEnum(server, level, filter, resumeHandle=0, prefLen=...)`` returns ``(users, total, resume)``
  and pages: a non-zero resume handle means "call again with it"; zero means done.
- Level 20 user dicts hold ``name``, ``full_name``, ``comment``, ``flags`` and ``user_id`` (the RID).
- ``NetUserSetInfo(server, username, level, data)``: level 1003 is ``{"password": ...}``; an unknown user
  raises NERR_UserNotFound (2221), a password the policy refuses NERR_PasswordTooShort (2245).
- ``LogonUser(username, domain, password, logonType, logonProvider)`` returns a ``PyHANDLE`` (closed with
  ``Close()``) or raises ``error(code, "LogonUser", text)``. A wrong password and an unknown user both give
  ERROR_LOGON_FAILURE (1326); ERROR_PASSWORD_MUST_CHANGE (1907) and ERROR_PASSWORD_EXPIRED (1330) come only
  with the right password.

Other refusals (a disabled account, a logon type not granted, ...) are raised here whatever the password:
they say nothing about it, which is all the backend may assume of them.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

NERR_USER_NOT_FOUND = 2221
NERR_PASSWORD_TOO_SHORT = 2245
ERROR_LOGON_FAILURE = 1326
ERROR_ACCOUNT_RESTRICTION = 1327
ERROR_PASSWORD_EXPIRED = 1330
ERROR_ACCOUNT_DISABLED = 1331
ERROR_LOGON_TYPE_NOT_GRANTED = 1385
ERROR_PASSWORD_MUST_CHANGE = 1907
ERROR_ACCOUNT_LOCKED_OUT = 1909
MESSAGES = {
    NERR_USER_NOT_FOUND: "The user name could not be found.",
    NERR_PASSWORD_TOO_SHORT: "The password does not meet the password policy requirements. Check the minimum "
                             "password length, password complexity and password history requirements.",
    ERROR_LOGON_FAILURE: "The user name or password is incorrect.",
    ERROR_ACCOUNT_RESTRICTION: "Account restrictions are preventing this user from signing in. For example: "
                               "blank passwords aren't allowed, sign-in times are limited, or a policy "
                               "restriction has been enforced.",
    ERROR_PASSWORD_EXPIRED: "The password for this account has expired.",
    ERROR_ACCOUNT_DISABLED: "This user can't sign in because this account is currently disabled.",
    ERROR_LOGON_TYPE_NOT_GRANTED: "Logon failure: the user has not been granted the requested logon type at "
                                  "this computer.",
    ERROR_PASSWORD_MUST_CHANGE: "The user's password must be changed before signing in.",
    ERROR_ACCOUNT_LOCKED_OUT: "The referenced account is currently locked out and may not be logged on to.",
}
#: Account states whose refusal comes only after the password was verified.
AFTER_PASSWORD = frozenset({ERROR_PASSWORD_MUST_CHANGE, ERROR_PASSWORD_EXPIRED})


class error(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class PyHANDLE:
    """A token handle: it records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def Close(self) -> None:
        self.closed = True


@dataclass
class FakeWindows:
    """Accounts by name with their RIDs; records every call made to the API (never a password)."""

    users: dict[str, int] = field(default_factory=lambda: {"Guest": 501, "DefaultAccount": 503,
                                                          "Järjestelmänvalvoja": 500, "cloudbase": 1001})
    min_length: int = 8
    page_size: int = 2
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    #: An account's state that refuses its logons, as the error code LogonUser raises for it.
    refusals: dict[str, int] = field(default_factory=dict)
    handles: list[PyHANDLE] = field(default_factory=list)

    def modules(self) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
        """``(win32net, pywintypes, win32security)``."""
        win32net = types.ModuleType("win32net")
        pywintypes = types.ModuleType("pywintypes")
        win32security = types.ModuleType("win32security")
        pywintypes.error = error  # type: ignore[attr-defined]
        win32net.NetUserEnum = self.enum  # type: ignore[attr-defined]
        win32net.NetUserSetInfo = self.set_info  # type: ignore[attr-defined]
        win32security.LogonUser = self.logon_user  # type: ignore[attr-defined]
        return win32net, pywintypes, win32security

    def enum(self, server: Any, level: int, filter: int, resume: int = 0, pref_len: int = -1) -> Any:
        self.calls.append(("NetUserEnum", server, level, filter, resume))
        names = list(self.users)
        page = names[resume:resume + self.page_size]
        users = [{"name": n, "full_name": "", "comment": "", "flags": 0, "user_id": self.users[n]} for n in page]
        following = resume + self.page_size
        return users, len(names), following if following < len(names) else 0

    def set_info(self, server: Any, username: str, level: int, data: dict[str, Any]) -> None:
        self.calls.append(("NetUserSetInfo", server, username, level, sorted(data)))
        if username not in self.users:
            raise error(NERR_USER_NOT_FOUND, "NetUserSetInfo", MESSAGES[NERR_USER_NOT_FOUND])
        if len(data["password"]) < self.min_length:
            raise error(NERR_PASSWORD_TOO_SHORT, "NetUserSetInfo", MESSAGES[NERR_PASSWORD_TOO_SHORT])
        self.passwords[username] = data["password"]

    def logon_user(self, username: str, domain: str | None, password: str, logon_type: int,
                   provider: int) -> PyHANDLE:
        self.calls.append(("LogonUser", username, domain, logon_type, provider))
        refusal = self.refusals.get(username)
        if refusal is not None and refusal not in AFTER_PASSWORD:
            raise error(refusal, "LogonUser", MESSAGES[refusal])
        if username not in self.users or self.passwords.get(username) != password:
            raise error(ERROR_LOGON_FAILURE, "LogonUser", MESSAGES[ERROR_LOGON_FAILURE])
        if refusal is not None:
            raise error(refusal, "LogonUser", MESSAGES[refusal])
        handle = PyHANDLE()
        self.handles.append(handle)
        return handle
