"""Debian's and older Ubuntu's ifupdown: one file under ``/etc/network/interfaces.d/``.

The agent's interfaces live in ``/etc/network/interfaces.d/50-openstack-agent.cfg``, so a resetnetwork
replaces exactly one file of its own rather than rewriting the administrator's ``/etc/network/interfaces``.
That only works when ``/etc/network/interfaces`` sources the file, so it is rendered too whenever it does
not: its content is kept, a loopback stanza is added when it has none, a ``source`` line is appended, and
the stanzas it has for the interfaces the agent now manages are commented out (two definitions of one
interface, say ``inet dhcp`` and ``inet static``, would both be applied).

Choices, with cloud-init's ``eni`` renderer as the bar:

- Several addresses of one family are several ``iface <if> inet static`` stanzas for the same interface.
  ifupdown (0.8 on, every supported Debian and Ubuntu) applies every stanza of an interface on ``ifup`` and
  removes every address on ``ifdown``, as interfaces(5) documents. cloud-init's ``eth0:1`` aliases are a
  leftover of ifconfig: each alias is a logical interface of its own that ``ifdown eth0`` leaves up; and a
  bare ``up ip addr add`` is invisible to ifupdown, which never removes the address again.
- The default route goes only on the interface that carries it (``Network.gateway4``/``gateway6``, the first
  with a gateway): two ``gateway`` lines on two interfaces make the second ``ifup`` fail on the existing
  default route. ifupdown adds that route with ``onlink`` itself, so a gateway outside the subnet works too.
- Static routes are ``up ip route replace`` / ``down ip route del`` lines on the stanza of their family:
  ``replace`` because the route may survive from before (a re-run ``ifup`` must not fail on "File exists"),
  and ``|| true`` on ``down`` because the kernel may already have dropped it with its address, and a failing
  ``down`` command would leave the interface half-configured. A route whose gateway is outside the
  interface's subnets gets ``onlink``, as ifupdown's own ``gateway`` does, or the kernel refuses it.
- Name servers are ``dns-nameservers`` (resolvconf's keyword, ignored when resolvconf is absent, where the
  resetnetwork machine writes ``/etc/resolv.conf`` itself), on each interface's first stanza, so resolvconf
  drops them with the interface.
- An interface with no enabled address is ``inet manual``: brought up, no address.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterable

from agent.network.model import Interface, IPAddress, IPInterface, IPNetwork, Network

NAME = "ifupdown"

#: The agent's own file, and the file that must source it.
PATH = "/etc/network/interfaces.d/50-openstack-agent.cfg"
INTERFACES = "/etc/network/interfaces"

HEADER = ("# Written by openstack-agent resetnetwork from nova's network data (vm-data/networking).\n"
          "# It is replaced on every resetnetwork: change the instance's network in OpenStack instead.\n")
_SOURCE = "source /etc/network/interfaces.d/*"
_COMMENT = "# disabled by openstack-agent resetnetwork: "
#: Lines that start a stanza in interfaces(5); an ``iface`` stanza's options are the lines up to the next.
_STANZA = re.compile(r"(auto|allow-[\w-]+|iface|mapping|source|source-directory|rename)\b")


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """The agent's interfaces file, and ``/etc/network/interfaces`` when it has to change to source it."""
    stanzas = [_interface(interface, network) for interface in network.interfaces]
    files = {PATH: (HEADER + "".join("\n" + stanza for stanza in stanzas)).encode()}
    before = current(INTERFACES)
    after = _interfaces_file(before, {interface.name for interface in network.interfaces})
    if after != before:
        files[INTERFACES] = after
    return files


