"""FreeBSD: the network settings in ``/etc/rc.conf`` (rc.conf(5)).

``/etc/rc.conf`` holds the whole system's settings (services, dump device, keymap...), so this renderer edits
only the variables it owns and keeps every other line byte for byte. The file is sh: rc(8) sources it, so a
line is found by the variable it assigns, values are double-quoted, and a quoted value running over several
lines is one setting (so nothing inside another setting's value is mistaken for one of the agent's).

The variables it owns (``owned``): for each interface nova names, ``ifconfig_<if>``, ``ifconfig_<if>_ipv6``,
``ifconfig_<if>_alias<n>``, ``ifconfig_<if>_aliases`` and the deprecated ``ipv6_ifconfig_<if>[_alias<n>]``
(an earlier setting in any of them would add an address nova no longer gives); ``defaultrouter`` and
``ipv6_defaultrouter`` (global: one left from an earlier network would route through an address the guest
no longer has); ``route_agent_*`` and ``ipv6_route_agent_*`` (the agent's static routes, named
``agent_<if>_<n>`` so they cannot be told apart from nobody's); and ``hostname`` when nova gives one.
``static_routes`` and ``ipv6_static_routes`` are shared: the names the agent did not give are kept, in their
order, before the agent's. An interface nova does not name is left alone.

A variable it sets that is present is rewritten where it is (at its last assignment, the one sh keeps; the
earlier ones are removed); one that is new goes at the end, under the managed-by comment. A variable it owns
that no longer applies (``ifconfig_<if>_alias1`` once the second address is gone) is removed. A trailing
comment on a line the agent rewrites is lost with it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable

from agent.network.model import Interface, Network, Route

NAME = "freebsd"

RC_CONF = "/etc/rc.conf"
#: Put once above the variables the agent adds, so a reader knows who writes them.
HEADER = "# openstack-agent (resetnetwork) sets the network variables below and rewrites them on each reset."

_ASSIGNMENT = re.compile(rb"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
#: The characters rc.subr's ``ltr`` turns into ``_`` when it makes a variable name from an interface's.
_NOT_IN_NAMES = re.compile(r"[.\-/+]")
#: The agent's own static route names.
_AGENT_ROUTE = re.compile(r"agent_[A-Za-z0-9_]+")


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """``/etc/rc.conf`` with the network's settings, edited from the present file."""
    present = current(RC_CONF) or b""
    return {RC_CONF: edit(present, settings(network, present), owned(network))}


def variable(interface: Interface) -> str:
    """The interface's name as rc.conf's variables spell it (``ltr`` in network.subr: ``.-/+`` become ``_``)."""
    return _NOT_IN_NAMES.sub("_", interface.name)


def owned(network: Network) -> Callable[[str], bool]:
    """Whether a variable is one this renderer sets or removes for ``network``."""
    names = "|".join(re.escape(variable(i)) for i in network.interfaces)
    per_interface = (re.compile(rf"(?:ipv6_)?ifconfig_(?:{names})(?:_ipv6|_alias[0-9]+|_aliases)?")
                     if names else None)
    fixed = {"defaultrouter", "ipv6_defaultrouter", "static_routes", "ipv6_static_routes"}
    if network.hostname is not None:
        fixed.add("hostname")
    routes = re.compile(rf"(?:ipv6_)?route_{_AGENT_ROUTE.pattern}")

    def test(name: str) -> bool:
        return (name in fixed or routes.fullmatch(name) is not None
                or (per_interface is not None and per_interface.fullmatch(name) is not None))
    return test


def settings(network: Network, present: bytes) -> dict[str, str]:
    """The variables to set, in the order new ones are added; every other owned variable is removed."""
    values: dict[str, str] = {}
    if network.hostname is not None:
        values["hostname"] = network.hostname
    for interface in network.interfaces:
        values.update(_interface(interface))
    if network.gateway4 is not None:
        values["defaultrouter"] = str(network.gateway4[1])
    if network.gateway6 is not None:
        values["ipv6_defaultrouter"] = str(network.gateway6[1])
    for family, prefix in ((4, ""), (6, "ipv6_")):
        ours = {f"agent_{variable(i)}_{n}": route for i in network.interfaces
                for n, route in enumerate(r for r in i.routes if r.destination.version == family)}
        kept = [name for name in _value(present, f"{prefix}static_routes").split()
                if not _AGENT_ROUTE.fullmatch(name)]
        if kept or ours:
            values[f"{prefix}static_routes"] = " ".join([*kept, *ours])
        for name, route in ours.items():
            values[f"{prefix}route_{name}"] = _route(route)
    return values


