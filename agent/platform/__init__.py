"""Operating-system effects, one module per system: what a machine asks of the OS, never how.

Machines reach a ``Platform`` through their ports (``ctx.ports.accounts``) and call it; a backend runs the
system's own tool or API (``chpasswd`` on Linux, ``pw`` on FreeBSD, the NetUser API on Windows) and turns its
failure into a ``PlatformError`` whose message names the cause and holds no secret. ``password_is`` checks a
password without setting it, so the agent can tell the host the truth about a password command it had to give up
on: by crypt(3) against the account files on Linux and FreeBSD, by a logon on Windows. Under ``--root DIR``
every tool acts inside DIR, and every file read is DIR's. This package never imports the journal."""

from __future__ import annotations

import sys
from typing import Protocol


class Platform(Protocol):
    """What the machines may ask of the operating system."""

    #: A human name for journal details and messages, such as "linux".
    name: str

    def default_user(self) -> str:
        """The account whose password ``password`` sets when the configuration names none."""
        ...

    def set_password(self, user: str, password: str) -> None:
        """Set ``user``'s password; raise PlatformError naming the cause (never the password)."""
        ...

    def password_is(self, user: str, password: str) -> bool | None:
        """Whether ``user``'s current password is ``password``: True, False, or None when this system cannot tell.

        An account that does not exist has no password (False), nor has one whose stored hash is locked
        (``!``, ``*``). None covers a hash crypt(3) cannot compute, no crypt(3) library, and a Windows
        logon refused for a reason other than the password (a disabled account, say). PlatformError, naming
        the cause and never the password or a hash, when the account database or API cannot be reached.
        """
        ...


def for_system(root: str = "", system: str = sys.platform) -> Platform:
    """The backend for this operating system (``sys.platform``)."""
    if system.startswith("freebsd"):
        from agent.platform.freebsd import FreeBSD

        return FreeBSD(root)
    if system == "win32":
        from agent.platform.windows import Windows

        return Windows()
    from agent.platform.linux import Linux

    return Linux(root)


__all__ = ["Platform", "for_system"]
