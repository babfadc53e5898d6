"""The FreeBSD backend, against a stand-in ``pw`` (FreeBSD's tool cannot run here) that behaves as pw(8),
and against master.passwd files in FreeBSD's format with hashes made by this system's crypt(3)."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import pytest

from agent.errors import PlatformError
from agent.platform import base
from agent.platform.freebsd import FreeBSD

PASSWORD = "s3cret pass"


@pytest.fixture
def pw(tmp_path: Path) -> Path:
    """pw(8) as far as this backend uses it: ``usermod USER -h 0`` reads one line from fd 0; an unknown
    user ends with EX_NOUSER (67) and ``pw: no such user `x'``."""
    tool = tmp_path / "pw"
    tool.write_text(f"""#!/bin/sh
echo "$*" > "{tmp_path}/argv"
cat > "{tmp_path}/stdin"
for a in "$@"; do [ "$a" = nobody ] && {{ echo "pw: no such user \\`nobody'" >&2; exit 67; }}; done
exit 0
""")
    tool.chmod(0o755)
    return tool


def test_password_on_stdin_not_argv(pw: Path, tmp_path: Path) -> None:
    """pw gets ``[-R root] usermod USER -h 0`` and the password as one line on stdin."""
    FreeBSD(str(tmp_path / "root"), pw=str(pw)).set_password("freebsd", PASSWORD)
    assert (tmp_path / "argv").read_text().split() == ["-R", str((tmp_path / "root").resolve()), "usermod",
                                                        "freebsd", "-h", "0"]
    assert (tmp_path / "stdin").read_text() == PASSWORD + "\n"


def test_failure_names_the_cause(pw: Path) -> None:
    """pw's own message and status reach the error; the password does not."""
    with pytest.raises(PlatformError, match="exit status 67: pw: no such user") as caught:
        FreeBSD(pw=str(pw)).set_password("nobody", PASSWORD)
    assert PASSWORD not in str(caught.value)


# -- password_is ---------------------------------------------------------------------------------------


def sha512_crypt(password: str, salt: str) -> str:
    """A ``$6$`` hash from libxcrypt, the format FreeBSD's crypt(3) writes by default (passwd_format=sha512)."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    hashed: bytes = libcrypt.crypt(password.encode(), f"$6${salt}$".encode())
    assert hashed.startswith(b"$6$" + salt.encode() + b"$")
    return hashed.decode()


def freebsd_root(path: Path, freebsd_hash: str) -> Path:
    """A root whose /etc holds FreeBSD's account files: master.passwd with the hashes (10 fields), and
    passwd, which pwd_mkdb writes without them (``*``)."""
    etc = path / "etc"
    etc.mkdir(parents=True)
    (etc / "master.passwd").write_text(f"""# $FreeBSD$
#
root:{sha512_crypt("root-Passw0rd", "rootsalt")}:0:0::0:0:Charlie &:/root:/bin/sh
toor:*:0:0::0:0:Bourne-again Superuser:/root:
daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin
freebsd:{freebsd_hash}:1001:1001::0:0:FreeBSD User:/home/freebsd:/bin/sh
""")
    (etc / "passwd").write_text("root:*:0:0:Charlie &:/root:/bin/sh\n"
                                "freebsd:*:1001:1001:FreeBSD User:/home/freebsd:/bin/sh\n")
    return path


def test_password_is_reads_master_passwd(tmp_path: Path) -> None:
    """The second field of the account's master.passwd line is its hash; passwd's ``*`` is not read."""
    freebsd = FreeBSD(str(freebsd_root(tmp_path / "root", sha512_crypt(PASSWORD, "Zx9.salt"))))
    assert freebsd.password_is("freebsd", PASSWORD) is True
    assert freebsd.password_is("freebsd", "wrong") is False
    assert freebsd.password_is("root", "root-Passw0rd") is True
    assert freebsd.password_is("root", PASSWORD) is False


@pytest.mark.parametrize("field", ["*", "", "*LOCKED*{hash}"])
def test_locked_or_passwordless_accounts_have_no_password(tmp_path: Path, field: str) -> None:
    """``*`` (no login), an empty field, and ``pw lock``'s ``*LOCKED*`` prefix match no password."""
    root = freebsd_root(tmp_path / "root", field.format(hash=sha512_crypt(PASSWORD, "Zx9.salt")))
    assert FreeBSD(str(root)).password_is("freebsd", PASSWORD) is False


def test_missing_user_does_not_have_the_password(tmp_path: Path) -> None:
    """An account master.passwd does not list has no password: False."""
    root = freebsd_root(tmp_path / "root", sha512_crypt(PASSWORD, "Zx9.salt"))
    assert FreeBSD(str(root)).password_is("nobody", PASSWORD) is False


def test_unreadable_master_passwd_names_the_file(tmp_path: Path) -> None:
    """No master.passwd, or one that cannot be read, is an error naming the file and no secret."""
    with pytest.raises(PlatformError, match=r"cannot read .*/etc/master.passwd: it does not exist"):
        FreeBSD(str(tmp_path)).password_is("freebsd", PASSWORD)
    (tmp_path / "etc/master.passwd").mkdir(parents=True)
    with pytest.raises(PlatformError, match=r"cannot read .*/etc/master.passwd: Is a directory") as caught:
        FreeBSD(str(tmp_path)).password_is("freebsd", PASSWORD)
    assert PASSWORD not in str(caught.value)


def test_without_libcrypt_cannot_tell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a crypt(3) library a hash cannot be checked: None."""
    monkeypatch.setattr(base, "load_libcrypt", lambda: None)
    root = freebsd_root(tmp_path / "root", sha512_crypt(PASSWORD, "Zx9.salt"))
    assert FreeBSD(str(root)).password_is("freebsd", PASSWORD) is None


def test_password_is_refuses_invalid_user(tmp_path: Path) -> None:
    """A name with a colon cannot be a master.passwd account."""
    with pytest.raises(PlatformError, match="invalid account name"):
        FreeBSD(str(tmp_path)).password_is("free:bsd", PASSWORD)
