"""The network model: nova's ``vm-data`` parsed once, checked, and matched to the guest's interfaces.

nova writes one JSON object per interface under ``vm-data/networking/<mac>`` and the host name under
``vm-data/hostname`` (``docs/protocol.md``, "Network data in vm-data"). ``parse`` turns that into a
``Network`` whose every address, prefix and route is already valid, so renderers are pure functions of it
and never meet bad data. Anything wrong is a ``NetworkDataError`` naming the entry and what is wrong; nothing
is half-parsed.

Interfaces are matched by MAC, without regard to case or colons, against the system's interfaces
(``/sys/class/net/*/address`` under the agent's root). A MAC nova names that the guest lacks is an error
naming it; an interface nova does not name is left alone.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent import jsontext
from agent.errors import NetworkDataError as NetworkDataError  # raised here; re-exported for callers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What nova's MACs and the kernel's addresses look like once normalised: 12 lowercase hex digits.
#: nova's entries nest three levels; text deep enough to trouble the parser is refused before parsing.
MAX_DEPTH = 32
_MAC = re.compile(r"[0-9a-f]{12}")
#: A host name: labels of letters, digits and hyphens (RFC 1123), 253 characters at most.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclasses.dataclass(frozen=True)
class Route:
    """A static route: ``destination`` via ``gateway``."""

    destination: IPNetwork
    gateway: IPAddress


@dataclasses.dataclass(frozen=True)
class Interface:
    """One interface nova configures, matched to the guest's own by MAC."""

    #: The guest's name for it (``eth0``, ``ens3``).
    name: str
    #: Colon-separated, lowercase (``fa:16:3e:0a:1b:2c``).
    mac: str
    #: nova's label (``public``, ``private``): for comments and connection names only.
    label: str
    #: Enabled addresses with their prefixes, IPv4 first, in nova's order.
    addresses: tuple[IPInterface, ...] = ()
    gateway4: ipaddress.IPv4Address | None = None
    gateway6: ipaddress.IPv6Address | None = None
    routes: tuple[Route, ...] = ()
    dns: tuple[IPAddress, ...] = ()

    @property
    def ipv4(self) -> tuple[ipaddress.IPv4Interface, ...]:
        return tuple(a for a in self.addresses if isinstance(a, ipaddress.IPv4Interface))

    @property
    def ipv6(self) -> tuple[ipaddress.IPv6Interface, ...]:
        return tuple(a for a in self.addresses if isinstance(a, ipaddress.IPv6Interface))


@dataclasses.dataclass(frozen=True)
class Network:
    """Everything resetnetwork applies: the interfaces (sorted by name) and the host name (None: keep it)."""

    interfaces: tuple[Interface, ...]
    hostname: str | None = None

    @property
    def dns(self) -> tuple[IPAddress, ...]:
        """Every interface's name servers, first seen first, without repeats."""
        return tuple(dict.fromkeys(server for interface in self.interfaces for server in interface.dns))

    @property
    def gateway4(self) -> tuple[Interface, ipaddress.IPv4Address] | None:
        """The interface that carries the IPv4 default route, and its gateway (the first that has one)."""
        return next(((i, i.gateway4) for i in self.interfaces if i.gateway4 is not None), None)

    @property
    def gateway6(self) -> tuple[Interface, ipaddress.IPv6Address] | None:
        return next(((i, i.gateway6) for i in self.interfaces if i.gateway6 is not None), None)


def normal_mac(text: str) -> str:
    """A MAC in the form nova's keys and the kernel's files may take, as 12 lowercase hex digits."""
    return re.sub(r"[:\-.]", "", text.strip()).lower()


def colon_mac(mac12: str) -> str:
    return ":".join(mac12[i:i + 2] for i in range(0, 12, 2))


def system_interfaces(root: str | Path = "/") -> dict[str, str]:
    """The guest's interfaces by normalised MAC: ``{mac12: name}``, from ``<root>/sys/class/net/*/address``.
    Interfaces without a MAC of their own (loopback, all zeros) are left out."""
    found: dict[str, str] = {}
    base = Path(root or "/") / "sys/class/net"
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            mac = normal_mac((entry / "address").read_text())
        except OSError:
            continue
        if _MAC.fullmatch(mac) and mac != "0" * 12:
            found.setdefault(mac, entry.name)
    return found


