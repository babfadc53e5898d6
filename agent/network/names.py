"""The host name and DNS files every Unix stack shares: ``/etc/hostname``, ``/etc/hosts``, and
``/etc/resolv.conf`` or resolvconf's base file.

``render_names(network, current, stack) -> {guest path: bytes}`` is a pure function like a renderer's
``render`` (``current(path)`` is a file's present bytes or None), called beside the stack's renderer; ``stack``
is that renderer's ``NAME``. What it writes:

- ``/etc/hostname``: the host name, when nova gives one, except on FreeBSD, whose name lives in
  ``/etc/rc.conf`` (the freebsd renderer sets it). Red Hat's convention (``sysconfig``,
  ``networkmanager``) is the full name, as nova gives it; Debian's and systemd's elsewhere is the first
  label, which the kernel's 64-character limit always fits.
- ``/etc/hosts``: the agent's line is the one for ``127.0.1.1``, Debian's convention for the machine's own
  name (``127.0.1.1 <fqdn> <short>``), so the line the installer wrote with the old name is the one replaced
  rather than left beside a new one. Every ``127.0.1.1`` line is replaced by one line where the first was;
  with none, the line goes after the first ``127.0.0.1`` line, or at the end. Every other line is kept byte
  for byte. Only when a host name is given; a missing file starts from the localhost lines.
- DNS, for the stacks that do not carry it themselves (``OWNS_DNS`` lists those that do): the
  ``nameserver`` lines of ``/etc/resolv.conf`` are replaced (where the first one was, or at the end) and
  every other line (``search``, ``domain``, ``options``, comments) is kept. When resolvconf is in use
  (``/etc/resolvconf/resolv.conf.d/base`` exists), ``/etc/resolv.conf`` is resolvconf's to write, so the
  same edit goes to the base file instead. Only when nova gives name servers: without any, the guest keeps
  the ones it has rather than being left with none.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.network.model import Network

HOSTNAME = "/etc/hostname"
HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
RESOLVCONF_BASE = "/etc/resolvconf/resolv.conf.d/base"
#: The address of the machine's own name in /etc/hosts (Debian's convention, also nss-myhostname's choice).
OWN_ADDRESS = "127.0.1.1"
#: The stacks whose renderer writes the name servers where that stack's resolver takes them from:
#: sysconfig (DNS<n> in ifcfg), netplan and networkd (systemd-resolved), NetworkManager (its keyfiles).
OWNS_DNS = frozenset({"sysconfig", "netplan", "networkd", "networkmanager"})
#: The stacks that want the full name in /etc/hostname.
FULL_NAME = frozenset({"sysconfig", "networkmanager"})
#: The stacks whose host name is not in /etc/hostname.
NO_HOSTNAME_FILE = frozenset({"freebsd"})
#: What /etc/hosts starts from when there is none, so the agent's line does not leave localhost unnamed.
LOCALHOST = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
#: Put as the first line of a resolver file the agent writes from nothing, so a reader knows who wrote it.
HEADER = b"# Name servers set by openstack-agent (resetnetwork); other lines are kept.\n"


def render_names(network: Network, current: Callable[[str], bytes | None], stack: str) -> dict[str, bytes]:
    """The host name and DNS files ``stack`` leaves to the agent, for ``network``."""
    files: dict[str, bytes] = {}
    name = network.hostname
    if name is not None:
        short = name.split(".", 1)[0]
        if stack not in NO_HOSTNAME_FILE:
            files[HOSTNAME] = ((name if stack in FULL_NAME else short) + "\n").encode()
        files[HOSTS] = hosts(current(HOSTS), name)
    if network.dns and stack not in OWNS_DNS:
        path = RESOLVCONF_BASE if current(RESOLVCONF_BASE) is not None else RESOLV_CONF
        files[path] = resolver(current(path), [str(server) for server in network.dns])
    return files


#: The longest host name the kernel keeps (HOST_NAME_MAX on Linux).
KERNEL_MAX = 64


def system_name(name: str, stack: str) -> str:
    """The running host name for nova's ``name``: what ``/etc/hostname`` gets on ``stack`` (the full name or its
    first label), cut back to the first label when the full name is longer than the kernel keeps."""
    full = name if stack in FULL_NAME else name.split(".", 1)[0]
    return full if len(full.encode()) <= KERNEL_MAX else name.split(".", 1)[0]


def hosts(present: bytes | None, name: str) -> bytes:
    """``/etc/hosts`` with the ``127.0.1.1`` line naming ``name`` (the full name, then the first label when
    they differ) and every other line as it was."""
    short = name.split(".", 1)[0]
    line = f"{OWN_ADDRESS}\t{name}" + (f" {short}" if short != name else "") + "\n"
    lines = _lines(present) if present is not None else _lines(LOCALHOST)
    own = [i for i, text in enumerate(lines) if _first_field(text) == OWN_ADDRESS]
    if own:
        at = own[0]
    else:
        loopback = [i for i, text in enumerate(lines) if _first_field(text) == "127.0.0.1"]
        at = loopback[0] + 1 if loopback else len(lines)
    kept = [text for i, text in enumerate(lines) if i not in own]
    return b"".join([*kept[:at], line.encode(), *kept[at:]])


def resolver(present: bytes | None, servers: list[str]) -> bytes:
    """A resolv.conf (or resolvconf base file) with ``servers`` as its ``nameserver`` lines, in order, where
    the first present one was (at the end when there is none), and every other line as it was."""
    lines = _lines(present) if present is not None else [HEADER]
    ours = [f"nameserver {server}\n".encode() for server in servers]
    found = [i for i, text in enumerate(lines) if _first_field(text) == "nameserver"]
    at = found[0] if found else len(lines)
    kept = [text for i, text in enumerate(lines) if i not in found]
    return b"".join([*kept[:at], *ours, *kept[at:]])


def _lines(present: bytes | None) -> list[bytes]:
    lines = (present or b"").splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    return lines


def _first_field(line: bytes) -> str:
    fields = line.split(b"#", 1)[0].split()
    return fields[0].decode("ascii", "replace") if fields else ""
