"""NetworkManager: one keyfile connection profile per interface.

Each interface nova configures gets
``/etc/NetworkManager/system-connections/openstack-agent-<if>.nmconnection``, in the keyfile format of
nm-settings-keyfile(5) as NetworkManager 1.42 (Debian 12) reads it. The resetnetwork machine must write these
files mode 0600, owned by root: the keyfile plugin ignores a file that anyone but root can read or write,
since profiles may hold secrets, and the interface would silently stay unconfigured.

Choices, with cloud-init's ``network_manager`` renderer and nm-settings-keyfile(5) as the bar:

- ``[connection] uuid`` is a UUID 5 of the interface's MAC, so rendering the same network again gives the same
  bytes and NetworkManager sees the same profile updated rather than a new one beside the old (cloud-init
  derives its UUID from the interface name the same way).
- The profile is bound to the interface by ``[ethernet] mac-address`` only, with no ``interface-name``, as
  cloud-init does for an interface with a MAC: the model matched nova's entry by MAC, and a profile bound to
  both stops matching when the name changes (Xen's vifs became ``enX0`` where they were ``eth0`` when
  systemd 253 named them). The MAC is upper case, as NetworkManager writes it.
- ``autoconnect-priority=130`` is above the 0 of NetworkManager's automatic "Wired connection" profiles and the
  120 of cloud-init's, so the profile nova's latest resetnetwork gave wins when NetworkManager chooses a
  profile for the interface.
- Addresses are ``address1=<ip>/<prefix>``, ``address2=`` and so on with the default route as a separate
  ``gateway=``, as nm-settings-keyfile(5) of 1.42 documents it and cloud-init writes it. NetworkManager 1.42
  reads ``address1=<cidr>,<gateway>`` as the same thing (its own writer folds the gateway in that way), but a
  separate key says plainly which gateway is the default route, whichever address comes first. The default
  route of each family goes only on the interface that carries it
  (``Network.gateway4`` and ``gateway6``): a second default route on another interface would compete with it.
  A gateway outside the interface's subnets is instead a ``0.0.0.0/0`` (``::/0``) route with ``onlink=true``,
  because NetworkManager cannot install an unreachable ``gateway=``.
- Static routes are ``route1=<destination>/<prefix>,<gateway>`` in the section of their family, with
  ``route1_options=onlink=true`` when the gateway is off-link.
- A family the interface has no address of is ``method=disabled``, which is what cloud-init writes for a
  family it has no subnet for. Leaving the section out would mean NetworkManager's default ``auto`` (SLAAC and
  DHCPv6, DHCP for IPv4), adding addresses nova did not assign; ``ignore`` would leave the kernel's own IPv6
  autoconfiguration running, with the same effect.
- Name servers are ``dns=<a>;<b>;`` in the section of their family. NetworkManager refuses ``dns`` in a
  ``disabled`` section, so a server of a family the interface has no address of (an IPv6 server nova lists for
  an IPv4-only interface) goes to the interface that carries that family's default route, or else the first
  that has an address of that family; with none it is left out, as nothing could reach it.

The output depends only on the network: interfaces come sorted by name, addresses, routes and servers in
nova's order. ``current`` is not read: every file written is the agent's own.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable

from agent.network.model import Interface, IPAddress, IPNetwork, Network

NAME = "networkmanager"

DIRECTORY = "/etc/NetworkManager/system-connections"

#: The mode the resetnetwork machine must give these files (NetworkManager ignores any other).
MODE = 0o600

#: The namespace of the profiles' UUIDs: fixed, so one MAC always gives one UUID.
UUID_NAMESPACE = uuid.UUID("5b0f4a3e-6f2d-4c1e-9a57-0e8d3c2b7a10")

AUTOCONNECT_PRIORITY = 130

HEADER = ("# Written by openstack-agent resetnetwork from nova's network data (vm-data/networking).\n"
          "# It is replaced on every resetnetwork: change the instance's network in OpenStack instead.\n")


def path(interface: Interface) -> str:
    """Where the profile for ``interface`` goes."""
    return f"{DIRECTORY}/openstack-agent-{interface.name}.nmconnection"


def connection_uuid(interface: Interface) -> uuid.UUID:
    """The profile's UUID: the same for the same MAC, whatever else changes."""
    return uuid.uuid5(UUID_NAMESPACE, interface.mac.lower())


