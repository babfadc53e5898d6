"""The service runtime: how the agent tells whatever runs it that it is ready, alive, stopping or updated.

The daemon and the machines speak only to ``Runtime``. Restarting for an update is the daemon raising
``RestartRequested``, which ends the process with that error's exit code for the runtime to act on; systemd's
watchdog is answered by the supervisor, which watches the agent. ``SystemdRuntime`` is the Linux and FreeBSD one: the
sd_notify protocol (``agent.notify``) to systemd or to the agent's own supervisor (``agent.supervisor``),
which restarts the agent into a new release (with its pidfd, its ``current`` release link and its notify
socket, all Linux-only, kept there); run by hand it has no socket to tell and is not supervised.
``Standalone`` is for an agent built in-process (tests on the in-memory XenStore): it tells no one and
cannot restart. The Windows service's runtime is ``agent.winservice.WindowsServiceRuntime``; an agent the
service's supervisor (``agent.supervisor.ServiceSupervisor``) starts has ``ServiceChild``, which tells no one (that
supervisor judges its child by its exit and the journal) but is supervised, as the supervisor's environment says.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Protocol

from agent import notify


class Runtime(Protocol):
    """What runs the agent, as the agent sees it."""

    #: Whether the agent can ask to be restarted (into a new release) and be started again.
    supervised: bool

    def ready(self, status: str) -> None:
        """The agent serves: say so (once per process), with a human status line."""
        ...

    def uptime(self) -> float | None:
        """Seconds since ``ready``, or None before it."""
        ...

    def committed(self, version: str) -> None:
        """An update to ``version`` was confirmed healthy and journaled (the supervisor logs it)."""
        ...

    def stopping(self) -> None:
        """The agent is shutting down on request."""
        ...


class _Clocked:
    def __init__(self) -> None:
        self.ready_at: float | None = None

    def uptime(self) -> float | None:
        return None if self.ready_at is None else time.monotonic() - self.ready_at


class SystemdRuntime(_Clocked):
    """systemd's notify protocol, and the agent's supervisor when it started this process."""

    def __init__(self) -> None:
        super().__init__()
        self.supervised = bool(os.environ.get(notify.SUPERVISED_ENV))

    def ready(self, status: str) -> None:
        self.ready_at = time.monotonic()
        notify.send("READY=1", f"STATUS={status}")

    def committed(self, version: str) -> None:
        notify.send(f"{notify.COMMITTED}={version}", f"STATUS=openstack-agent {version} confirmed")

    def stopping(self) -> None:
        notify.send("STOPPING=1")


class Standalone(_Clocked):
    """Nothing runs the agent: no one to tell, and no one to restart it."""

    supervised = False

    def ready(self, status: str) -> None:
        self.ready_at = time.monotonic()

    def committed(self, version: str) -> None:
        pass

    def stopping(self) -> None:
        pass


class ServiceChild(Standalone):
    """An agent on Windows, run by hand or as the child of the service's supervisor: there is no notify socket
    there, so it tells no one; it is supervised when that supervisor started it (``OPENSTACK_AGENT_SUPERVISED``,
    as on Linux), and may then ask to be restarted into a new release."""

    def __init__(self) -> None:
        super().__init__()
        self.supervised = bool(os.environ.get(notify.SUPERVISED_ENV))


def for_this_process() -> Runtime:
    """The runtime of the current process, from its environment (the service itself brings its own runtime,
    ``agent.winservice``)."""
    if sys.platform == "win32":
        return ServiceChild()
    return SystemdRuntime()
