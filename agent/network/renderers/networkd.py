"""systemd-networkd: one ``.network`` file per interface under ``/etc/systemd/network/``.

Each interface nova configures gets ``/etc/systemd/network/50-openstack-agent-<if>.network``, so a
resetnetwork replaces files of its own and never edits the administrator's. networkd applies the first file,
in lexical order across its directories, whose ``[Match]`` fits a link and ignores the rest; ``50-`` is below
the 70 that systemd.network(5) asks for, so the agent's file beats catch-all defaults such as
``80-container-*`` and ``99-default``. (netplan's generated ``10-netplan-*`` would still win: a guest that uses
netplan gets the netplan renderer instead.)

Choices, with cloud-init's ``networkd`` renderer and systemd.network(5) (systemd 252, Debian 12) as the bar:

- ``[Match]`` is the MAC only (``MACAddress=``), not the name: the model already matched nova's entry to the
  guest's interface by MAC, and a name can change under the file (Xen's vifs became ``enX0`` where they were
  ``eth0`` when systemd 253 named them), after which a ``Name=`` match would leave the interface unconfigured.
- Every enabled address is an ``Address=`` in ``[Network]``, in nova's order (IPv4 first).
- The default route of each family goes only on the interface that carries it (``Network.gateway4`` and
  ``gateway6``, the first interface with a gateway): a second default route on another interface would compete
  with it. An on-link gateway is ``Gateway=`` in ``[Network]``; a gateway outside the interface's subnets is a
  ``[Route]`` with ``GatewayOnLink=yes``, without which networkd cannot install it (the kernel refuses a
  gateway it cannot reach directly).
- Name servers are ``DNS=`` on the interface nova gives them for: networkd hands them to systemd-resolved per
  link, so they go away with the link. Where resolved is not running the resetnetwork machine writes
  ``/etc/resolv.conf`` itself.
- Static routes are ``[Route]`` sections (``Destination=``, ``Gateway=``), with ``GatewayOnLink=yes`` when the
  gateway is off-link, as above.
- Nothing else is set (DHCP stays off, networkd's default; IPv6 router advertisements keep networkd's
  default, as cloud-init leaves them), so the file says exactly what nova said.

The output depends only on the network: interfaces come sorted by name, addresses, routes and servers in
nova's order. ``current`` is not read: every file written is the agent's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agent.network.model import Interface, IPAddress, IPNetwork, Network

NAME = "networkd"

DIRECTORY = "/etc/systemd/network"

HEADER = ("# Written by openstack-agent resetnetwork from nova's network data (vm-data/networking).\n"
          "# It is replaced on every resetnetwork: change the instance's network in OpenStack instead.\n")


def path(interface: Interface) -> str:
    """Where the file for ``interface`` goes."""
    return f"{DIRECTORY}/50-openstack-agent-{interface.name}.network"


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """One ``.network`` file per interface, keyed by its path in the guest."""
    return {path(interface): _file(interface, network).encode() for interface in network.interfaces}


def _file(interface: Interface, network: Network) -> str:
    label = f" ({interface.label})" if interface.label else ""
    lines = [HEADER.rstrip("\n"), f"# {interface.name}{label}", "",
             "[Match]", f"MACAddress={interface.mac}", "",
             "[Network]"]
    lines += [f"Address={address}" for address in interface.addresses]
    routes: list[tuple[IPNetwork | None, IPAddress]] = []
    for default in (network.gateway4, network.gateway6):
        if default is None or default[0] is not interface:
            continue
        gateway = default[1]
        if _on_link(gateway, interface):
            lines.append(f"Gateway={gateway}")
        else:
            routes.append((None, gateway))
    lines += [f"DNS={server}" for server in interface.dns]
    routes += [(route.destination, route.gateway) for route in interface.routes]
    for destination, gateway in routes:
        lines += ["", "[Route]"]
        if destination is not None:
            lines.append(f"Destination={destination}")
        lines.append(f"Gateway={gateway}")
        if not _on_link(gateway, interface):
            lines.append("GatewayOnLink=yes")
    return "\n".join(lines) + "\n"


def _on_link(gateway: IPAddress, interface: Interface) -> bool:
    """Whether ``gateway`` is inside one of the interface's own subnets, so the kernel reaches it directly."""
    networks: Iterable[IPNetwork] = (address.network for address in interface.addresses)
    return any(gateway.version == subnet.version and gateway in subnet for subnet in networks)