def render(network: Network, current: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """One keyfile per interface, keyed by its path in the guest."""
    servers = _name_servers(network)
    return {path(interface): _file(interface, network, servers[interface.name]).encode()
            for interface in network.interfaces}


def _file(interface: Interface, network: Network, servers: list[IPAddress]) -> str:
    label = f" ({interface.label})" if interface.label else ""
    lines = [HEADER.rstrip("\n"), f"# {interface.name}{label}", "",
             "[connection]",
             f"id=openstack-agent {interface.name}",
             f"uuid={connection_uuid(interface)}",
             "type=ethernet",
             f"autoconnect-priority={AUTOCONNECT_PRIORITY}",
             "",
             "[ethernet]",
             f"mac-address={interface.mac.upper()}"]
    defaults = {4: network.gateway4, 6: network.gateway6}
    for version in (4, 6):
        default = defaults[version]
        gateway = default[1] if default is not None and default[0] is interface else None
        lines += ["", f"[ipv{version}]", *_family(interface, version, gateway, servers)]
    return "\n".join(lines) + "\n"


def _family(interface: Interface, version: int, gateway: IPAddress | None,
            servers: list[IPAddress]) -> list[str]:
    """The ``[ipv4]`` or ``[ipv6]`` section's lines after its header."""
    addresses = interface.ipv4 if version == 4 else interface.ipv6
    if not addresses:
        return ["method=disabled"]
    lines = ["method=manual"]
    lines += [f"address{n}={address}" for n, address in enumerate(addresses, 1)]
    routes: list[tuple[IPNetwork, IPAddress]] = []
    if gateway is not None:
        if _on_link(gateway, interface):
            lines.append(f"gateway={gateway}")
        else:
            routes.append((ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0"), gateway))
    family_servers = [server for server in servers if server.version == version]
    if family_servers:
        lines.append("dns=" + "".join(f"{server};" for server in family_servers))
    routes += [(route.destination, route.gateway) for route in interface.routes
               if route.destination.version == version]
    for n, (destination, via) in enumerate(routes, 1):
        lines.append(f"route{n}={destination},{via}")
        if not _on_link(via, interface):
            lines.append(f"route{n}_options=onlink=true")
    return lines


def _name_servers(network: Network) -> dict[str, list[IPAddress]]:
    """Each interface's name servers: its own of the families it has addresses of, then those moved to it
    from interfaces that lack that family (see the module's docstring)."""
    servers: dict[str, list[IPAddress]] = {interface.name: [] for interface in network.interfaces}
    for interface in network.interfaces:
        for server in interface.dns:
            home = _home(server.version, interface, network)
            if home is not None and server not in servers[home.name]:
                servers[home.name].append(server)
    return servers


def _home(version: int, interface: Interface, network: Network) -> Interface | None:
    """The interface whose profile can carry a name server of ``version`` that ``interface`` lists."""
    if interface.ipv4 if version == 4 else interface.ipv6:
        return interface
    default = network.gateway4 if version == 4 else network.gateway6
    candidates = ([default[0]] if default is not None else []) + list(network.interfaces)
    return next((i for i in candidates if (i.ipv4 if version == 4 else i.ipv6)), None)


def _on_link(gateway: IPAddress, interface: Interface) -> bool:
    """Whether ``gateway`` is inside one of the interface's own subnets, so the kernel reaches it directly."""
    return any(gateway.version == address.version and gateway in address.network for address in interface.addresses)
