"""FreeBSD: passwords through ``pw usermod USER -h 0``, which reads the password from descriptor 0.

Under ``--root DIR``, ``pw -R DIR`` acts on DIR's password database.
"""

from __future__ import annotations

from pathlib import Path

from agent.platform.base import check_user, run_tool


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
