"""The live side of ``resetnetwork``: the guest's network files, the stack's tools, and what the kernel says.

The machine (``agent.machines.resetnetwork``) decides what to write and when; this port is everything it
does to the system, so the machine can be tested against a lab and the system effects against the kernel:

* Files are read, written and removed through ``Files`` (symlink-safe, atomic, durable), without backups:
  the stacks read whole directories (``interfaces.d``, ``/etc/netplan``, ``system-connections``), where a
  ``.bak`` file beside a rendered one would be configuration too. The machine keeps the old contents in
  its journal instead. Reads are bounded by ``MAX_FILE_SIZE``, which is also the write limit, so whatever
  was read can be written back by a rollback.
* ``apply`` runs the stack's tools in the order the ``APPLY`` table gives. The table is data so that what
  the agent runs on each stack is visible in one place, and the tests check it against the real tools.
  ifupdown deconfigures an interface only as its *current* files describe it, so after a change of address
  the old one would stay: the flush removes it. ``ifup`` runs only for interfaces the files still define
  (``ifquery``), so a rollback to files without an interface leaves it down rather than failing.
  NetworkManager is asked to ``device connect`` each interface, which picks the best profile for it after the
  reload; naming profiles would tie this table to the renderer's profile names.
* ``observe`` and ``answers`` are how the machine checks the result: the global addresses and default routes
  the kernel has (``ip -j``), and whether a gateway answers a ping.
* The host name is the kernel's (sethostname(2)); the files that keep it across boots are the machine's.

**A root other than "/"** (``--root``, the tests) is a guest image in a directory, but the kernel is still
the one of the machine the agent runs on: applying would reconfigure this machine's interfaces. So
``refusal`` forbids it unless the tools run under a ``prefix`` (``ip netns exec NS``) or the agent itself
runs in a network namespace other than the initial one. Under such a root the tools must also read the
root's files, not the machine's: ifupdown's (``/etc/network``) and Red Hat's network scripts
(``/etc/sysconfig/network-scripts``) are bound over the machine's directory in a private mount namespace of
the tool's own (``unshare``), and ifupdown keeps its state in the root's ``/run/network``. The other stacks
are driven through daemons (systemd-networkd, NetworkManager, netplan's backends, FreeBSD's rc) that read
the machine's files and act on the machine's interfaces whatever namespace the caller is in, so under a
root they are refused rather than pointed at the wrong system. The host name is left alone under a root or
a prefix: neither moves this process into another UTS namespace.
"""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, PlatformError
from agent.platform.base import run_bounded, run_tool, scrub
from agent.platform.files import Files, show

log = logging.getLogger(__name__)

#: The largest network file the agent reads or writes (256 KiB): far above any real configuration, and a bound
#: on what a stray file could make the agent hold in memory and in its journal.
MAX_FILE_SIZE = 256 * 1024
#: The inode of the initial network namespace (the kernel's fixed ``PROC_NET_INIT_INO``), for when
#: ``/proc/1/ns/net`` cannot be read (a process that is not allowed to look at PID 1).
INIT_NET_INODE = 0xEFFFFFF9
#: sethostname(2) takes at most HOST_NAME_MAX (64) bytes on Linux.
HOST_NAME_MAX = 64
#: Interface names as the kernel takes them (IFNAMSIZ - 1 bytes, no '/', no white space), and never a
#: leading '-' which a tool would read as an option.
_INTERFACE = re.compile(r"[^-/\s:][^/\s:]{0,14}")
#: Binds the pairs "source target" given before "--", then runs the rest: the tools under a root read the
#: root's files where they look for the machine's.
_BIND_SCRIPT = 'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; shift; exec "$@"'
_STATE = ("--state-dir", "{state_dir}")


