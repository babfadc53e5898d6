"""The Linux backend against the real chpasswd, acting inside a throw-away root."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import PlatformError
from agent.platform.linux import Linux, crypt_method
from agent.sandbox import make_guest_root
from tests.system import password_matches, shadow_hash

PASSWORD = "Tr0ub4dor&3: with spaces"


@pytest.mark.parametrize(("method", "prefix"), [("SHA512", "$6$"), ("YESCRYPT", "$y$"), (None, "$6$")])
def test_sets_password_inside_root(tmp_path: Path, method: str | None, prefix: str) -> None:
    """chpasswd -R sets a hash that verifies, with the root's ENCRYPT_METHOD (SHA512 when unset)."""
    root = make_guest_root(tmp_path / "root", method)
    Linux(str(root)).set_password("cloud", PASSWORD)
    hashed = shadow_hash(root, "cloud")
    assert hashed.startswith(prefix)
    assert password_matches(PASSWORD, hashed)
    assert not password_matches("wrong", hashed)
    assert shadow_hash(root, "root") == "*", "another account was changed"


def test_password_is_never_in_argv(tmp_path: Path) -> None:
    """The password goes to chpasswd's stdin; its argv holds only the root and the crypt method."""
    root = make_guest_root(tmp_path / "root")
    command = Linux(str(root)).command()
    assert command == ["chpasswd", "-R", str(root.resolve()), "-c", "SHA512"]


@pytest.mark.parametrize(("text", "method"), [
    ("ENCRYPT_METHOD yescrypt\n", "YESCRYPT"),
    ("#ENCRYPT_METHOD MD5\nENCRYPT_METHOD SHA256\n", "SHA256"),
    ("ENCRYPT_METHOD NONSENSE\n", "SHA512"),
    ("", "SHA512"),
])
def test_crypt_method_from_login_defs(tmp_path: Path, text: str, method: str) -> None:
    """ENCRYPT_METHOD is read as chpasswd reads it: comments ignored, unknown values fall back to SHA512."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/login.defs").write_text(text)
    assert crypt_method(str(tmp_path)) == method


def test_unknown_user_names_the_cause(tmp_path: Path) -> None:
    """A missing account gives chpasswd's reason, without the password."""
    root = make_guest_root(tmp_path / "root")
    with pytest.raises(PlatformError, match="chpasswd failed with exit status 1") as caught:
        Linux(str(root)).set_password("nobody-here", PASSWORD)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("user", ["", "a:b", "a\nroot", "-R"])
def test_invalid_user_is_refused(tmp_path: Path, user: str) -> None:
    """Account names that would break chpasswd's line format are refused before it runs."""
    with pytest.raises(PlatformError, match="invalid account name"):
        Linux(str(make_guest_root(tmp_path / "root"))).set_password(user, PASSWORD)


def test_missing_tool_says_what_to_install(tmp_path: Path) -> None:
    """Without chpasswd the error names the package to install."""
    with pytest.raises(PlatformError, match="not installed; install the passwd package"):
        Linux(str(tmp_path), chpasswd="/nonexistent/chpasswd").set_password("root", PASSWORD)
