"""resetnetwork: configure the guest's network from nova's data, verify it, and roll it back if it fails
(docs/protocol.md, "resetnetwork").

nova writes the network under ``vm-data/networking/<mac>`` and the host name under ``vm-data/hostname``, then
sends ``resetnetwork`` with an empty value. The model (``agent.network.model``) parses that once; the plan
(``agent.network.plan``) renders the files of the image's stack and the shared host name and DNS files; the
network port (``agent.platform.network``) writes them, applies them with the stack's own tools and reports what
the kernel holds. The machine decides when, and journals what:

    received --unchanged--> done            the files are already as asked and the kernel holds the network
    received --plan--> switching --switched--> applying --applied--> verifying --verified--> done
    switching, applying, verifying --rollback--> rolling_back --restored--> rolled_back
    received, ... --fail--> failed          bad data, no stack, a rollback that could not finish

Validate, then act. ``received`` reads, parses and renders and reads the present files, touching nothing: bad
data is a "500" that says nothing was changed. ``plan`` journals, as working data, each file's present
contents (the backup) and new contents, the stack, the addresses and default routes to expect and the host
name (on Windows the one the next boot takes), before the first file is written. So a rollback (after a failed
write, apply or verify, or after a crash or reboot in any state between) has everything it needs in the journal:
it removes the files that were new, puts the old contents back, applies the old configuration again (unless
nothing had been applied yet) and restores the host name. The reply says what happened: "0" only when the
network was verified.

On Windows (``agent.platform.windows_network``) the "files" are the adapters' configurations and the stack is
always ``windows``; a new host name takes effect only at the next boot, so the journal records that a reboot is
pending and the "0" reply says so (an unchanged one too, while the rename still waits for the reboot).

``verifying`` does not block the agent: it looks, and if the network is not there yet it asks to be resumed
shortly (``wait``), so other requests are served meanwhile; after ``network.verify_timeout`` it rolls back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from agent.errors import CommandFailed, ConfigError, NetworkDataError, PlatformError, where
from agent.machines.base import MUST_PROPAGATE, RESUME, ROLL_BACK, Command, Event
from agent.network import names, plan
from agent.network.model import Network, parse
from agent.protocol import HOSTNAME, NETWORKING

if TYPE_CHECKING:
    from agent.platform.network import LiveNetwork, Observed
    from agent.platform.windows_network import WindowsNetwork

    #: What the machine drives: the Linux and FreeBSD port, or the Windows one.
    NetworkPort = LiveNetwork | WindowsNetwork

log = logging.getLogger(__name__)

STATES = ["received", "switching", "applying", "verifying", "rolling_back", "done", "rolled_back"]
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "unchanged", "source": "received", "dest": "done"},
    {"trigger": "plan", "source": "received", "dest": "switching"},
    {"trigger": "switched", "source": "switching", "dest": "applying"},
    {"trigger": "applied", "source": "applying", "dest": "verifying"},
    {"trigger": "verified", "source": "verifying", "dest": "done"},
    {"trigger": ROLL_BACK, "source": ["switching", "applying", "verifying"], "dest": "rolling_back"},
    {"trigger": "restored", "source": "rolling_back", "dest": "rolled_back"},
]
TERMINAL = frozenset({"done", "rolled_back"})
RECOVERY = {
    # Nothing was touched: read, parse and render again.
    "received": RESUME,
    # A crash or a reboot while files were being switched, applied or checked: nobody verified the new
    # network, and it may be what cut the guest off. Go back to the journaled old one.
    "switching": ROLL_BACK,
    "applying": ROLL_BACK,
    "verifying": ROLL_BACK,
    # Restoring is idempotent: every file is put back from the journal again, and applied again.
    "rolling_back": RESUME,
}

#: How often verifying looks at the kernel while the network comes up.
VERIFY_INTERVAL = 0.25
#: How soon a resetnetwork asks again while an earlier one is still under way (one network change at a time).
BUSY_INTERVAL = 0.5


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """One file the change writes, as the journal keeps it: digests only. The contents themselves wait in the
    network port's keeping (``kept_as``) until the command ends: a configuration file may hold a secret."""

    path: str
    #: SHA-256 of the old contents; None when the file is new.
    old: str | None
    #: SHA-256 of the new contents.
    new: str
    #: The mode the file gets when it is new.
    mode: int
    #: Its place in the change, which names what is kept of it.
    index: int = 0

    def kept_as(self, command_id: int, which: str) -> str:
        return f"resetnetwork-{command_id}-{self.index}.{which}"


