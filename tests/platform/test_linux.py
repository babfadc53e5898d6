"""The Linux backend against the real chpasswd, acting inside a throw-away root."""

from __future__ import annotations

import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent.errors import PlatformError
from agent.platform import base, linux
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


def _holding_the_lock(root: Path) -> subprocess.Popen[bytes]:
    """A live process named in ``/etc/passwd.lock``, as a chpasswd killed with the agent and not reaped yet."""
    holder = subprocess.Popen(["sleep", "60"])
    (root / "etc/passwd.lock").write_text(str(holder.pid))
    return holder


def test_a_held_account_lock_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chpasswd refused by a live lock holder is run again once the holder is gone: the password is set."""
    root = make_guest_root(tmp_path / "root")
    holder = _holding_the_lock(root)
    refused = threading.Event()
    real = linux.run_tool

    def observed(*args: Any, **kwargs: Any) -> str:
        try:
            return real(*args, **kwargs)
        except PlatformError as exc:
            if "cannot lock" in str(exc):
                refused.set()
            raise

    monkeypatch.setattr(linux, "run_tool", observed)
    with ThreadPoolExecutor(1) as pool:
        setting = pool.submit(Linux(str(root)).set_password, "cloud", PASSWORD)
        try:
            assert refused.wait(30), "chpasswd was never refused by the lock"
        finally:
            holder.kill()
            holder.wait()
        setting.result(timeout=60)
    assert password_matches(PASSWORD, shadow_hash(root, "cloud"))


def test_a_lock_held_past_the_wait_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock still held after LOCK_WAIT is a PlatformError quoting chpasswd, and nothing was changed."""
    root = make_guest_root(tmp_path / "root")
    monkeypatch.setattr(linux, "LOCK_WAIT", 0.2)
    holder = _holding_the_lock(root)
    try:
        with pytest.raises(PlatformError, match=r"chpasswd failed with exit status 1: .*cannot lock /etc/passwd"):
            Linux(str(root)).set_password("cloud", PASSWORD)
    finally:
        holder.kill()
        holder.wait()
    assert not password_matches(PASSWORD, shadow_hash(root, "cloud"))


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


# -- password_is ---------------------------------------------------------------------------------------


