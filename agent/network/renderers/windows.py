"""Windows: one canonical JSON document per adapter, at the pseudo-path ``wmi:adapter/<mac>``.

Windows keeps its network in the registry, set through WMI; there is no file to write. The resetnetwork machine
still works on "files" (old contents kept, new ones written, applied, verified, rolled back), so here each
adapter's configuration is the file: ``render`` gives, per interface nova configures, the document of what
to set, and the Windows network port (``agent.platform.windows_network``) reads the adapter's PRESENT
configuration in the same form (so the backup is the real old configuration, DHCP included) and applies a
document through WMI and netsh. ``document`` and ``parse`` are the one definition of that form both use.

The form (``dumps``: sorted keys, no spaces, one trailing line break, so equal configurations are equal bytes):

- ``{"mac": "fa:16:3e:..", "dhcp": true}`` for an adapter whose IPv4 comes from DHCP (an interface nova gives
  no IPv4 address: the static IPv4 methods need at least one), with any static IPv6 beside it;
- ``{"mac", "dhcp": false, "ipv4": ["a.b.c.d/len", ..], "gateways": [..], "dns": [..]}`` otherwise, in
  nova's order (the first address is the adapter's primary one, the DNS order is the search order);
- ``"ipv6": [..]`` and ``"gateway6": [..]``, sorted (Windows lists them in an order of its own), when there
  are any;
- ``"routes": [["<net>/<len>", "<gateway>"], ..]``, nova's static routes of both families, sorted (by family,
  then as text), when there are any; at most ``MAX_ROUTES``, and never a default one (``0.0.0.0/0``, ``::/0``):
  Windows' default route is the adapter's gateway, set with ``SetGateways`` (IPv6: ``gateway6``), so a default
  route among nova's routes that names the interface's own gateway is that gateway and is left out, and one that
  names another next hop is refused (two default routes would make Windows pick by metric);
- ``"dns6": [..]``, the IPv6 name servers in nova's order (the search order), when there are any; beside DHCP
  too, as the IPv6 name servers are set apart from the IPv4 ones.

Only the default route goes on the interface that carries it (``Network.gateway4``/``gateway6``), as on
Linux: two default routes on two adapters would make Windows pick by metric.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from agent.errors import PlatformError
from agent.network.model import Interface, Network, colon_mac, normal_mac

NAME = "windows"
#: The pseudo-path of an adapter's document: the MAC as 12 lowercase hex digits follows.
PREFIX = "wmi:adapter/"
_KEYS = {"mac", "dhcp", "ipv4", "gateways", "dns", "ipv6", "gateway6", "routes", "dns6"}
#: The most static routes one adapter takes (each is one netsh command; nova's data gives a handful).
MAX_ROUTES = 256


def path_for(mac: str) -> str:
    return PREFIX + normal_mac(mac)


def mac_of(path: str) -> str:
    """The 12-digit MAC a pseudo-path names; PlatformError for a path that is not an adapter's."""
    mac = path[len(PREFIX):] if path.startswith(PREFIX) else ""
    if len(mac) != 12 or not all(c in "0123456789abcdef" for c in mac):
        raise PlatformError(f"{path!r:.80} is not a Windows adapter's configuration (wmi:adapter/<12 hex digits>)")
    return mac


def document(mac: str, *, dhcp: bool, ipv4: list[str] | None = None, gateways: list[str] | None = None,
             dns: list[str] | None = None, ipv6: list[str] | None = None,
             gateway6: list[str] | None = None, routes: list[list[str]] | None = None,
             dns6: list[str] | None = None) -> dict[str, Any]:
    """An adapter's configuration in canonical form (static IPv4 keys only when not DHCP)."""
    doc: dict[str, Any] = {"mac": colon_mac(normal_mac(mac)), "dhcp": dhcp}
    if not dhcp:
        doc.update(ipv4=list(ipv4 or []), gateways=list(gateways or []), dns=list(dns or []))
    if ipv6:
        doc["ipv6"] = sorted(ipv6)
    if gateway6:
        doc["gateway6"] = sorted(gateway6)
    if dns6:
        doc["dns6"] = list(dns6)
    return with_routes(doc, routes or [])


def with_routes(doc: dict[str, Any], routes: list[list[str]]) -> dict[str, Any]:
    """``doc`` with ``routes`` as its static routes, in canonical order (no key when there are none)."""
    out = {key: value for key, value in doc.items() if key != "routes"}
    if routes:
        out["routes"] = sorted(([p, g] for p, g in routes), key=lambda r: (":" in r[0], r))
    return out


def dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def parse(contents: bytes) -> dict[str, Any]:
    """A document back from its bytes, checked: every address valid and of its family; PlatformError if not."""
    try:
        doc = json.loads(contents)
    except ValueError:
        raise PlatformError("an adapter configuration is not JSON") from None
    if not isinstance(doc, dict) or not set(doc) <= _KEYS or not isinstance(doc.get("dhcp"), bool):
        raise PlatformError("an adapter configuration has unknown keys or no 'dhcp'")
    mac = doc.get("mac")
    if not isinstance(mac, str) or len(normal_mac(mac)) != 12:
        raise PlatformError("an adapter configuration has no valid 'mac'")
    for key, version, with_prefix in (("ipv4", 4, True), ("gateways", 4, False), ("dns", 4, False),
                                      ("ipv6", 6, True), ("gateway6", 6, False), ("dns6", 6, False)):
        values = doc.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise PlatformError(f"an adapter configuration's {key!r} is not a list of strings")
        for value in values:
            try:
                parsed = ipaddress.ip_interface(value) if with_prefix else ipaddress.ip_address(value)
            except ValueError:
                parsed = None
            if parsed is None or parsed.version != version or (with_prefix and "/" not in value):
                raise PlatformError(f"an adapter configuration's {key!r} holds {value!r:.60}, not an IPv{version} "
                                    f"{'address/prefix' if with_prefix else 'address'}")
    routes = doc.get("routes", [])
    if not isinstance(routes, list) or len(routes) > MAX_ROUTES:
        raise PlatformError(f"an adapter configuration's 'routes' is not a list of at most {MAX_ROUTES} routes")
    for route in routes:
        _check_route(route)
    if not doc["dhcp"] and not doc.get("ipv4"):
        raise PlatformError("a static adapter configuration needs at least one IPv4 address")
    return doc


def _check_route(route: Any) -> None:
    """A ``[net/len, gateway]`` pair of one family, the network given with its prefix; PlatformError if not."""
    try:
        if not (isinstance(route, list) and len(route) == 2 and all(isinstance(v, str) for v in route)
                and "/" in route[0]):
            raise ValueError
        network, gateway = ipaddress.ip_network(route[0]), ipaddress.ip_address(route[1])
        if network.version != gateway.version:
            raise ValueError
    except ValueError:
        raise PlatformError(f"an adapter configuration's 'routes' holds {route!r:.80}, not a [network/prefix, "
                            "gateway] pair of one family") from None
    if network.prefixlen == 0:
        raise PlatformError(f"an adapter configuration's 'routes' holds the default route {route!r:.80}, which "
                            "is the adapter's gateway ('gateways', 'gateway6'), not a static route")


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """One document per interface nova configures."""
    return {path_for(interface.mac): dumps(_document(interface, network)) for interface in network.interfaces}


def _document(interface: Interface, network: Network) -> dict[str, Any]:
    default4 = network.gateway4[1] if network.gateway4 and network.gateway4[0] is interface else None
    default6 = network.gateway6[1] if network.gateway6 and network.gateway6[0] is interface else None
    return document(interface.mac, dhcp=not interface.ipv4,
                    ipv4=[a.with_prefixlen for a in interface.ipv4],
                    gateways=[] if default4 is None else [str(default4)],
                    dns=[str(server) for server in interface.dns if server.version == 4],
                    ipv6=[a.with_prefixlen for a in interface.ipv6],
                    gateway6=[] if default6 is None else [str(default6)],
                    routes=_routes(interface),
                    dns6=[str(server) for server in interface.dns if server.version == 6])


def _routes(interface: Interface) -> list[list[str]]:
    """nova's static routes of the interface; PlatformError (so nothing is changed) for too many of them or for
    a default route that is not the interface's own gateway (one that is, is that gateway and left out)."""
    if len(interface.routes) > MAX_ROUTES:
        raise PlatformError(f"interface {interface.name} has {len(interface.routes)} static routes; Windows takes "
                            f"at most {MAX_ROUTES} per adapter from the agent")
    routes = []
    for route in interface.routes:
        if route.destination.prefixlen == 0:
            own = interface.gateway4 if route.destination.version == 4 else interface.gateway6
            if route.gateway == own:
                continue
            raise PlatformError(
                f"interface {interface.name} has a static default route {route.destination} via {route.gateway}, "
                f"but its gateway is {own or 'not given'}: on Windows the default route is the adapter's gateway; "
                "give the gateway as the interface's gateway, or drop that route")
        if [route.destination.with_prefixlen, str(route.gateway)] not in routes:
            routes.append([route.destination.with_prefixlen, str(route.gateway)])
    return routes
