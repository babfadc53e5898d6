"""Red Hat's network-scripts: ``ifcfg-<if>``, ``route-<if>`` and ``route6-<if>`` under
``/etc/sysconfig/network-scripts``.

Both readers of these files take them: initscripts' ``ifup`` (RHEL 7 and earlier) sources them as sh, and
NetworkManager's ifcfg-rh plugin (RHEL 8 and 9) parses them line by line. So every line is one
``KEY=value`` in sh quoting, and a value is quoted only when sh needs it.

An ``ifcfg`` file is shared with whoever set up the image (``MTU``, ``ETHTOOL_OPTS``, ``ZONE``, comments):
the keys this renderer manages (``MANAGED`` and ``MANAGED_FAMILIES``) are written first, in a fixed order,
under the managed-by comment; every other line of the present file follows, byte for byte and in its order.
A managed key that no longer applies (a second address gone, a gateway moved to another interface, an
earlier writer's ``NETMASK``) is dropped, because leaving it would configure what nova no longer asks for.

``NM_CONTROLLED`` is managed by being left out, as cloud-init does since RHEL 8: there NetworkManager is the
only reader of ifcfg files, and ``NM_CONTROLLED=no`` (which older agents and cloud-init wrote) leaves the
interface down (cloud-init issue #3781). On RHEL 7 leaving it out lets both initscripts and NetworkManager
read the same file, which is the distribution's default.

Route files are wholly the agent's, as they were earlier agents' and cloud-init's: a route line of the
agent's cannot be told from one a person wrote, so a file is written whole. One is written when the interface
has routes of that family, or (emptied down to the comment) when a previous one exists, so a route nova has
dropped does not survive it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agent.network.model import Interface, Network, Route

NAME = "sysconfig"

DIRECTORY = "/etc/sysconfig/network-scripts"
#: The first line of every file this renderer writes (and the line it drops from a present file).
HEADER = "# Managed by openstack-agent (resetnetwork): its keys are rewritten on each reset, other lines kept."
#: The first line of a route file, which is written whole.
ROUTE_HEADER = "# Managed by openstack-agent (resetnetwork): rewritten whole on each reset."

#: The keys this renderer writes or removes, in the order it writes them.
MANAGED = ("DEVICE", "HWADDR", "TYPE", "BOOTPROTO", "ONBOOT", "DEFROUTE", "GATEWAY",
           "IPV6INIT", "IPV6ADDR", "IPV6ADDR_SECONDARIES", "IPV6_DEFAULTGW", "NM_CONTROLLED")
#: Numbered keys it owns whatever the number: ``IPADDR``, ``IPADDR1``..., ``PREFIX<n>``, ``NETMASK<n>`` (an
#: earlier writer's form; ``PREFIX`` replaces it), ``GATEWAY<n>``, ``DNS<n>``.
MANAGED_FAMILIES = re.compile(r"(?:IPADDR|PREFIX|NETMASK|GATEWAY)[0-9]*|DNS[0-9]+")
#: The resolver reads three name servers at most (resolv.conf(5), MAXNS); ifup copies DNS1..DNS3 there.
MAX_DNS = 3

_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """Every interface's ``ifcfg`` file, and its route files where it has routes or had a route file."""
    files: dict[str, bytes] = {}
    default4 = network.gateway4
    default6 = network.gateway6
    for interface in network.interfaces:
        gateway4 = str(default4[1]) if default4 is not None and default4[0] is interface else None
        gateway6 = str(default6[1]) if default6 is not None and default6[0] is interface else None
        path = f"{DIRECTORY}/ifcfg-{interface.name}"
        files[path] = merge(ifcfg_keys(interface, gateway4, gateway6), current(path))
        for version, stem in ((4, "route"), (6, "route6")):
            routes = [r for r in interface.routes if r.destination.version == version]
            path = f"{DIRECTORY}/{stem}-{interface.name}"
            if routes or current(path) is not None:
                files[path] = route_file(interface.name, routes)
    return files


def ifcfg_keys(interface: Interface, gateway4: str | None, gateway6: str | None) -> dict[str, str]:
    """The managed keys' values for one interface, in the order they are written. ``gateway4`` and
    ``gateway6`` are given only to the interface that carries that family's default route: a ``GATEWAY``
    in two files would race for the default route."""
    keys = {"DEVICE": interface.name, "HWADDR": interface.mac, "TYPE": "Ethernet",
            "BOOTPROTO": "none", "ONBOOT": "yes"}
    if gateway4 is not None:
        keys["DEFROUTE"] = "yes"
    for index, address in enumerate(interface.ipv4):
        suffix = str(index) if index else ""
        keys[f"IPADDR{suffix}"] = str(address.ip)
        keys[f"PREFIX{suffix}"] = str(address.network.prefixlen)
    if gateway4 is not None:
        keys["GATEWAY"] = gateway4
    ipv6 = [a.with_prefixlen for a in interface.ipv6]
    if ipv6:
        keys["IPV6INIT"] = "yes"
        keys["IPV6ADDR"] = ipv6[0]
        if ipv6[1:]:
            keys["IPV6ADDR_SECONDARIES"] = " ".join(ipv6[1:])
        if gateway6 is not None:
            keys["IPV6_DEFAULTGW"] = gateway6
    for index, server in enumerate(interface.dns[:MAX_DNS], start=1):
        keys[f"DNS{index}"] = str(server)
    return keys


def is_managed(key: str) -> bool:
    """Whether ``key`` is one this renderer writes or removes, so a present line with it is not kept."""
    return key in MANAGED or MANAGED_FAMILIES.fullmatch(key) is not None


def merge(keys: dict[str, str], present: bytes | None) -> bytes:
    """The managed-by comment, ``keys`` in their order, then every line of ``present`` that sets no managed
    key and is not the comment, byte for byte. Only the keys of ``keys`` are set, so a managed key that no
    longer applies is gone."""
    lines = [HEADER, *(f"{key}={quote(value)}" for key, value in keys.items())]
    out = "\n".join(lines).encode() + b"\n"
    kept = [line for line in (present or b"").splitlines(keepends=True) if _kept(line)]
    if kept and not kept[-1].endswith(b"\n"):
        kept[-1] += b"\n"
    return out + b"".join(kept)


def _kept(line: bytes) -> bool:
    text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
    if text == HEADER:
        return False
    match = _ASSIGNMENT.match(text)
    return match is None or not is_managed(match.group(1))


def route_file(name: str, routes: list[Route]) -> bytes:
    """``route-<if>`` or ``route6-<if>`` in the ``ip route`` form both readers take:
    ``<dest>/<prefix> via <gw> dev <if>``, one a line, in nova's order."""
    lines = [ROUTE_HEADER,
             *(f"{r.destination.with_prefixlen} via {r.gateway} dev {name}" for r in routes)]
    return "\n".join(lines).encode() + b"\n"


def quote(value: str) -> str:
    """``value`` as sh reads it back: bare when it has only safe characters, else in double quotes with
    ``"``, ``$``, `` ` `` and ``\\`` escaped (cloud-init quotes only values with spaces, which a ``$`` in a
    value would break)."""
    if _SAFE.fullmatch(value):
        return value
    return '"' + re.sub(r'(["$`\\])', r"\\\1", value) + '"'
