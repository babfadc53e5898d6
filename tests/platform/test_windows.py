"""The Windows backend against a stand-in NetUser API that follows the real one's recorded behaviour."""

from __future__ import annotations

import pytest

from agent.errors import PlatformError
from agent.platform.windows import Windows
from tests.fakes.win32 import FakeWindows

PASSWORD = "C0rrect-Horse"


def backend(fake: FakeWindows) -> Windows:
    win32net, pywintypes = fake.modules()
    return Windows(win32net, pywintypes)


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
