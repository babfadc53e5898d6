"""Linux: passwords through shadow-utils' ``chpasswd``, fed on stdin.

Under ``--root DIR`` chpasswd runs with ``-R DIR``. It then fails at ``pam_start`` unless a crypt method is
given, because PAM's configuration is not inside DIR; the method is taken from DIR's ``/etc/login.defs``
(``ENCRYPT_METHOD``), as chpasswd itself would, defaulting to SHA512.
"""

from __future__ import annotations

from pathlib import Path

from agent.platform.base import check_user, run_tool

CRYPT_METHODS = ("DES", "MD5", "SHA256", "SHA512", "BCRYPT", "YESCRYPT")
DEFAULT_CRYPT_METHOD = "SHA512"


def crypt_method(root: str) -> str:
    """``ENCRYPT_METHOD`` from ``<root>/etc/login.defs``, or SHA512 when unset or unreadable."""
    try:
        lines = (Path(root) / "etc/login.defs").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return DEFAULT_CRYPT_METHOD
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "ENCRYPT_METHOD" and words[1].upper() in CRYPT_METHODS:
            return words[1].upper()
    return DEFAULT_CRYPT_METHOD


class Linux:
    name = "linux"

    def __init__(self, root: str = "", chpasswd: str = "chpasswd") -> None:
        self.root = root
        self.chpasswd = chpasswd

    def default_user(self) -> str:
        return "root"

    def command(self) -> list[str]:
        """chpasswd's argv: never the password, which goes to its stdin."""
        if not self.root:
            return [self.chpasswd]
        return [self.chpasswd, "-R", str(Path(self.root).resolve()), "-c", crypt_method(self.root)]

    def set_password(self, user: str, password: str) -> None:
        check_user(user)
        run_tool(self.command(), f"{user}:{password}\n", password, "passwd")