def _interface(interface: Interface) -> dict[str, str]:
    values: dict[str, str] = {}
    ifvar = variable(interface)
    aliases: list[str] = []
    for index, address in enumerate(interface.ipv4):
        # The handbook's rule: an alias in a subnet the interface already has takes an all-ones netmask.
        same = any(address.ip in earlier.network for earlier in interface.ipv4[:index])
        mask = ipaddress.IPv4Address(0xFFFFFFFF) if same else address.network.netmask
        text = f"inet {address.ip} netmask {mask}"
        if index == 0:
            values[f"ifconfig_{ifvar}"] = text
        else:
            aliases.append(text)
    for index, address6 in enumerate(interface.ipv6):
        text = f"inet6 {address6.ip} prefixlen {address6.network.prefixlen}"
        if index == 0:
            values[f"ifconfig_{ifvar}_ipv6"] = text
        else:
            aliases.append(text)
    # network.subr reads alias0, alias1... and stops at the first missing number, so they count up from 0.
    for index, text in enumerate(aliases):
        values[f"ifconfig_{ifvar}_alias{index}"] = text
    return values


def _route(route: Route) -> str:
    """A route's value as rc.d/routing passes it to route(8): rc.conf(5)'s forms for each family."""
    if route.destination.version == 4:
        return f"-net {route.destination.with_prefixlen} {route.gateway}"
    return f"{route.destination.network_address} -prefixlen {route.destination.prefixlen} {route.gateway}"


def edit(present: bytes, values: dict[str, str], is_owned: Callable[[str], bool]) -> bytes:
    """``present`` with each of ``values`` set and every other owned variable removed; lines that assign no
    owned variable are kept byte for byte."""
    pieces = logical_lines(present)
    last = {name: index for index, (name, _) in enumerate(pieces) if name is not None}
    out: list[bytes] = []
    written: set[str] = set()
    for index, (name, chunk) in enumerate(pieces):
        if name is None or not is_owned(name):
            out.append(chunk)
        elif name in values and last[name] == index:
            out.append(assignment(name, values[name]) + (b"\n" if chunk.endswith(b"\n") else b""))
            written.add(name)
    if out and not out[-1].endswith(b"\n"):
        out[-1] += b"\n"
    new = [assignment(name, value) + b"\n" for name, value in values.items() if name not in written]
    if new and HEADER.encode() + b"\n" not in out:
        new.insert(0, HEADER.encode() + b"\n")
    return b"".join(out + new)


def assignment(name: str, value: str) -> bytes:
    """``name="value"`` with what is special inside sh's double quotes escaped, so sourcing it gives back
    ``value`` exactly."""
    escaped = re.sub(r'(["$`\\])', r"\\\1", value)
    return f'{name}="{escaped}"'.encode()


def logical_lines(text: bytes) -> list[tuple[str | None, bytes]]:
    """``text`` cut into sh's logical lines (a quoted value or a backslash-newline carries a line on), each
    with the variable it assigns first (None for a comment, a blank or any other command). Joined back, the
    pieces are ``text`` byte for byte."""
    pieces: list[tuple[str | None, bytes]] = []
    start = 0
    quote: int | None = None
    index = 0
    at_word = True
    while index < len(text):
        char = text[index]
        if quote == ord("'"):
            quote = None if char == quote else quote
        elif quote == ord('"'):
            if char == ord("\\"):
                index += 1
            elif char == quote:
                quote = None
        elif char == ord("\\"):
            index += 1
        elif char in (ord("'"), ord('"')):
            quote = char
        elif char == ord("#") and at_word:
            end = text.find(b"\n", index)
            index = len(text) - 1 if end < 0 else end - 1
        elif char == ord("\n"):
            pieces.append(_piece(text[start:index + 1]))
            start = index + 1
        at_word = char in b" \t\n;"
        index += 1
    if start < len(text):
        pieces.append(_piece(text[start:]))
    return pieces


def _piece(chunk: bytes) -> tuple[str | None, bytes]:
    match = _ASSIGNMENT.match(chunk)
    return (match.group(1).decode() if match else None), chunk


def _value(present: bytes, name: str) -> str:
    """The text of ``name``'s last assignment in ``present`` as sh would read it (without expansions), or ''."""
    found = ""
    for variable_name, chunk in logical_lines(present):
        if variable_name == name:
            raw = chunk.decode("utf-8", "surrogateescape").split("=", 1)[1]
            try:
                words = shlex.split(raw, comments=True)
            except ValueError:
                words = raw.split()
            found = words[0] if words else ""
    return found