def lock(root: Path, user: str) -> None:
    """Lock an account with the real ``usermod -L``, which puts ``!`` before its hash."""
    usermod = shutil.which("usermod", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert usermod, "usermod is missing: apt-get install passwd"
    subprocess.run([usermod, "-R", str(root.resolve()), "-L", user], check=True, capture_output=True)


@pytest.mark.parametrize(("method", "prefix"), [("SHA512", "$6$"), ("YESCRYPT", "$y$")])
def test_password_is_what_chpasswd_set(tmp_path: Path, method: str, prefix: str) -> None:
    """After chpasswd set a password, that password is in place and no other is, whatever the method."""
    root = make_guest_root(tmp_path / "root", method)
    linux = Linux(str(root))
    linux.set_password("cloud", PASSWORD)
    assert shadow_hash(root, "cloud").startswith(prefix)
    assert linux.password_is("cloud", PASSWORD) is True
    assert linux.password_is("cloud", "wrong") is False
    assert linux.password_is("cloud", PASSWORD[:-1]) is False
    assert linux.password_is("cloud", PASSWORD.upper()) is False
    assert linux.password_is("root", PASSWORD) is False, "an account chpasswd did not touch"


def test_password_is_follows_a_change(tmp_path: Path) -> None:
    """A second chpasswd replaces the password: the first is no longer in place."""
    root = make_guest_root(tmp_path / "root")
    linux = Linux(str(root))
    linux.set_password("cloud", PASSWORD)
    linux.set_password("cloud", "second-Passw0rd")
    assert linux.password_is("cloud", "second-Passw0rd") is True
    assert linux.password_is("cloud", PASSWORD) is False


def test_locked_account_does_not_have_the_password(tmp_path: Path) -> None:
    """An account ``usermod -L`` locked after the password was set opens with no password."""
    root = make_guest_root(tmp_path / "root")
    linux = Linux(str(root))
    linux.set_password("cloud", PASSWORD)
    lock(root, "cloud")
    assert shadow_hash(root, "cloud").startswith("!$6$")
    assert linux.password_is("cloud", PASSWORD) is False


@pytest.mark.parametrize("field", ["", "!", "!!", "*", "*LK*"])
def test_fields_without_a_hash_have_no_password(tmp_path: Path, field: str) -> None:
    """Empty, ``!`` and ``*`` fields (no password, never set, disabled) match no password."""
    root = make_guest_root(tmp_path / "root")
    (root / "etc/shadow").write_text(f"root:*:20000:0:99999:7:::\ncloud:{field}:20000:0:99999:7:::\n")
    assert Linux(str(root)).password_is("cloud", PASSWORD) is False


def test_missing_user_does_not_have_the_password(tmp_path: Path) -> None:
    """An account that does not exist has no password: False, not an error."""
    root = make_guest_root(tmp_path / "root")
    assert Linux(str(root)).password_is("nobody-here", PASSWORD) is False


def test_without_shadow_file_the_hash_is_in_passwd(tmp_path: Path) -> None:
    """With no shadow file chpasswd writes the hash into /etc/passwd, and password_is reads it there."""
    root = make_guest_root(tmp_path / "root")
    (root / "etc/shadow").unlink()
    linux = Linux(str(root))
    assert linux.password_is("cloud", PASSWORD) is False, "'x' with no shadow file is no hash at all"
    linux.set_password("cloud", PASSWORD)
    assert not (root / "etc/shadow").exists()
    assert linux.password_is("cloud", PASSWORD) is True
    assert linux.password_is("cloud", "wrong") is False


def test_passwd_field_wins_over_shadow(tmp_path: Path) -> None:
    """As for login (pam_unix), a hash in /etc/passwd is the password; shadow is read only for ``x``."""
    root = make_guest_root(tmp_path / "root")
    linux = Linux(str(root))
    linux.set_password("cloud", PASSWORD)
    hashed = shadow_hash(root, "cloud")
    passwd = root / "etc/passwd"
    passwd.write_text(passwd.read_text().replace("cloud:x:", f"cloud:{hashed}:"))
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\ncloud:*:20000:0:99999:7:::\n")
    assert linux.password_is("cloud", PASSWORD) is True


def test_shadow_entry_missing_is_no_password(tmp_path: Path) -> None:
    """An ``x`` account without a shadow line has no hash anywhere."""
    root = make_guest_root(tmp_path / "root")
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\n")
    assert Linux(str(root)).password_is("cloud", PASSWORD) is False


def test_unknown_hash_method_cannot_tell(tmp_path: Path) -> None:
    """A hash crypt(3) does not know is neither a yes nor a no."""
    root = make_guest_root(tmp_path / "root")
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\ncloud:$9$salt$notahash:20000:0:99999:7:::\n")
    assert Linux(str(root)).password_is("cloud", PASSWORD) is None


def test_without_libcrypt_cannot_tell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A system without a crypt(3) library cannot check a hash: None."""
    monkeypatch.setattr(base, "load_libcrypt", lambda: None)
    root = make_guest_root(tmp_path / "root")
    linux = Linux(str(root))
    linux.set_password("cloud", PASSWORD)
    assert linux.password_is("cloud", PASSWORD) is None
    assert linux.password_is("root", PASSWORD) is False, "a disabled account needs no crypt(3) to answer"


def test_unreadable_account_files_name_the_file(tmp_path: Path) -> None:
    """A missing /etc/passwd, or a shadow that cannot be read, is an error naming the file, not an answer."""
    root = make_guest_root(tmp_path / "root")
    linux = Linux(str(root))
    linux.set_password("cloud", PASSWORD)
    hashed = shadow_hash(root, "cloud")
    (root / "etc/shadow").rename(root / "etc/shadow.saved")
    (root / "etc/shadow").mkdir()
    with pytest.raises(PlatformError, match=r"cannot read .*/etc/shadow: Is a directory") as caught:
        linux.password_is("cloud", PASSWORD)
    assert PASSWORD not in str(caught.value) and hashed not in str(caught.value)
    (root / "etc/passwd").unlink()
    with pytest.raises(PlatformError, match=r"cannot read .*/etc/passwd: it does not exist; check the agent's --root"):
        linux.password_is("cloud", PASSWORD)


def test_permission_denied_says_to_run_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shadow file is root's: an agent not run as root is told so (these tests run as root, so the
    refusal is simulated)."""
    root = make_guest_root(tmp_path / "root")
    real = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "shadow":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(PlatformError, match="shadow: permission denied; the agent must run as root"):
        Linux(str(root)).password_is("cloud", PASSWORD)


@pytest.mark.parametrize("user", ["", "a:b", "a\nroot", "-R"])
def test_password_is_refuses_invalid_user(tmp_path: Path, user: str) -> None:
    """Names that cannot be an account file's first field are refused as set_password refuses them."""
    with pytest.raises(PlatformError, match="invalid account name"):
        Linux(str(make_guest_root(tmp_path / "root"))).password_is(user, PASSWORD)


def test_empty_root_is_this_system(tmp_path: Path) -> None:
    """Without --root the system's own files are read (read only: an account no system has)."""
    assert Linux("").password_is("openstack-agent-no-such-user", PASSWORD) is False


def test_concurrent_checks_get_their_own_results(tmp_path: Path) -> None:
    """crypt(3)'s static buffer is shared: checks from many threads still each get their own answer."""
    root = make_guest_root(tmp_path / "root")
    linux = Linux(str(root))
    linux.set_password("root", "root-Passw0rd")
    linux.set_password("cloud", PASSWORD)
    cases = [("root", "root-Passw0rd", True), ("cloud", PASSWORD, True), ("cloud", "root-Passw0rd", False),
             ("root", PASSWORD, False)] * 25
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda case: linux.password_is(case[0], case[1]), cases))
    assert results == [expected for _user, _password, expected in cases]
