"""Ubuntu's netplan: one file, ``/etc/netplan/50-openstack-agent.yaml``.

netplan merges every file under ``/etc/netplan/`` in name order, so the agent's settings live in a file of
their own; a later file (``99-...``) can still override them. The file's mode is the resetnetwork machine's
business, not this renderer's: it must be 0600, since netplan (0.106 on) warns that a world-readable
configuration is "too open" (the files may hold Wi-Fi passwords), and future releases may refuse it.

Choices, with cloud-init's netplan renderer as the bar:

- Each interface is matched by ``match: macaddress:`` with ``set-name:``, so the configuration follows the
  NIC nova means even if the kernel's names change, and keeps the name the guest had when resetnetwork ran.
- Gateways are ``routes: - to: default, via:`` (``gateway4``/``gateway6`` are deprecated and warned about),
  only on the interface that carries the default route (``Network.gateway4``/``gateway6``, the first with a
  gateway): default routes on two interfaces make netplan warn about conflicting default routes and make the
  kernel's choice arbitrary. A gateway outside the interface's subnets gets ``on-link: true``, or networkd
  cannot install the route.
- Name servers are each interface's own ``nameservers: addresses:``, so systemd-resolved ties them to the
  link that reaches them.
- Addresses keep nova's order (the first is the primary one), routes keep nova's order after the defaults,
  interfaces are sorted by name (the model sorts them): the same network always gives the same bytes.

PyYAML is not a dependency, and the subset written here is tiny, so the YAML is written by hand: every
string is a double-quoted scalar (JSON's escaping is valid YAML), so no MAC is ever read as a sexagesimal
number and no name as a boolean.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from agent.network.model import Interface, IPAddress, IPNetwork, Network

NAME = "netplan"

PATH = "/etc/netplan/50-openstack-agent.yaml"

HEADER = ("# Written by openstack-agent resetnetwork from nova's network data (vm-data/networking).\n"
          "# It is replaced on every resetnetwork: change the instance's network in OpenStack instead.\n")


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """The agent's netplan file; ``current`` is not needed, as the file is the agent's alone."""
    lines = ["network:", "  version: 2"]
    if network.interfaces:
        lines.append("  ethernets:")
    for interface in network.interfaces:
        lines += _interface(interface, network)
    return {PATH: (HEADER + "\n" + "\n".join(lines) + "\n").encode()}


def _interface(interface: Interface, network: Network) -> list[str]:
    """One ``ethernets`` entry, indented under it."""
    lines = [f"    {_q(interface.name)}:", "      match:", f"        macaddress: {_q(interface.mac)}",
             f"      set-name: {_q(interface.name)}"]
    if interface.addresses:
        lines.append("      addresses:")
        lines += [f"        - {_q(address.with_prefixlen)}" for address in interface.addresses]
    networks = [address.network for address in interface.addresses]
    routes: list[tuple[str, IPAddress]] = []
    for default in (network.gateway4, network.gateway6):
        if default is not None and default[0] is interface:
            routes.append(("default", default[1]))
    routes += [(route.destination.with_prefixlen, route.gateway) for route in interface.routes]
    if routes:
        lines.append("      routes:")
        for destination, via in routes:
            lines += [f"        - to: {_q(destination)}", f"          via: {_q(str(via))}"]
            if not _on_link(via, networks):
                lines.append("          on-link: true")
    if interface.dns:
        lines += ["      nameservers:", "        addresses:"]
        lines += [f"          - {_q(str(server))}" for server in interface.dns]
    return lines


def _on_link(gateway: IPAddress, networks: list[IPNetwork]) -> bool:
    """Whether ``gateway`` is reached directly through one of the interface's own subnets."""
    return gateway.is_link_local or any(gateway in network for network in networks)


def _q(text: str) -> str:
    """A YAML double-quoted scalar: JSON's string syntax is a subset of it."""
    return json.dumps(text)
