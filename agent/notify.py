"""The service-manager notification protocol (sd_notify), hand-rolled as systemd documents it.

A process started with ``NOTIFY_SOCKET`` in its environment reports its state by sending newline-separated
``KEY=VALUE`` datagrams to that AF_UNIX socket (a path, or ``@name`` for the abstract namespace):
``READY=1`` once it serves, ``WATCHDOG=1`` as a keep-alive when ``WATCHDOG_USEC`` asks for one, ``STATUS=...``
for a human line. The supervisor is both ends: a client of systemd's socket and the server of its child's.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"
#: What the agent tells its supervisor once it has committed an update: the supervisor re-reads the journal.
COMMITTED = "X_OPENSTACK_AGENT_COMMITTED"
#: Set by the supervisor in its child's environment: the agent may ask to be restarted.
SUPERVISED_ENV = "OPENSTACK_AGENT_SUPERVISED"
#: Set by a supervisor that has no signals to send (the Windows service's): the agent stops, as on SIGTERM, when
#: its standard input reaches its end, which the supervisor brings about by closing its side of the pipe.
STOP_ON_EOF_ENV = "OPENSTACK_AGENT_STOP_ON_EOF"


def _address(value: str) -> str:
    # A leading "@" names a socket in the abstract namespace, which Linux spells with a NUL byte.
    return "\0" + value[1:] if value.startswith("@") else value


def send(*fields: str, socket_path: str | None = None) -> bool:
    """Send ``fields`` (``"READY=1"``, ...) to the notify socket; False when there is none or it failed."""
    target = socket_path if socket_path is not None else os.environ.get(ENV, "")
    if not target or sys.platform == "win32":  # no service manager speaks this protocol there
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), _address(target))
    except OSError as exc:
        # The service manager going away must not take the agent down with it.
        log.warning("cannot notify the service manager at %s: %s", target, exc.strerror)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC, as systemd advises), if asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


class Listener:
    """The server end: a datagram socket a child process notifies (the supervisor's)."""

    socket: socket.socket

    def __init__(self, path: Path) -> None:
        self.path = path
        if sys.platform == "win32":
            raise OSError("the notify protocol's datagram sockets are Linux and FreeBSD only")
        path.unlink(missing_ok=True)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.bind(str(path))
        os.chmod(path, 0o600)

    def fileno(self) -> int:
        return self.socket.fileno()

    def receive(self) -> dict[str, str]:
        """One datagram's fields (call when the socket is readable)."""
        data = self.socket.recv(4096)
        fields: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            if key:
                fields[key] = value
        return fields

    def close(self) -> None:
        self.socket.close()
        self.path.unlink(missing_ok=True)
