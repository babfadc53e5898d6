"""The ports: the only ways a command reaches the world, handed to it by the daemon in its ``Context``.

- ``accounts``: the operating system's accounts (``agent.platform``): set a password, check one.
- ``files``: writing files into the guest, atomically and symlink-safely (``agent.platform.files``; on Windows
  ``agent.platform.windows_files``, for drive paths).
- ``network``: the guest's live network (``agent.platform.network``): its configuration files, applying them
  with the stack's own tools, what the kernel holds, the running host name; on Windows its adapters' settings
  through WMI (``agent.platform.windows_network``).
- ``host_data``: a read-only view of what the host wrote for the guest in XenStore (``vm-data/...``).
- ``licensing``: Windows licensing (``agent.platform.windows_kms``): set the KMS server, activate. Only a Windows
  agent has it, so only there is ``kmsactivate`` offered.
- ``runtime``: what runs the agent (``agent.runtime``): uptime, supervision, confirming an update.
- ``clock``: the wall clock, for times a command records (a key exchange's end); lifetimes already under
  way run on the monotonic clock inside the records that keep them.

A test builds a command with the ports it needs (a throw-away root, an in-memory XenStore) and nothing else;
a port a command needs but was not given is a clear failure of that command, not a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.errors import CommandFailed
from agent.journal.times import wall_clock
from agent.runtime import Runtime, Standalone

if TYPE_CHECKING:
    from agent.platform import Platform
    from agent.platform.files import Files
    from agent.platform.network import LiveNetwork
    from agent.platform.windows_files import WindowsFiles
    from agent.platform.windows_kms import Licensing
    from agent.platform.windows_network import WindowsNetwork
    from agent.xenstore import Transport

#: Where the host writes data for the guest, relative to the domain home.
VM_DATA = "vm-data"


class HostData:
    """Read-only access to ``vm-data/...`` through the agent's XenStore connection."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _path(self, path: str) -> str:
        path = path.strip("/")
        if path != VM_DATA and not path.startswith(VM_DATA + "/"):
            raise ValueError(f"host data lives under {VM_DATA}/, not at {path!r}")
        return path

    def read(self, path: str) -> bytes | None:
        """The node's value, or None when the host wrote none."""
        return self._transport.read(self._path(path))

    def children(self, path: str) -> list[str]:
        """The names below ``path`` (none when it does not exist)."""
        return self._transport.list(self._path(path))


@dataclasses.dataclass
class Ports:
    """The ports a command may use; None where this agent (or test) provides none."""

    accounts: Platform | None = None
    files: Files | WindowsFiles | None = None
    network: LiveNetwork | WindowsNetwork | None = None
    host_data: HostData | None = None
    runtime: Runtime = dataclasses.field(default_factory=Standalone)
    clock: Callable[[], datetime] = wall_clock
    licensing: Licensing | None = None

    def require(self, name: str) -> Any:
        """The port ``name``, or a command failure saying this agent has none."""
        port = getattr(self, name)
        if port is None:
            raise CommandFailed("500", f"this agent has no {name.replace('_', ' ')} backend")
        return port
