"""Windows: passwords through pywin32's ``win32net.NetUserSetInfo`` at level 1003.

The default account is the built-in administrator, found by its well-known relative id 500 rather than by
name: localised and hardened images rename it. Facts this module relies on (pywin32's win32netuser.cpp):
``NetUserEnum(server, level, filter, resumeHandle)`` returns ``(users, total, resumeHandle)`` with a zero
handle once every user was read; level 20 dictionaries carry ``name`` and ``user_id`` (the RID); failures
raise ``pywintypes.error`` with ``winerror``, ``funcname`` and ``strerror``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from agent.errors import PlatformError
from agent.platform.base import scrub

ADMINISTRATOR_RID = 500
USER_INFO_20 = 20
USER_INFO_1003 = 1003
FILTER_NORMAL_ACCOUNT = 2


class Windows:
    name = "windows"

    def __init__(self, win32net: ModuleType | None = None, pywintypes: ModuleType | None = None) -> None:
        self._win32net = win32net
        self._pywintypes = pywintypes

    def _modules(self) -> tuple[Any, Any]:
        if self._win32net is None or self._pywintypes is None:
            try:
                self._win32net = importlib.import_module("win32net")
                self._pywintypes = importlib.import_module("pywintypes")
            except ImportError:
                raise PlatformError("pywin32 is not installed; install the agent with its Windows "
                                    "dependencies (pip install pywin32)") from None
        return self._win32net, self._pywintypes

    def default_user(self) -> str:
        """The built-in administrator's current name, looked up by RID 500."""
        win32net, pywintypes = self._modules()
        resume = 0
        try:
            while True:
                users, _total, resume = win32net.NetUserEnum(None, USER_INFO_20, FILTER_NORMAL_ACCOUNT, resume)
                for user in users:
                    if user.get("user_id") == ADMINISTRATOR_RID:
                        return str(user["name"])
                if not resume:
                    break
        except pywintypes.error as exc:
            raise PlatformError(_api_failure(exc, "")) from None
        raise PlatformError("no account with the built-in administrator's RID 500 was found; set "
                            "[password] user in the agent's configuration")

    def set_password(self, user: str, password: str) -> None:
        win32net, pywintypes = self._modules()
        try:
            win32net.NetUserSetInfo(None, user, USER_INFO_1003, {"password": password})
        except pywintypes.error as exc:
            raise PlatformError(f"cannot set the password of {user!r}: {_api_failure(exc, password)}") from None


def _api_failure(exc: Any, secret: str) -> str:
    code = getattr(exc, "winerror", None)
    function = getattr(exc, "funcname", None) or "NetUser API"
    text = scrub(str(getattr(exc, "strerror", "") or ""), secret)
    return f"{function} failed with error {code}: {text}"
