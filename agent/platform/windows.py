"""Windows: passwords through pywin32's ``win32net.NetUserSetInfo`` at level 1003, checked by a logon.

The default account is the built-in administrator, found by its well-known relative id 500 rather than by
name: localised and hardened images rename it. Facts this module relies on (pywin32's win32netuser.cpp):
``NetUserEnum(server, level, filter, resumeHandle)`` returns ``(users, total, resumeHandle)`` with a zero
handle once every user was read; level 20 dictionaries carry ``name`` and ``user_id`` (the RID); failures
raise ``pywintypes.error`` with ``winerror``, ``funcname`` and ``strerror``.

Windows keeps no hash a program may read, so ``password_is`` asks the system to log the account on.
Facts it relies on (pywin32's win32security and the LogonUser documentation):

- ``win32security.LogonUser(user, domain, password, logonType, logonProvider)`` returns a ``PyHANDLE`` to
  the new token, which the caller closes; it fails with ``pywintypes.error(winerror, "LogonUser", text)``.
- Domain ``"."`` means the local account database. ``LOGON32_LOGON_NETWORK`` (3) with
  ``LOGON32_PROVIDER_DEFAULT`` (0) is the cheapest logon that checks the password: no profile is loaded
  and no credentials are cached. It still counts towards the account lockout policy when the password is
  wrong, and is audited like any logon.
- ``ERROR_LOGON_FAILURE`` (1326, "The user name or password is incorrect.") is the answer for a wrong
  password and for an account that does not exist alike.
- ``ERROR_PASSWORD_MUST_CHANGE`` (1907) and ``ERROR_PASSWORD_EXPIRED`` (1330) are returned only once the
  password was verified: it is the account's password, though no logon is allowed with it.
- Other failures say nothing about the password: ``ERROR_ACCOUNT_DISABLED`` (1331),
  ``ERROR_ACCOUNT_RESTRICTION`` (1327, which includes a blank password refused off the console),
  ``ERROR_LOGON_TYPE_NOT_GRANTED`` (1385, no "Access this computer from the network" right),
  ``ERROR_ACCOUNT_LOCKED_OUT`` (1909), ...
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from agent.errors import PlatformError
from agent.platform.base import scrub
from agent.platform.wmi import load

ADMINISTRATOR_RID = 500
USER_INFO_20 = 20
USER_INFO_1003 = 1003
FILTER_NORMAL_ACCOUNT = 2

LOCAL_ACCOUNTS = "."
LOGON32_LOGON_NETWORK = 3
LOGON32_PROVIDER_DEFAULT = 0
ERROR_LOGON_FAILURE = 1326
#: Logon failures that are only reported for the right password.
PASSWORD_VERIFIED = frozenset({1907, 1330})  # ERROR_PASSWORD_MUST_CHANGE, ERROR_PASSWORD_EXPIRED


class Windows:
    name = "windows"

    def __init__(self, win32net: ModuleType | None = None, pywintypes: ModuleType | None = None,
                 win32security: ModuleType | None = None) -> None:
        given = {"win32net": win32net, "pywintypes": pywintypes, "win32security": win32security}
        self._loaded: dict[str, Any] = {name: module for name, module in given.items() if module is not None}

    def _module(self, name: str) -> Any:
        return load(self._loaded, name)

    def default_user(self) -> str:
        """The built-in administrator's current name, looked up by RID 500."""
        if TYPE_CHECKING:  # the type checker checks the calls against pywin32's stubs (types-pywin32)
            import pywintypes
            import win32net
        else:
            win32net, pywintypes = self._module("win32net"), self._module("pywintypes")
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
        if TYPE_CHECKING:
            import pywintypes
            import win32net
        else:
            win32net, pywintypes = self._module("win32net"), self._module("pywintypes")
        try:
            # The server is "The name of the server, or None" (win32netuser.cpp); the stubs allow str only.
            win32net.NetUserSetInfo(None, user, USER_INFO_1003, {"password": password})  # type: ignore[arg-type]
        except pywintypes.error as exc:
            raise PlatformError(f"cannot set the password of {user!r}: {_api_failure(exc, password)}") from None

    def password_is(self, user: str, password: str) -> bool | None:
        """Whether a network logon of the local account ``user`` with ``password`` is accepted.

        True when it is, or is refused only because the password must change or has expired; False for
        ERROR_LOGON_FAILURE (a wrong password, or no such account); None for any other refusal, which does
        not tell whether the password was right.
        """
        if TYPE_CHECKING:
            import pywintypes
            import win32security
        else:
            win32security, pywintypes = self._module("win32security"), self._module("pywintypes")
        try:
            token = win32security.LogonUser(user, LOCAL_ACCOUNTS, password, LOGON32_LOGON_NETWORK,
                                            LOGON32_PROVIDER_DEFAULT)
        except pywintypes.error as exc:
            code = getattr(exc, "winerror", None)
            if code == ERROR_LOGON_FAILURE:
                return False
            return True if code in PASSWORD_VERIFIED else None
        token.Close()
        return True


def _api_failure(exc: Any, secret: str) -> str:
    code = getattr(exc, "winerror", None)
    function = getattr(exc, "funcname", None) or "NetUser API"
    text = scrub(str(getattr(exc, "strerror", "") or ""), secret)
    return f"{function} failed with error {code}: {text}"
