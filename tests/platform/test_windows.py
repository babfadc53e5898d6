"""The Windows backend against a stand-in NetUser API that follows the real one's recorded behaviour."""

from __future__ import annotations

import pytest

from agent.errors import PlatformError
from agent.platform.windows import Windows
from tests.fakes import win32
from tests.fakes.win32 import FakeWindows

PASSWORD = "C0rrect-Horse"


def backend(fake: FakeWindows) -> Windows:
    return Windows(*fake.modules())


def test_default_account_is_found_by_rid_500() -> None:
    """The built-in administrator is found by RID across result pages, whatever it is named."""
    fake = FakeWindows()
    assert backend(fake).default_user() == "Järjestelmänvalvoja"
    assert [c[4] for c in fake.calls] == [0, 2], "the second page was not requested with the resume handle"


def test_sets_password_at_level_1003() -> None:
    """NetUserSetInfo gets level 1003 with only the password."""
    fake = FakeWindows()
    windows = backend(fake)
    windows.set_password(windows.default_user(), PASSWORD)
    assert fake.calls[-1] == ("NetUserSetInfo", None, "Järjestelmänvalvoja", 1003, ["password"])
    assert fake.passwords == {"Järjestelmänvalvoja": PASSWORD}


def test_no_rid_500_names_the_fix() -> None:
    """An image without the built-in administrator gets an error naming the setting to use."""
    with pytest.raises(PlatformError, match=r"RID 500.*\[password\] user"):
        backend(FakeWindows(users={"cloudbase": 1001})).default_user()


@pytest.mark.parametrize(("user", "password", "code"), [
    ("missing", PASSWORD, 2221),
    ("cloudbase", "short", 2245),
])
def test_api_errors_name_the_cause(user: str, password: str, code: int) -> None:
    """The API's error number and text reach the message; the password never does."""
    with pytest.raises(PlatformError, match=f"NetUserSetInfo failed with error {code}") as caught:
        backend(FakeWindows()).set_password(user, password)
    assert password not in str(caught.value)


def test_without_pywin32_says_what_to_install() -> None:
    """On an image without pywin32 the error names the package."""
    with pytest.raises(PlatformError, match="pip install pywin32"):
        Windows().set_password("Administrator", PASSWORD)


# -- password_is ---------------------------------------------------------------------------------------


def test_password_is_logs_on_over_the_network_and_closes_the_token() -> None:
    """The right password logs the local account on (network logon, default provider); the token is closed."""
    fake = FakeWindows()
    windows = backend(fake)
    windows.set_password("cloudbase", PASSWORD)
    assert windows.password_is("cloudbase", PASSWORD) is True
    assert fake.calls[-1] == ("LogonUser", "cloudbase", ".", 3, 0)
    assert [handle.closed for handle in fake.handles] == [True]


def test_wrong_password_or_unknown_account_is_false() -> None:
    """ERROR_LOGON_FAILURE, for a wrong password or an account that does not exist, means no."""
    fake = FakeWindows()
    windows = backend(fake)
    windows.set_password("cloudbase", PASSWORD)
    assert windows.password_is("cloudbase", "wrong-Passw0rd") is False
    assert windows.password_is("missing", PASSWORD) is False
    assert fake.handles == []


@pytest.mark.parametrize("code", [win32.ERROR_PASSWORD_MUST_CHANGE, win32.ERROR_PASSWORD_EXPIRED])
def test_must_change_or_expired_means_the_password_was_right(code: int) -> None:
    """Windows refuses a password that must change or has expired only after checking it: True, and a
    wrong password is still False."""
    fake = FakeWindows(refusals={"cloudbase": code})
    windows = backend(fake)
    windows.set_password("cloudbase", PASSWORD)
    assert windows.password_is("cloudbase", PASSWORD) is True
    assert windows.password_is("cloudbase", "wrong-Passw0rd") is False


@pytest.mark.parametrize("code", [win32.ERROR_ACCOUNT_DISABLED, win32.ERROR_ACCOUNT_RESTRICTION,
                                  win32.ERROR_LOGON_TYPE_NOT_GRANTED, win32.ERROR_ACCOUNT_LOCKED_OUT])
def test_other_refusals_cannot_tell(code: int) -> None:
    """A disabled, restricted or locked-out account, or a missing logon right, says nothing of the password."""
    fake = FakeWindows(refusals={"cloudbase": code})
    windows = backend(fake)
    windows.set_password("cloudbase", PASSWORD)
    assert windows.password_is("cloudbase", PASSWORD) is None
    assert windows.password_is("cloudbase", "wrong-Passw0rd") is None


def test_password_is_needs_only_win32security() -> None:
    """The check uses win32security and pywintypes; win32net is not needed for it."""
    _win32net, pywintypes, win32security = FakeWindows().modules()
    assert Windows(pywintypes=pywintypes, win32security=win32security).password_is("cloudbase", "x") is False


def test_password_is_without_pywin32_says_what_to_install() -> None:
    """Without pywin32 the check is an error naming the package, not a guess."""
    with pytest.raises(PlatformError, match="pip install pywin32"):
        Windows().password_is("Administrator", PASSWORD)