@dataclasses.dataclass(frozen=True)
class Observed:
    """The network as the kernel has it."""

    #: interface name -> its global-scope addresses as "ip/prefix" (ipaddress.ip_interface-normalised strings)
    addresses: dict[str, frozenset[str]]
    #: default routes present, as (gateway ip string, interface name), both families
    defaults: frozenset[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Step:
    """One tool run of an ``apply``.

    ``argv`` may hold ``{interface}`` (the step then runs once per interface, ``each``) and ``{state_dir}``
    (ifupdown's state directory, the root's ``/run/network``). ``package`` is what to install when the tool
    is missing. A ``may_fail`` step's failure is logged and the apply goes on. ``only_if`` is a command that
    must answer yes (exit status 0; 1 is no, anything else an error) for the step to run, substituted the same
    way.
    """

    argv: tuple[str, ...]
    package: str
    each: bool = False
    may_fail: bool = False
    only_if: tuple[str, ...] | None = None


#: What ``apply`` runs, per stack, in order.
APPLY: dict[str, tuple[Step, ...]] = {
    "ifupdown": (
        Step(("ifdown", *_STATE, "--force", "{interface}"), "ifupdown", each=True, may_fail=True),
        Step(("ip", "addr", "flush", "dev", "{interface}", "scope", "global"), "iproute2", each=True,
             may_fail=True),
        Step(("ifup", *_STATE, "{interface}"), "ifupdown", each=True,
             only_if=("ifquery", *_STATE, "{interface}")),
    ),
    "netplan": (
        Step(("netplan", "apply"), "netplan.io"),
    ),
    "networkd": (
        Step(("networkctl", "reload"), "systemd"),
        Step(("networkctl", "reconfigure", "{interface}"), "systemd", each=True),
    ),
    "networkmanager": (
        Step(("nmcli", "connection", "reload"), "network-manager"),
        Step(("nmcli", "device", "connect", "{interface}"), "network-manager", each=True),
    ),
    "sysconfig": (
        Step(("ifdown", "{interface}"), "network-scripts", each=True, may_fail=True),
        Step(("ifup", "{interface}"), "network-scripts", each=True),
    ),
    "freebsd": (
        Step(("service", "netif", "restart"), "base system's rc"),
        Step(("service", "routing", "restart"), "base system's rc"),
    ),
}

#: The guest directories each stack's tools read, bound from the root over the machine's under a root other
#: than "/". A stack missing here cannot be applied under such a root (see the module's description).
ROOTED: dict[str, tuple[str, ...]] = {
    "ifupdown": ("/etc/network",),
    "sysconfig": ("/etc/sysconfig/network-scripts",),
}

#: The packages of the tools that wrap the stack's own.
_WRAPPERS = {"unshare": "util-linux", "ping": "iputils-ping", "ip": "iproute2"}


def in_initial_netns() -> bool:
    """Whether this process shares the network namespace of PID 1 (the machine's own network)."""
    try:
        mine = os.readlink("/proc/self/ns/net")
    except OSError:
        return True  # cannot tell: assume the worst
    try:
        first = os.readlink("/proc/1/ns/net")
    except OSError:
        first = f"net:[{INIT_NET_INODE}]"
    return mine == first


class LiveNetwork:
    """The network port: the guest's network files under ``root`` and the system's network, through tools
    run under ``prefix`` (each bounded by ``timeout`` seconds); see the module's description."""

    def __init__(self, root: str | os.PathLike[str] = "/", *, prefix: Sequence[str] = (),
                 timeout: float = 60.0, backups: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(os.fspath(root) or "/")
        self.prefix = tuple(prefix)
        self.timeout = timeout
        self._files = Files(self.root, allowed_paths=("*",), max_size=MAX_FILE_SIZE, keep_backups=False)
        #: Where a change's old and new file contents wait until it ends (in the agent's state directory, 0700):
        #: the journal keeps only their digests, since a configuration file may hold a secret.
        self.backups = None if backups is None else Path(backups)

    @property
    def rooted(self) -> bool:
        """Whether the guest is a directory rather than the system the agent runs on."""
        return self.root.resolve() != Path("/")

    @property
    def refusal(self) -> str | None:
        """None when the agent may apply a network; otherwise why it may not."""
        if not self.rooted or self.prefix or not in_initial_netns():
            return None
        return (f"applying a network under --root {show(str(self.root))} would change this machine's own "
                "interfaces; run the agent in a network namespace of its own")

    def _allowed(self) -> None:
        refusal = self.refusal
        if refusal is not None:
            raise PlatformError(refusal)

    def interfaces(self) -> dict[str, str]:
        """The guest's interfaces as the network model matches them: ``{mac12: name}``, from the root's sysfs."""
        from agent.network.model import system_interfaces

        return system_interfaces(self.root)

    def stack(self, setting: str) -> str:
        """The stack to render for: ``network.renderer``, or with ``auto`` the one the image has (ConfigError when
        none is found, or for ``windows``, whose network is not files)."""
        from agent.network import detect
        from agent.network.renderers import windows

        stack = detect.choose(setting, self.root)
        if stack == windows.NAME:
            raise ConfigError("the windows network applies only on Windows")
        return stack

    # -- files ------------------------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The guest file's bytes, None when absent; FileRefused past MAX_FILE_SIZE or on a link."""
        return self._files.read(path, MAX_FILE_SIZE)

    def write(self, path: str, contents: bytes, mode: int) -> None:
        """Put the guest file in place atomically and durably; ``mode`` if it is new."""
        self._files.write(path, contents, mode)

    def remove(self, path: str) -> bool:
        return self._files.remove(path)

    def discard_partial(self, path: str) -> bool:
        return self._files.discard_partial(path)

    # -- the contents a change keeps until it ends ---------------------------------------------------------

    def keep(self, name: str, contents: bytes) -> None:
        """Keep ``contents`` as ``name`` (0600, written atomically and durably) until ``forget``."""
        kept = self._kept()
        self.backups.mkdir(mode=0o700, parents=True, exist_ok=True)  # type: ignore[union-attr]
        kept.write(f"/{name}", contents, 0o600)

    def kept(self, name: str) -> bytes | None:
        """What was kept as ``name``, None when nothing was."""
        return self._kept().read(f"/{name}", MAX_FILE_SIZE)

    def kept_names(self) -> list[str]:
        backups = self._kept().root
        return sorted(p.name for p in backups.iterdir()) if backups.is_dir() else []

    def forget(self, name: str) -> bool:
        """Remove what was kept as ``name``; whether there was such a thing."""
        return self._kept().remove(f"/{name}")

    def _kept(self) -> Files:
        if self.backups is None:
            raise PlatformError("this agent has no directory to keep a network change's files in")
        return Files(self.backups, allowed_paths=("*",), max_size=MAX_FILE_SIZE, keep_backups=False, selinux=False)

    # -- the stack ----------------------------------------------------------------------------------------

    def apply(self, stack: str, interfaces: Sequence[str]) -> None:
        """Make the stack take up its files for ``interfaces``; PlatformError naming the tool that failed."""
        self._allowed()
        steps = APPLY.get(stack)
        if steps is None:
            raise PlatformError(f"no way to apply a {scrub(repr(stack), '')} network; the stacks are "
                                f"{', '.join(APPLY)}")
        for name in interfaces:
            if not _INTERFACE.fullmatch(name):
                raise PlatformError(f"{scrub(repr(name), '')} is not an interface name")
        binds = self._binds(stack)
        log.info("applying the %s network to %s", stack, ", ".join(interfaces) or "no interface")
        for step in steps:
            for interface in interfaces if step.each else [None]:
                if step.only_if is not None and not self._probe(self._command(step.only_if, interface, binds),
                                                                step.only_if[0], step.package):
                    log.info("%s %s: not run, as %s finds it nowhere in the files", step.argv[0], interface,
                             step.only_if[0])
                    continue
                self._run(self._command(step.argv, interface, binds), step.argv[0], step.package, step.may_fail)

    def _binds(self, stack: str) -> list[str]:
        """The "source target" pairs to bind for ``stack``'s tools (none under "/")."""
        if not self.rooted:
            return []
        if stack not in ROOTED:
            raise PlatformError(f"the {stack} network cannot be applied under --root {show(str(self.root))}: "
                                "its tools act through the machine's own daemons, whatever root is given")
        pairs: list[str] = []
        for directory in ROOTED[stack]:
            source = self._inside(stack, self.root / directory.lstrip("/"))
            if not source.is_dir():
                raise PlatformError(f"cannot apply the {stack} network: {show(str(source))} is not a directory")
            pairs += [str(source), directory]
        if stack == "ifupdown":
            try:
                self._inside(stack, self._state_dir()).mkdir(mode=0o755, parents=True, exist_ok=True)
            except OSError as exc:
                raise PlatformError(f"cannot make ifupdown's state directory {show(str(self._state_dir()))}: "
                                    f"{exc.strerror}") from None
        return pairs

    def _inside(self, stack: str, path: Path) -> Path:
        """``path`` with its links resolved, which must stay inside the root: a link in the image could
        otherwise bind the machine's own directory, or keep ifupdown's state in the machine's /run."""
        base = self.root.resolve()
        real = Path(os.path.realpath(path))
        if real != base and base not in real.parents:
            raise PlatformError(f"cannot apply the {stack} network: {show(str(path))} leads out of the root")
        return real

    def _state_dir(self) -> Path:
        return self.root / "run/network"

    def _command(self, argv: Sequence[str], interface: str | None, binds: list[str]) -> list[str]:
        """``argv`` substituted, wrapped in the binds and put under the prefix."""
        state = str(self._state_dir())
        command = [arg.replace("{interface}", interface or "").replace("{state_dir}", state) for arg in argv]
        if binds:
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _BIND_SCRIPT, "sh",
                       *binds, "--", *command]
        return [*self.prefix, *command]

    def _check(self, command: Sequence[str], tool: str, package: str) -> None:
        """A PlatformError naming the package when the tool (or a wrapper of it) is missing."""
        if shutil.which(tool) is None:
            raise PlatformError(f"{tool} is not installed; install the {package} package")
        wrappers = [*self.prefix[:1], *command[len(self.prefix):len(self.prefix) + 1]]
        for wrapper in dict.fromkeys(wrappers):
            if wrapper != tool and shutil.which(wrapper) is None:
                raise PlatformError(f"{wrapper} (which runs {tool}) is not installed; install the "
                                    f"{_WRAPPERS.get(wrapper, wrapper)} package")

    def _run(self, command: Sequence[str], tool: str, package: str, may_fail: bool = False) -> str:
        self._check(command, tool, package)
        log.debug("running %s", shlex.join(command))
        try:
            return run_tool(command, "", "", package, timeout=self.timeout, tool=tool)
        except PlatformError as exc:
            if not may_fail:
                raise
            log.info("%s (which may fail here)", exc)
            return ""

    def _probe(self, command: Sequence[str], tool: str, package: str, no: tuple[int, ...] = (1,)) -> bool:
        """The answer to a question a tool's exit status gives: 0 is yes, a status in ``no`` is no, and any
        other is an error (a wrapper that failed, say) rather than a silent no."""
        self._check(command, tool, package)
        log.debug("asking %s", shlex.join(command))
        try:
            result = run_bounded(command, b"", self.timeout, {**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise PlatformError(f"{tool} did not finish within {self.timeout:g} s") from None
        except OSError as exc:
            raise PlatformError(f"cannot run {tool}: {exc.strerror}") from None
        if result.returncode in (0, *no):
            return result.returncode == 0
        output = (result.stderr or result.stdout).decode("utf-8", "replace")
        raise PlatformError(f"{tool} failed with exit status {result.returncode}: "
                            f"{scrub(output, '', tail=True) or 'no message'}")

    # -- the host name ------------------------------------------------------------------------------------

    def set_hostname(self, name: str) -> None:
        """Give the kernel the host name ``name`` (not under a root or a prefix: see the module)."""
        self._allowed()
        encoded = name.encode("utf-8")
        if not encoded or len(encoded) > HOST_NAME_MAX or "\0" in name:
            raise PlatformError(f"cannot set the host name {scrub(repr(name), '')}: it must be 1 to "
                                f"{HOST_NAME_MAX} bytes without NUL")
        if self.rooted or self.prefix:
            log.info("the host name %s was left as it is: the kernel's name is not inside the root",
                     scrub(repr(name), ""))
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.sethostname(ctypes.c_char_p(encoded), ctypes.c_size_t(len(encoded))) != 0:
            number = ctypes.get_errno()
            raise PlatformError(f"cannot set the host name {scrub(repr(name), '')}: {os.strerror(number)}")

    def hostname(self) -> str | None:
        """The kernel's host name, or None under a root or a prefix (whose guest's name it is not)."""
        return None if self.rooted or self.prefix else socket.gethostname()

    # -- observing ----------------------------------------------------------------------------------------

    def observe(self) -> Observed:
        """The global addresses and the default routes the kernel has now."""
        self._allowed()
        addresses: dict[str, frozenset[str]] = {}
        for link in self._ip("addr", "show"):
            found = set()
            for info in link.get("addr_info", []):
                if info.get("scope") == "global" and "local" in info and "prefixlen" in info:
                    found.add(_normal(ipaddress.ip_interface, f"{info['local']}/{info['prefixlen']}"))
            addresses[str(link.get("ifname", ""))] = frozenset(found)
        defaults: set[tuple[str, str]] = set()
        for route in [*self._ip("route", "show", "default"), *self._ip("-6", "route", "show", "default")]:
            # A default route without a gateway (on a point-to-point link) has no gateway to check: not listed.
            for hop in route.get("nexthops", [route]):
                if "gateway" in hop and "dev" in hop:
                    defaults.add((_normal(ipaddress.ip_address, hop["gateway"]), str(hop["dev"])))
        return Observed(addresses, frozenset(defaults))

    def _ip(self, *args: str) -> list[dict[str, Any]]:
        output = self._run([*self.prefix, "ip", "-j", *args], "ip", "iproute2")
        try:
            parsed = json.loads(output or "[]")
        except ValueError:
            raise PlatformError(f"ip -j {' '.join(args)} gave output that is not JSON") from None
        if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
            raise PlatformError(f"ip -j {' '.join(args)} gave JSON that is not a list of objects")
        return parsed

    def answers(self, address: str) -> bool:
        """Whether ``address`` answers one ping within a second."""
        self._allowed()
        try:
            target = str(ipaddress.ip_address(address))
        except ValueError:
            raise PlatformError(f"{scrub(repr(address), '')} is not an IP address to ping") from None
        # ping says 1 for no reply and 2 for an error such as an unreachable network: both are "no" here.
        return self._probe([*self.prefix, "ping", "-c", "1", "-W", "1", target], "ping", "iputils-ping", no=(1, 2))


def _normal(parse: Any, text: str) -> str:
    """``text`` as ``parse`` (ipaddress) normalises it; PlatformError when ip printed something else."""
    try:
        return str(parse(text))
    except ValueError:
        raise PlatformError(f"ip printed {scrub(repr(text), '')} where an address belongs") from None