def _interface(interface: Interface, network: Network) -> str:
    """Every stanza of one interface: ``auto``, then one ``iface`` per address (``inet`` before ``inet6``)."""
    name = interface.name
    default4 = network.gateway4[1] if network.gateway4 and network.gateway4[0] is interface else None
    default6 = network.gateway6[1] if network.gateway6 and network.gateway6[0] is interface else None
    stanzas: list[list[str]] = []
    families: tuple[tuple[str, tuple[IPInterface, ...], IPAddress | None], ...] = (
        ("inet", interface.ipv4, default4), ("inet6", interface.ipv6, default6))
    for family, addresses, gateway in families:
        routes = [(route.destination, route.gateway) for route in interface.routes
                  if route.destination.version == (4 if family == "inet" else 6)]
        for index, address in enumerate(addresses):
            lines = [f"iface {name} {family} static", f"    address {address.with_prefixlen}"]
            if index == 0:
                networks = [a.network for a in addresses]
                lines += _routes(name, gateway, routes, networks)
            stanzas.append(lines)
    if not stanzas:
        stanzas.append([f"iface {name} inet manual"])
    if interface.dns:
        stanzas[0].insert(2 if len(stanzas[0]) > 1 else 1,
                          "    dns-nameservers " + " ".join(str(server) for server in interface.dns))
    label = f" ({interface.label})" if interface.label else ""
    head = f"# {name}{label}, {interface.mac}\nauto {name}\n"
    return head + "\n".join("\n".join(lines) + "\n" for lines in stanzas)


def _routes(name: str, gateway: IPAddress | None, routes: Iterable[tuple[IPNetwork, IPAddress]],
            networks: list[IPNetwork]) -> list[str]:
    """The ``gateway`` line and the static routes of one family's first stanza."""
    lines = [] if gateway is None else [f"    gateway {gateway}"]
    for destination, via in routes:
        onlink = "" if _on_link(via, networks) else " onlink"
        target = "default" if destination.prefixlen == 0 else destination.with_prefixlen
        family = "" if destination.version == 4 else " -6"
        lines.append(f"    up ip{family} route replace {target} via {via} dev {name}{onlink}")
        lines.append(f"    down ip{family} route del {target} via {via} dev {name}{onlink} || true")
    return lines


def _on_link(gateway: IPAddress, networks: list[IPNetwork]) -> bool:
    """Whether the kernel reaches ``gateway`` directly through one of the interface's own subnets."""
    return gateway.is_link_local or any(gateway in network for network in networks)


def _interfaces_file(before: bytes | None, managed: set[str]) -> bytes:
    """``/etc/network/interfaces`` as it must be: sourcing the agent's file, with no stanza of its own for an
    interface the agent manages, and everything else as it was (``before`` itself when nothing changes)."""
    if before is None:
        return (HEADER.splitlines()[0] + "\n\nauto lo\niface lo inet loopback\n\n" + _SOURCE + "\n").encode()
    text = before.decode("utf-8", errors="surrogateescape")
    lines = text.splitlines()
    out: list[str] = []
    disabling = False
    has_lo = sources = False
    for line in lines:
        words = line.split()
        if words and _STANZA.match(words[0]):
            disabling = False
            if words[0] == "iface" and len(words) > 1:
                has_lo = has_lo or words[1] == "lo"
                disabling = words[1] in managed
            elif words[0] == "auto" or words[0].startswith("allow-"):
                kept = [word for word in words[1:] if word not in managed]
                if len(kept) < len(words) - 1:
                    out.append(_COMMENT + line)
                    if kept:
                        out.append(" ".join([words[0], *kept]))
                    continue
            elif words[0] == "source":
                sources = sources or any(_includes(pattern) for pattern in words[1:])
            if disabling:
                out.append(_COMMENT + line)
                continue
        elif disabling and words and not words[0].startswith("#"):
            out.append(_COMMENT + line)
            continue
        out.append(line)
    if not has_lo:
        out += ["", "auto lo", "iface lo inet loopback"]
    if not sources:
        out += ["", _SOURCE]
    result = "\n".join(out) + "\n"
    return before if result == text else result.encode("utf-8", errors="surrogateescape")


def _includes(pattern: str) -> bool:
    """Whether a ``source`` pattern (a glob, relative ones from ``/etc/network``) takes in the agent's file.
    ``source-directory`` never does: it only reads names of letters, digits, ``_`` and ``-``, no dot."""
    full = posixpath.normpath(posixpath.join("/etc/network", pattern))
    return fnmatch.fnmatchcase(PATH, full)