def parse(entries: Mapping[str, Any], hostname: str | None, interfaces: Mapping[str, str]) -> Network:
    """The ``Network`` for nova's entries (``{key: JSON text or object}``, as read from
    ``vm-data/networking``), its host name (``vm-data/hostname``, None when absent) and the guest's
    interfaces (``{mac12: name}``, see ``system_interfaces``)."""
    parsed = [_interface(key, raw, interfaces) for key, raw in sorted(entries.items())]
    names = [i.name for i in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise NetworkDataError(f"network data names interface {repeated[0]} more than once")
    return Network(tuple(sorted(parsed, key=lambda i: i.name)), _hostname(hostname))


def _interface(key: str, raw: Any, interfaces: Mapping[str, str]) -> Interface:
    where = f"vm-data/networking/{key}"
    if isinstance(raw, bytes | str):
        try:
            raw = jsontext.loads(raw, MAX_DEPTH)
        except jsontext.TooDeep:
            raise NetworkDataError(f"{where} is nested too deeply to be network data") from None
        except ValueError:
            raise NetworkDataError(f"{where} is not JSON") from None
    if not isinstance(raw, dict):
        raise NetworkDataError(f"{where} is not a JSON object")
    mac_text = raw.get("mac")
    if not isinstance(mac_text, str) or not _MAC.fullmatch(normal_mac(mac_text)):
        raise NetworkDataError(f"{where} has no valid 'mac' (got {mac_text!r:.40})")
    mac = normal_mac(mac_text)
    name = interfaces.get(mac)
    if name is None:
        raise NetworkDataError(f"{where}: this guest has no interface with MAC {colon_mac(mac)}")
    label = raw.get("label", "")
    if not isinstance(label, str):
        raise NetworkDataError(f"{where}: 'label' must be a string")
    if not label.isprintable() or len(label) > 64:
        # Renderers quote the label in comments: a line break would start a configuration line of nova's making.
        raise NetworkDataError(f"{where}: 'label' must be one line of printable text, at most 64 characters")
    v4 = tuple(_address(where, item, 4) for item in _list(where, raw, "ips") if _enabled(item))
    v6 = tuple(_address(where, item, 6) for item in _list(where, raw, "ip6s") if _enabled(item))
    gateway4 = _optional_ip(where, raw, "gateway", 4)
    gateway6 = _optional_ip(where, raw, "gateway_v6", 6)
    routes = tuple(_route(where, item) for item in _list(where, raw, "routes"))
    dns = tuple(_ip(where, "dns", server) for server in _list(where, raw, "dns"))
    return Interface(name=name, mac=colon_mac(mac), label=label, addresses=(*v4, *v6),
                     gateway4=gateway4, gateway6=gateway6, routes=routes, dns=dns)


def _list(where: str, raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NetworkDataError(f"{where}: '{key}' must be a list")
    return value


def _enabled(item: Any) -> bool:
    # nova writes "1" for an enabled address; anything else (such as "0") is skipped.
    return not isinstance(item, dict) or str(item.get("enabled", "1")) == "1"


def _ip(where: str, key: str, value: Any, version: int | None = None) -> IPAddress:
    try:
        # No scope id ("fe80::1%eth0"): ipaddress takes any text after the "%", line breaks included, and the
        # renderers write the address as it is, so it could add lines of its own to a configuration file.
        text = value.strip() if isinstance(value, str) and "%" not in value else None
        address = None if text is None else ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or (version is not None and address.version != version):
        kind = f"an IPv{version} address" if version else "an IP address"
        raise NetworkDataError(f"{where}: '{key}' is not {kind} (got {value!r:.60})")
    return address


def _usable(where: str, key: str, address: IPAddress, what: str) -> None:
    """Refuse an address the guest could never use as ``what``; verification would only time out on it."""
    if address.is_loopback or address.is_multicast or address.is_unspecified or (
            what == "address" and address.is_link_local):
        raise NetworkDataError(f"{where}: '{key}' {address} cannot be an interface's {what} (it is a loopback, "
                               "multicast, unspecified or link-local address)")


def _optional_ip(where: str, raw: Mapping[str, Any], key: str, version: int) -> Any:
    value = raw.get(key)
    if value in (None, ""):
        return None
    gateway = _ip(where, key, value, version)
    _usable(where, key, gateway, "gateway")
    return gateway


def _address(where: str, item: Any, version: int) -> IPInterface:
    key = "ips" if version == 4 else "ip6s"
    if not isinstance(item, dict):
        raise NetworkDataError(f"{where}: each of '{key}' must be an object")
    address = _ip(where, f"{key}[].ip", item.get("ip"), version)
    _usable(where, f"{key}[].ip", address, "address")
    netmask = item.get("netmask")
    try:
        if version == 4:
            if not isinstance(netmask, str):
                raise ValueError
            interface: IPInterface = ipaddress.IPv4Interface(f"{address}/{netmask.strip()}")
        else:
            # int() would also take " +64" or digits of other scripts; nova writes a number or its ASCII digits.
            if isinstance(netmask, str) and re.fullmatch(r"[0-9]{1,3}", netmask.strip()):
                netmask = int(netmask)
            prefix = netmask if isinstance(netmask, int) and not isinstance(netmask, bool) else -1
            if not 0 <= prefix <= 128:
                raise ValueError
            interface = ipaddress.IPv6Interface(f"{address}/{prefix}")
    except ValueError:
        wanted = "a dotted netmask" if version == 4 else "a prefix length from 0 to 128"
        raise NetworkDataError(f"{where}: the netmask of {address} is not {wanted} (got {netmask!r:.40})") from None
    return interface


def _route(where: str, item: Any) -> Route:
    if not isinstance(item, dict):
        raise NetworkDataError(f"{where}: each of 'routes' must be an object")
    destination = _ip(where, "routes[].route", item.get("route"))
    gateway = _ip(where, "routes[].gateway", item.get("gateway"), destination.version)
    _usable(where, "routes[].gateway", gateway, "gateway")
    netmask = item.get("netmask")
    try:
        network = ipaddress.ip_network(f"{destination}/{str(netmask).strip()}", strict=False)
    except ValueError:
        raise NetworkDataError(f"{where}: the route to {destination} has no valid netmask "
                               f"(got {netmask!r:.40})") from None
    return Route(network, gateway)


def _hostname(text: str | None) -> str | None:
    if text is None:
        return None
    name = text.strip().rstrip(".")
    if not name:
        return None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise NetworkDataError(f"vm-data/hostname is not a valid host name (got {name!r:.80})")
    return name
