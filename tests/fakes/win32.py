"""A stand-in for pywin32's ``win32net`` and ``pywintypes``, which cannot run here.

It follows recorded facts about the real modules (pywin32's win32netuser.cpp and the NetUser API docs):
- ``pywintypes.error(winerror, funcname, strerror)``, with those three as attributes.
- ``NetUserEnum(server, level, filter, resumeHandle=0, prefLen=...)`` returns ``(users, total, resume)``
  and pages: a non-zero resume handle means "call again with it"; zero means done.
- Level 20 user dicts hold ``name``, ``full_name``, ``comment``, ``flags`` and ``user_id`` (the RID).
- ``NetUserSetInfo(server, username, level, data)``: level 1003 is ``{"password": ...}``; an unknown user
  raises NERR_UserNotFound (2221), a password the policy refuses NERR_PasswordTooShort (2245).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

NERR_USER_NOT_FOUND = 2221
NERR_PASSWORD_TOO_SHORT = 2245
MESSAGES = {
    NERR_USER_NOT_FOUND: "The user name could not be found.",
    NERR_PASSWORD_TOO_SHORT: "The password does not meet the password policy requirements. Check the minimum "
                             "password length, password complexity and password history requirements.",
}


class error(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


@dataclass
class FakeWindows:
    """Accounts by name with their RIDs; records every call made to the API."""

    users: dict[str, int] = field(default_factory=lambda: {"Guest": 501, "DefaultAccount": 503,
                                                          "Järjestelmänvalvoja": 500, "cloudbase": 1001})
    min_length: int = 8
    page_size: int = 2
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)

    def modules(self) -> tuple[types.ModuleType, types.ModuleType]:
        win32net = types.ModuleType("win32net")
        pywintypes = types.ModuleType("pywintypes")
        pywintypes.error = error  # type: ignore[attr-defined]
        win32net.NetUserEnum = self.enum  # type: ignore[attr-defined]
        win32net.NetUserSetInfo = self.set_info  # type: ignore[attr-defined]
        return win32net, pywintypes

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
