"""FreeBSD: passwords through ``pw usermod USER -h 0``, which reads the password from descriptor 0.

Under ``--root DIR``, ``pw -R DIR`` acts on DIR's password database. ``password_is`` reads the hash from
``/etc/master.passwd`` (``name:password:uid:gid:class:change:expire:gecos:home:shell``), the file pw edits
and the source of the hashed database login reads, and checks it with the base system's crypt(3).
"""

from __future__ import annotations

from pathlib import Path

from agent.platform.base import account_field, check_user, crypt_matches, run_tool


class FreeBSD:
    name = "freebsd"

    def __init__(self, root: str = "", pw: str = "pw") -> None:
        self.root = root
        self.pw = pw

    def default_user(self) -> str:
        return "root"

    def command(self, user: str) -> list[str]:
        rooted = ["-R", str(Path(self.root).resolve())] if self.root else []
        return [self.pw, *rooted, "usermod", user, "-h", "0"]

    def set_password(self, user: str, password: str) -> None:
        check_user(user)
        run_tool(self.command(user), f"{password}\n", password, "base system's pw")

    def password_is(self, user: str, password: str) -> bool | None:
        """Whether ``user``'s hash in ``master.passwd`` is crypt(3) of ``password``.

        False when the account does not exist or is locked (``*LOCKED*`` from ``pw lock``, ``*``); None
        without a crypt(3) library or for a hash it cannot compute; PlatformError when the file is missing
        or cannot be read (the agent is not root).
        """
        check_user(user)
        hashed = account_field(Path(self.root or "/") / "etc/master.passwd", user, 1)
        return False if hashed is None else crypt_matches(password, hashed)
