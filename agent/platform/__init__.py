"""Operating-system effects, one module per system: what a machine asks of the OS, never how.

Machines receive a ``Platform`` from the daemon and call it; a backend runs the system's own tool or API
(``chpasswd`` on Linux, ``pw`` on FreeBSD, the NetUser API on Windows) and turns its failure into a
``PlatformError`` whose message names the cause and holds no secret. Under ``--root DIR`` every tool acts
inside DIR. This package never imports the journal.
"""

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
