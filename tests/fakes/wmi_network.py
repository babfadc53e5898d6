"""A stand-in for Windows' network configuration as ``agent.platform.windows_network`` reaches it: WMI's
``Win32_NetworkAdapterConfiguration`` through pywin32's COM client, ``netsh``, ``ping`` and the computer name.

``FakeWindowsNet`` holds the adapters' state; ``modules()`` is what the port imports (``pythoncom``,
``pywintypes``, ``win32com.client``, ``win32api``, ``win32con``, ``winreg``, and ``kernel32`` for
``SetComputerNameExW``) and ``run`` its tool runner. What it follows of the real API (the WMI class's
documentation, pywin32, the scripting API as ``tests/fakes/xeniface.py`` models it):

- ``ConnectServer(".", "root\\cimv2").ExecQuery(...)`` lists the IP-enabled adapters as SWbemObjects whose
  properties are a snapshot taken by the query (a method call does not refresh them); ``MACAddress`` in upper
  case with colons; ``IPAddress``/``IPSubnet``/``DefaultIPGateway``/``DNSServerSearchOrder`` tuples, or None when
  empty; IPv6 addresses with their prefix length as the subnet, and a link-local address always there.
- ``EnableStatic`` checks its addresses (70) and masks (66), turns DHCP off and replaces the IPv4 addresses;
  ``SetGateways`` checks the gateways (71) and replaces them; ``SetDNSServerSearchOrder`` without parameters goes
  back to DHCP's servers; ``EnableDHCP`` takes a lease and leaves the static gateways, as the documentation says.
  Each returns ``ReturnValue``. ``fail[method] = code`` makes the next call of a method return ``code``.
- ``netsh interface ipv4|ipv6 add|delete address|route``, exit status 1 with a message for a missing element
  or one that exists; ``set route`` changes an existing route, default ones included, and leaves it in place
  (1, "Element not found.", for a missing one); a route's prefix of the other family is "The parameter is
  incorrect."; the default routes (``0.0.0.0/0``, ``::/0``) are the adapter's gateways, any other prefix one of
  its ``routes``. ``refuse`` holds prefixes whose ``add route`` fails (1) as a route Windows cannot take does.
- ``netsh interface ipv6 set dnsservers name=<index> source=static address=<ip>`` replaces the IPv6 name servers
  with one, ``source=dhcp`` empties them (no DHCPv6 here), ``add dnsservers ... index=<n>`` inserts one at
  position n (1, "The object is already in the list.", for one there already); WMI's ``DNSServerSearchOrder``
  never lists them, as it lists IPv4 servers only.
- ``ping -n 1 -w 1000 ip`` answers (with ``TTL=``) for the addresses in ``reachable``.
- ``SetComputerNameExW(5, name)`` sets the name the next boot takes, which ``winreg`` reads as the value ``NV
  Hostname`` of ``HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters`` (``OpenKey`` a context manager,
  ``QueryValueEx`` returning ``(value, REG_SZ)``, ``FileNotFoundError`` for a missing value, ``OSError`` for
  others; ``registry_error`` sets the error a read raises: ``FileNotFoundError`` where no rename ever wrote the
  value); ``GetComputerNameEx(5)`` is the running one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import threading
import types
from collections.abc import Sequence
from typing import Any

from tests.fakes.xeniface import _Apartments, _Com, _InParameters, _Instance, com_error

ERROR_INVALID_PARAMETER = 87
HKEY_LOCAL_MACHINE = 0x80000002
REG_SZ = 1
TCPIP_PARAMETERS = "SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters"
COMPUTER_NAME_PHYSICAL_DNS_HOSTNAME = 5
METHODS = {"EnableStatic": ("IPAddress", "SubnetMask"), "SetGateways": ("DefaultIPGateway", "GatewayCostMetric"),
           "SetDNSServerSearchOrder": ("DNSServerSearchOrder",), "EnableDHCP": ()}


class error(Exception):
    """``pywintypes.error(winerror, funcname, strerror)``."""

    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


@dataclasses.dataclass
class Adapter:
    mac: str
    index: int
    dhcp: bool = True
    ipv4: list[str] = dataclasses.field(default_factory=list)
    gateways: list[str] = dataclasses.field(default_factory=list)
    dns: list[str] = dataclasses.field(default_factory=list)
    ipv6: list[str] = dataclasses.field(default_factory=list)
    gateway6: list[str] = dataclasses.field(default_factory=list)
    #: Static routes other than the default ones, as (prefix, next hop), and the IPv6 name servers.
    routes: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    dns6: list[str] = dataclasses.field(default_factory=list)
    #: What DHCP gives this adapter: address/prefix, gateway, name server.
    lease: tuple[str, str, str] = ("192.0.2.50/24", "192.0.2.1", "192.0.2.53")

    def __post_init__(self) -> None:
        if self.dhcp:
            self.take_lease()

    def take_lease(self) -> None:
        address, gateway, server = self.lease
        self.ipv4 = [address]
        self.gateways = list(dict.fromkeys([*self.gateways, gateway]))
        self.dns = [server]

    def values(self) -> dict[str, Any]:
        v4 = [ipaddress.IPv4Interface(a) for a in self.ipv4]
        v6 = [ipaddress.IPv6Interface(a) for a in [*self.ipv6, f"fe80::{self.index}/64"]]
        addresses = [str(a.ip) for a in v4] + [str(a.ip) for a in v6]
        subnets = [str(a.netmask) for a in v4] + [str(a.network.prefixlen) for a in v6]
        gateways = self.gateways + self.gateway6
        return {"MACAddress": self.mac.upper(), "InterfaceIndex": self.index, "DHCPEnabled": self.dhcp,
                "IPEnabled": True, "IPAddress": tuple(addresses) or None, "IPSubnet": tuple(subnets) or None,
                "DefaultIPGateway": tuple(gateways) or None, "DNSServerSearchOrder": tuple(self.dns) or None}


class _AdapterObject(_Instance):
    METHODS = {name: (parameters or None, ("ReturnValue",)) for name, parameters in METHODS.items()}

    def __init__(self, net: FakeWindowsNet, adapter: Adapter) -> None:
        super().__init__(adapter.values())
        self._net, self._adapter = net, adapter

    def Methods_(self, name: str) -> Any:
        self._check()
        definition = super().Methods_(name)
        if METHODS.get(name):
            definition.InParameters = _InParameters(METHODS[name])
        return definition

    def ExecMethod_(self, name: str, parameters: Any = None) -> Any:
        # Every in-parameter of these methods is optional: one not given is NULL.
        self._check()
        if name not in METHODS:
            return super().ExecMethod_(name, parameters)
        given = {key: item.Value for key, item in parameters.Properties_._items.items()} if parameters else {}
        self._net.calls.append((name, self._adapter.mac, given))
        code = self._net.fail.pop(name, None)
        if code is None:
            with self._net.lock:
                code = self._net.method(self._adapter, name, given)
        return _Instance({"ReturnValue": code})


def _valid(text: Any, version: int) -> bool:
    try:
        return isinstance(text, str) and ipaddress.ip_address(text).version == version
    except ValueError:
        return False


class FakeWindowsNet:
    """Adapters, the tools and the computer name of a Windows guest."""

    def __init__(self, adapters: Sequence[Adapter], hostname: str = "WIN-OLD") -> None:
        self.adapters = {a.mac.lower(): a for a in adapters}
        self.running_name = hostname
        self.next_boot_name = hostname
        self.reachable: set[str] = set()
        self.fail: dict[str, int] = {}
        self.refuse: set[str] = set()
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.commands: list[list[str]] = []
        self.lock = threading.Lock()
        self.apartments = _Apartments()
        self._last_error = 0
        #: What reading the pending name raises (None: it is read).
        self.registry_error: OSError | None = None

    # -- the modules the port imports ---------------------------------------------------------------------

    def modules(self) -> dict[str, Any]:
        return {
            "pythoncom": self.apartments,
            "pywintypes": types.SimpleNamespace(com_error=com_error, error=error),
            "win32com.client": types.SimpleNamespace(Dispatch=self._dispatch),
            "win32api": types.SimpleNamespace(GetComputerNameEx=self._get_name),
            "win32con": types.SimpleNamespace(ComputerNamePhysicalDnsHostname=COMPUTER_NAME_PHYSICAL_DNS_HOSTNAME),
            "winreg": types.SimpleNamespace(HKEY_LOCAL_MACHINE=HKEY_LOCAL_MACHINE, OpenKey=self._open_key,
                                            QueryValueEx=self._query_value),
            "kernel32": types.SimpleNamespace(SetComputerNameExW=self._set_name,
                                              get_last_error=lambda: self._last_error),
        }

    def _dispatch(self, progid: str) -> Any:
        if progid != "WbemScripting.SWbemLocator":
            raise com_error(-2147221005, "Invalid class string", None, None)
        if not self.apartments.initialized():
            raise com_error(-2147221008, "CoInitialize has not been called.", None, None)
        net = self

        class Services(_Com):
            def ExecQuery(self, wql: str) -> list[Any]:
                self._check()
                assert "Win32_NetworkAdapterConfiguration" in wql and "IPEnabled = TRUE" in wql, wql
                with net.lock:
                    return [_AdapterObject(net, adapter) for adapter in net.adapters.values()]

        class Locator(_Com):
            def ConnectServer(self, server: str, namespace: str) -> Services:
                self._check()
                assert (server, namespace) == (".", "root\\cimv2")
                return Services()

        return Locator()

    def _get_name(self, kind: int) -> str:
        if kind != COMPUTER_NAME_PHYSICAL_DNS_HOSTNAME:
            raise error(ERROR_INVALID_PARAMETER, "GetComputerNameEx", "The parameter is incorrect.")
        return self.running_name

    def _open_key(self, key: int, sub_key: str) -> contextlib.AbstractContextManager[str]:
        assert (key, sub_key.lower()) == (HKEY_LOCAL_MACHINE, TCPIP_PARAMETERS.lower()), sub_key
        return contextlib.nullcontext(sub_key)

    def _query_value(self, key: str, name: str) -> tuple[str, int]:
        if self.registry_error is not None:
            raise self.registry_error
        if name.lower() != "nv hostname":
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return self.next_boot_name, REG_SZ

    def _set_name(self, kind: int, name: str) -> int:
        if kind != COMPUTER_NAME_PHYSICAL_DNS_HOSTNAME or not name or len(name) > 63 or any(
                c in name for c in ' "/\\[]:|<>+=;,?'):
            self._last_error = ERROR_INVALID_PARAMETER
            return 0
        self.next_boot_name = name
        return 1

    def reboot(self) -> None:
        self.running_name = self.next_boot_name

    # -- WMI methods --------------------------------------------------------------------------------------

    def method(self, adapter: Adapter, name: str, given: dict[str, Any]) -> int:
        if name == "EnableStatic":
            addresses, masks = list(given.get("IPAddress") or []), list(given.get("SubnetMask") or [])
            if not addresses or not all(_valid(a, 4) for a in addresses):
                return 70
            if len(masks) != len(addresses):
                return 66
            try:
                interfaces = [str(ipaddress.IPv4Interface(f"{a}/{m}")) for a, m in zip(addresses, masks, strict=True)]
            except ValueError:
                return 66
            if adapter.dhcp:  # the gateway DHCP gave goes with DHCP
                adapter.gateways = [g for g in adapter.gateways if g != adapter.lease[1]]
            adapter.dhcp, adapter.ipv4 = False, interfaces
            return 0
        if name == "SetGateways":
            gateways = list(given.get("DefaultIPGateway") or [])
            if len(gateways) > 5:
                return 69
            if not all(_valid(g, 4) for g in gateways):
                return 71
            adapter.gateways = gateways
            return 0
        if name == "SetDNSServerSearchOrder":
            servers = given.get("DNSServerSearchOrder")
            if servers is None:
                adapter.dns = [adapter.lease[2]] if adapter.dhcp else []
                return 0
            if not all(_valid(s, 4) for s in servers):
                return 70
            adapter.dns = list(servers)
            return 0
        adapter.dhcp = True  # EnableDHCP: the static gateways stay
        adapter.take_lease()
        return 0

    # -- netsh and ping -----------------------------------------------------------------------------------

    def run(self, argv: Sequence[str]) -> tuple[int, str]:
        argv = list(argv)
        self.commands.append(argv)
        if argv[0] == "ping":
            assert argv[1:5] == ["-n", "1", "-w", "1000"], argv
            target = argv[5]
            if target in self.reachable:
                return 0, f"Reply from {target}: bytes=32 time<1ms TTL=64\r\n"
            return 1, "Request timed out.\r\n"
        assert argv[:2] == ["netsh", "interface"], argv
        family, verb, noun = argv[2:5]
        options = dict(arg.split("=", 1) for arg in argv[5:])
        with self.lock:
            index = options.get("name" if noun == "dnsservers" else "interface")
            adapter = next((a for a in self.adapters.values() if str(a.index) == index), None)
            if adapter is None:
                return 1, "The filename, directory name, or volume label syntax is incorrect.\r\n"
            if noun == "dnsservers":
                return self._dnsservers(adapter, family, verb, options)
            if noun == "route" and options["prefix"] not in ("0.0.0.0/0", "::/0"):
                return self._route(adapter, family, verb, options)
            if noun == "address":
                items, value = adapter.ipv6, options["address"]
                if verb == "delete":
                    value = next((a for a in items if a.split("/")[0] == value), value)
            else:
                items = adapter.gateway6 if family == "ipv6" else adapter.gateways
                value = options["nexthop"]
            if verb == "add":
                if value in items:
                    return 1, "The object already exists.\r\n"
                items.append(value)
            elif verb == "set":  # changes a route's settings: one that exists stays, a missing one is not found
                if value not in items:
                    return 1, "Element not found.\r\n"
            elif value in items:
                items.remove(value)
            else:
                return 1, "Element not found.\r\n"
        return 0, "Ok.\r\n"


    def _route(self, adapter: Adapter, family: str, verb: str, options: dict[str, str]) -> tuple[int, str]:
        try:
            prefix = ipaddress.ip_network(options["prefix"])
            nexthop = ipaddress.ip_address(options["nexthop"])
        except ValueError:
            return 1, "The parameter is incorrect.\r\n"
        if f"ipv{prefix.version}" != family or nexthop.version != prefix.version:
            return 1, "The parameter is incorrect.\r\n"
        assert verb == "delete" or options.get("store") == "persistent", options
        route = (str(prefix), str(nexthop))
        if verb == "add":
            if str(prefix) in self.refuse:
                return 1, "The parameter is incorrect.\r\n"
            if route in adapter.routes:
                return 1, "The object already exists.\r\n"
            adapter.routes.append(route)
        elif route not in adapter.routes:
            return 1, "Element not found.\r\n"
        elif verb == "delete":
            adapter.routes.remove(route)
        return 0, "Ok.\r\n"

    @staticmethod
    def _dnsservers(adapter: Adapter, family: str, verb: str, options: dict[str, str]) -> tuple[int, str]:
        assert family == "ipv6" and options.get("validate", "no") == "no", options
        if verb == "set" and options.get("source") == "dhcp":
            adapter.dns6 = []
            return 0, "Ok.\r\n"
        if not _valid(options.get("address"), 6):
            return 1, "The parameter is incorrect.\r\n"
        server = options["address"]
        if verb == "set":
            assert options.get("source") == "static" and options.get("register") == "none", options
            adapter.dns6 = [server]
        elif server in adapter.dns6:
            return 1, "The object is already in the list.\r\n"
        else:
            adapter.dns6.insert(int(options.get("index", len(adapter.dns6) + 1)) - 1, server)
        return 0, "Ok.\r\n"
