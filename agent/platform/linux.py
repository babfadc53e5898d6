"""Linux: passwords through shadow-utils' ``chpasswd``, fed on stdin, and checked with crypt(3).

Under ``--root DIR`` chpasswd runs with ``-R DIR``. It then fails at ``pam_start`` unless a crypt method is
given, because PAM's configuration is not inside DIR; the method is taken from DIR's ``/etc/login.defs``
(``ENCRYPT_METHOD``), as chpasswd itself would, defaulting to SHA512.

``password_is`` finds the hash where login finds it (pam_unix): the ``/etc/passwd`` field, or, when that
field is ``x``, the account's ``/etc/shadow`` entry. chpasswd writes there too: into the shadow entry when
the account has one (or its passwd field is ``x``), into ``/etc/passwd`` when there is no shadow file.

chpasswd refuses to run while ``/etc/passwd.lock`` names a live process ("cannot lock /etc/passwd; try again
later"). That process can be a chpasswd of the agent's own that died with it and is not reaped yet, found
when the restarted agent resumes the password: the call is tried again for up to ``LOCK_WAIT`` seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.errors import PlatformError
from agent.platform.base import account_field, check_user, crypt_matches, run_tool

CRYPT_METHODS = ("DES", "MD5", "SHA256", "SHA512", "BCRYPT", "YESCRYPT")
DEFAULT_CRYPT_METHOD = "SHA512"
#: How long a password change waits for another process's lock on the account files (seconds).
LOCK_WAIT = 10.0
#: What shadow-utils says when it cannot take that lock.
_LOCKED = "cannot lock"


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
        deadline, pause = time.monotonic() + LOCK_WAIT, 0.05
        while True:
            try:
                run_tool(self.command(), f"{user}:{password}\n", password, "passwd")
                return
            except PlatformError as exc:
                if _LOCKED not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def password_is(self, user: str, password: str) -> bool | None:
        """Whether ``user``'s hash under the root is crypt(3) of ``password``.

        False when the account does not exist, has no hash (``x`` without a shadow entry or file), or is
        locked; None without a crypt(3) library or for a hash it cannot compute; PlatformError when
        ``/etc/passwd`` is missing or an account file cannot be read (the agent is not root).
        """
        check_user(user)
        etc = Path(self.root or "/") / "etc"
        hashed = account_field(etc / "passwd", user, 1)
        if hashed is None:
            return False
        if hashed == b"x":
            hashed = account_field(etc / "shadow", user, 1, missing_ok=True)
            if hashed is None:
                return False
        return crypt_matches(password, hashed)