@dataclasses.dataclass(frozen=True)
class ResetData:
    """The change, as ``plan`` journals it: everything a rollback needs after a reboot."""

    stack: str = ""
    #: ``PlannedFile`` fields, one dict per file that changes (JSON keeps no dataclasses): digests, never contents.
    files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: The interfaces nova configures, by the guest's names.
    interfaces: list[str] = dataclasses.field(default_factory=list)
    #: interface -> the addresses it must have, as "ip/prefix".
    addresses: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: The default routes that must be in place, as [gateway, interface].
    defaults: list[list[str]] = dataclasses.field(default_factory=list)
    hostname: str | None = None
    #: The host name before the change, to restore on rollback: the running one, or on Windows the one the next
    #: boot takes (a rename an earlier command left pending).
    previous_hostname: str | None = None
    #: Why the change is being rolled back (set by ``rollback``).
    why: str = ""
    #: Whether the new configuration may have been applied, so a rollback must apply the old one again.
    reapply: bool = True
    #: Whether the new host name waits for a reboot (Windows renames at the next boot).
    reboot_pending: bool = False

    def planned(self) -> list[PlannedFile]:
        return [PlannedFile(**entry) for entry in self.files]


class ResetNetwork(Command):
    NAME = "resetnetwork"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    Data = ResetData
    NEEDS = frozenset({"host_data", "network"})

    #: When each command's verification gives up, by (journal, command id): the deadline lives in the process
    #: that applied the network, and a new process rolls back instead of verifying.
    _deadlines: ClassVar[dict[tuple[str, int], float]] = {}

    # -- received: read, parse, render; nothing touched ------------------------------------------------

    def on_enter_received(self, event: Event) -> None:
        network = self._network()
        if network.refusal is not None:
            raise CommandFailed("500", f"resetnetwork: {network.refusal}; nothing was changed")
        unfinished = {r.id for r in self.ctx.journal.unfinished() if r.machine == self.NAME}
        earlier = sorted(i for i in unfinished if i < self.record.id)
        if earlier:
            log.info("command %d resetnetwork: waiting for command %d to finish first", self.record.id, earlier[0])
            self.wait(BUSY_INTERVAL)
            return
        wanted = self._wanted()
        stack = self._stack()
        current = self._reader(network)
        addresses = {i.name: [str(a) for a in i.addresses] for i in wanted.interfaces}
        defaults = [[str(gateway), interface.name] for interface, gateway in
                    (g for g in (wanted.gateway4, wanted.gateway6) if g is not None)]
        try:
            files = plan.render(wanted, stack, current)
            changed = plan.changed(files, current)
            previous_hostname = network.hostname()
            missing = "" if changed else self._missing(network, addresses, defaults)
            running = None if wanted.hostname is None else names.system_name(wanted.hostname, stack)
            if not missing and running is not None and previous_hostname not in (None, running):
                missing = f"the host name is not {running}"
            waiting = running is not None and not changed and not missing and _rename_pending(network)
        except PlatformError as exc:
            raise CommandFailed("500", f"resetnetwork: {exc}; nothing was changed") from None
        detail: dict[str, Any] = {"stack": stack, "interfaces": list(addresses),
                                  "hostname": wanted.hostname}
        if not changed:
            if not missing:
                # A rename an earlier run made may still wait for the reboot: the reply says so again.
                message = f"the host name {running} takes effect after a reboot" if waiting else ""
                self.finish("unchanged", "0", message, detail={**detail, "files": [], "unchanged": True,
                                                               "reboot_pending": waiting})
                return
            detail["applying_because"] = f"the files are as asked but the system is not: {missing}"
        planned = [PlannedFile(path, _sha256(current(path)), hashlib.sha256(files[path].contents).hexdigest(),
                               files[path].mode, index)
                   for index, path in enumerate(changed)]
        try:
            self._forget_finished(network, unfinished)
            for file in planned:
                network.keep(file.kept_as(self.record.id, "new"), files[file.path].contents)
                old = current(file.path)
                if old is not None:
                    network.keep(file.kept_as(self.record.id, "old"), old)
        except PlatformError as exc:
            raise CommandFailed("500", f"resetnetwork: cannot keep the files it would change ({exc}); nothing was "
                                       "changed") from None
        data = ResetData(
            stack=stack,
            files=[dataclasses.asdict(file) for file in planned],
            interfaces=list(addresses), addresses=addresses, defaults=defaults, hostname=wanted.hostname,
            previous_hostname=previous_hostname)
        detail["files"] = [{"path": file.path, "size": len(files[file.path].contents), "sha256": file.new,
                            "created": file.old is None} for file in planned]
        log.info("command %d resetnetwork: %s, %d file(s) to change for %s", self.record.id, stack, len(changed),
                 ", ".join(addresses))
        self.advance("plan", detail=detail, data=data)

    def _wanted(self) -> Network:
        """The network nova asks for, parsed and matched to this guest's interfaces."""
        host = self.ctx.ports.require("host_data")
        keys = host.children(NETWORKING)
        entries = {key: host.read(f"{NETWORKING}/{key}") for key in keys}
        raw_name = host.read(HOSTNAME)
        try:
            if not keys:
                raise NetworkDataError(f"{NETWORKING} has no entries: nova wrote no interface to configure")
            missing = [key for key, value in entries.items() if value is None]
            if missing:
                raise NetworkDataError(f"{NETWORKING}/{missing[0]} vanished while it was read")
            try:
                name = None if raw_name is None else raw_name.decode("utf-8")
            except UnicodeDecodeError:
                raise NetworkDataError(f"{HOSTNAME} is not UTF-8 text") from None
            return parse(entries, name, self._network().interfaces())
        except NetworkDataError as exc:
            raise CommandFailed("500", f"Invalid network data: {exc}; nothing was changed") from None
        except PlatformError as exc:  # the interfaces cannot be listed, or not told apart
            raise CommandFailed("500", f"resetnetwork: {exc}; nothing was changed") from None

    def _stack(self) -> str:
        try:
            return self._network().stack(self.ctx.config.network_renderer)
        except ConfigError as exc:
            raise CommandFailed("500", f"resetnetwork: {exc}; nothing was changed") from None

    @staticmethod
    def _reader(network: NetworkPort) -> Callable[[str], bytes | None]:
        """The present files, each read once (renderers and the plan ask for the same file more than once)."""
        return functools.cache(network.read)

    # -- switching: the new files in place, each atomically ----------------------------------------------

    def on_enter_switching(self, event: Event) -> None:
        data: ResetData = self.data
        network = self._network()
        with self._rolling_back_on_error():
            for planned in data.planned():
                contents = network.kept(planned.kept_as(self.record.id, "new"))
                if contents is None or _sha256(contents) != planned.new:
                    raise PlatformError(f"the new contents of {planned.path} kept for this change are missing or "
                                        "damaged")
                network.write(planned.path, contents, planned.mode)
            self.advance("switched", detail={"written": [p.path for p in data.planned()]})

    # -- applying: the stack's own tools, and the host name ------------------------------------------

    def on_enter_applying(self, event: Event) -> None:
        data: ResetData = self.data
        network = self._network()
        with self._rolling_back_on_error():
            network.apply(data.stack, data.interfaces)
            detail: dict[str, Any] = {"stack": data.stack}
            if data.hostname is not None and network.set_hostname(names.system_name(data.hostname, data.stack)):
                data = dataclasses.replace(data, reboot_pending=True)
                detail["reboot_pending"] = True
            self._deadlines[self._key()] = time.monotonic() + self.ctx.config.network_verify_timeout
            self.advance("applied", detail=detail, data=data)

    # -- verifying: the addresses and default routes are there (and the gateways answer) ---------------

    def on_enter_verifying(self, event: Event) -> None:
        data: ResetData = self.data
        network = self._network()
        with self._rolling_back_on_error():
            deadline = self._deadlines.setdefault(self._key(),
                                                  time.monotonic() + self.ctx.config.network_verify_timeout)
            missing = self._missing(network, data.addresses, data.defaults)
            if not missing and self.ctx.config.network_verify == "gateway":
                silent = [gateway for gateway, _ in data.defaults if not network.answers(gateway)]
                missing = f"gateway {', '.join(silent)} does not answer" if silent else ""
            if not missing:
                self._deadlines.pop(self._key(), None)
                message = "" if not data.reboot_pending or data.hostname is None else (
                    f"the host name {names.system_name(data.hostname, data.stack)} takes effect after a reboot")
                self.finish("verified", "0", message, detail={"checked": self.ctx.config.network_verify,
                                                              "reboot_pending": data.reboot_pending})
                return
            if time.monotonic() < deadline:
                self.wait(VERIFY_INTERVAL)
                return
            self._roll_back(f"after {self.ctx.config.network_verify_timeout:g} s {missing}")

    @staticmethod
    def _missing(network: NetworkPort, addresses: dict[str, list[str]], defaults: list[list[str]]) -> str:
        """What the kernel lacks of the expected addresses and default routes, in words; "" when nothing."""
        observed: Observed = network.observe()
        lacking = [f"{name} has no {address}" for name, wanted in addresses.items() for address in wanted
                   if address not in observed.addresses.get(name, frozenset())]
        lacking += [f"no default route via {gateway} on {name}" for gateway, name in defaults
                    if (gateway, name) not in observed.defaults]
        return "; ".join(lacking)

    # -- rolling back: the old files, applied again --------------------------------------------------

    def roll_back_after_stop(self) -> None:
        self._roll_back(f"the agent stopped (a crash or a reboot) while {self.state}")

    def _roll_back(self, why: str) -> None:
        """Take ``rollback`` (as the callback's last act), journaling why and whether anything was applied."""
        self._deadlines.pop(self._key(), None)
        log.warning("command %d resetnetwork: rolling back from %s: %s", self.record.id, self.state, why)
        data: ResetData = self.data
        self.advance(ROLL_BACK, detail={"from": self.state, "why": why},
                     data=dataclasses.replace(data, why=why, reapply=self.state != "switching"))

    @contextlib.contextmanager
    def _rolling_back_on_error(self) -> Iterator[None]:
        """A failed write, apply or check rolls the change back, rather than leaving the guest half-changed."""
        try:
            yield
        except MUST_PROPAGATE:
            raise
        except PlatformError as exc:
            self._roll_back(str(exc))
        except Exception as exc:
            log.error("command %d resetnetwork failed in state %s: %s at %s", self.record.id, self.state,
                      type(exc).__name__, where(exc))
            self._roll_back(f"an agent error ({type(exc).__name__}; see the agent's log)")

    def on_enter_rolling_back(self, event: Event) -> None:
        data: ResetData = self.data
        network = self._network()
        planned = data.planned()
        # New files go first: a stack reads its whole directory, and a restored old file must not meet them.
        order = [p for p in planned if p.old is None] + [p for p in planned if p.old is not None]
        for file in order:
            try:
                network.discard_partial(file.path)
                present = _sha256(network.read(file.path))
                # A file the change never replaced (its write failed, or the crash came first) is left alone: on
                # a full disk, rewriting it would fail as its write did.
                if file.old is None and present is not None:
                    network.remove(file.path)
                elif file.old is not None and present != file.old:
                    old = network.kept(file.kept_as(self.record.id, "old"))
                    if old is None or _sha256(old) != file.old:
                        raise PlatformError("its old contents, kept for this change, are missing or damaged")
                    network.write(file.path, old, file.mode)
            except PlatformError as exc:
                self.finish("fail", "500", f"resetnetwork failed ({data.why}) and restoring {file.path} failed too "
                                           f"({exc}); the network configuration may be half restored",
                            detail={"error": "restore_failed", "path": file.path})
                return
        if data.reapply:
            try:
                network.apply(data.stack, data.interfaces)
                if data.hostname is not None and data.previous_hostname:
                    network.set_hostname(data.previous_hostname)
            except PlatformError as exc:
                self.finish("fail", "500", f"resetnetwork failed ({data.why}); its files were restored, but applying "
                                           f"the previous configuration failed too ({exc})",
                            detail={"error": "reapply_failed"})
                return
        self.finish("restored", "500", f"resetnetwork failed and was rolled back: {data.why}; the previous "
                                       "network configuration is restored",
                    detail={"restored": [p.path for p in order], "reapplied": data.reapply})

    # -- giving up after a crash loop -----------------------------------------------------------------

    def on_give_up(self, attempts: int) -> None:
        """The reply says where it stopped: past ``received`` the files may be changed."""
        if self.state == "received":
            super().on_give_up(attempts)
            return
        what = ("the previous network configuration may be half restored" if self.state == "rolling_back"
                else "the new network files may be in place, not verified")
        self.finish("fail", "500", f"{self.interrupted(attempts)} while {self.state}; {what}; not retrying it, "
                                   "to stop a crash loop", detail={"error": "crash_loop", "attempts": attempts})

    # -- helpers --------------------------------------------------------------------------------------

    def _network(self) -> NetworkPort:
        network: NetworkPort = self.ctx.ports.require("network")
        return network

    def _key(self) -> tuple[str, int]:
        return (self.ctx.journal.path, self.record.id)

    # -- the end: what was kept for the change goes --------------------------------------------------------

    def on_enter_done(self, event: Event) -> None:
        self._forget_own()

    def on_enter_rolled_back(self, event: Event) -> None:
        self._forget_own()

    def on_enter_failed(self, event: Event) -> None:
        self._forget_own()

    def _forget_own(self) -> None:
        """Remove this command's kept contents; a failure only leaves them for the next change to remove."""
        network = self.ctx.ports.network
        if network is None or network.backups is None:
            return
        prefix = f"resetnetwork-{self.record.id}-"
        try:
            for name in network.kept_names():
                if name.startswith(prefix):
                    network.forget(name)
        except PlatformError as exc:
            log.warning("command %d resetnetwork: its kept files were not removed: %s", self.record.id, exc)

    def _forget_finished(self, network: NetworkPort, unfinished: set[int]) -> None:
        """Remove what earlier commands kept and could not remove (the agent stopped as they ended)."""
        for name in network.kept_names():
            owner = name.split("-")[1] if name.startswith("resetnetwork-") else ""
            if not owner.isdigit() or int(owner) not in unfinished:
                network.forget(name)


def _rename_pending(network: NetworkPort) -> bool:
    """Whether the port's host name waits for the next boot (only Windows renames at boot)."""
    pending = getattr(network, "rename_pending", None)
    return bool(pending()) if pending is not None else False


def _sha256(contents: bytes | None) -> str | None:
    return None if contents is None else hashlib.sha256(contents).hexdigest()

