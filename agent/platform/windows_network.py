"""The live side of ``resetnetwork`` on Windows: the adapters through WMI and netsh, and the computer name.

The resetnetwork machine drives this port exactly as it drives ``agent.platform.network.LiveNetwork``; the
"files" are the adapters' configurations, as canonical JSON documents at ``wmi:adapter/<mac>``
(``agent.network.renderers.windows``):

* ``read(path)`` is the adapter's PRESENT configuration, so the machine's backup is the real old one (DHCP
  included); ``write`` stages a document under the agent's backups directory and ``apply`` sets every staged
  document, then drops it; ``discard_partial`` drops a staged document that was not applied (the machine calls
  it for every file it restores, so a rollback never applies a new document that was only staged).
* ``apply`` writes, before it touches an adapter, what it is about to set (``applied-<mac>.json``): the next
  apply removes the IPv6 addresses, the default routes and the static routes that record holds and the new
  document does not, which WMI cannot tell apart from the ones the network gave (SLAAC, DHCP) or an operator
  added. A static route is recorded only once ``add route`` has added it (the record is written again after
  each route added or removed): one that was there already is an operator's, taken as it is and never
  recorded, so it stays when nova drops it; a route the agent did not add is never removed (a crash between an
  add and its record leaves that route in place, unmanaged, rather than risk removing one it did not add). The
  IPv6 name servers go back to DHCPv6's only when the record holds some and the new document none; an adapter
  the agent never gave any is left as it is. A damaged record is refused, naming the file.
* The static routes and IPv6 name servers of ``read``'s document are that record's: WMI's adapter class has
  neither (``DNSServerSearchOrder`` is IPv4 only), and netsh's ``show route``/``show dnsservers`` print
  localised text. So the backup holds the routes and IPv6 name servers the agent manages, and a rollback
  restores exactly those.
* ``observe`` reads the adapters' addresses and default gateways back; ``answers`` pings.
* The kept contents (``keep``/``kept``) are files in the backups directory, which the agent's state directory
  (SYSTEM and Administrators only) holds.

IPv6 goes through ``netsh interface ipv6`` rather than the ``MSFT_NetIPAddress`` CIM class: netsh is on every
Windows the agent supports (the CIM class needs Windows 8 / Server 2012), and each command is one stateless
step whose exit status says whether it worked.

Facts about the real API this module relies on:

* WMI ``root\\cimv2``, ``SELECT * FROM Win32_NetworkAdapterConfiguration WHERE IPEnabled = TRUE``; the
  properties ``MACAddress`` ("FA:16:3E:.."), ``InterfaceIndex``, ``DHCPEnabled``, ``IPAddress`` and
  ``IPSubnet`` (parallel arrays; the subnet of an IPv6 address is its prefix length as text),
  ``DefaultIPGateway`` and ``DNSServerSearchOrder`` (arrays, or None when empty).
* Methods: ``EnableStatic(IPAddress[], SubnetMask[])`` (IPv4; disables DHCP), ``SetGateways(DefaultIPGateway[],
  GatewayCostMetric[])``, ``SetDNSServerSearchOrder(DNSServerSearchOrder[])`` (called without in-parameters it
  goes back to the DHCP-given servers), ``EnableDHCP()`` (which leaves static default gateways in place, so the
  agent removes the ones it set). Each returns ``ReturnValue``: 0 done, 1 done but a reboot is required,
  anything else a failure (``RETURN_CODES``). Called through the scripting API (``Methods_(name).InParameters.
  SpawnInstance_()``, ``ExecMethod_``), as ``agent.xenstore_wmi`` does; COM failures are ``pywintypes.com_error``.
* ``netsh interface ipv6 add|delete address interface=<index> address=<ip>/<len>``, ``netsh interface
  ipv4|ipv6 add|delete route prefix=<net>/<len> interface=<index> nexthop=<gw>``; exit status 0 is success.
  ``add route`` takes ``store=active|persistent`` (persistent, the default, keeps the route across boots and
  sets it now); ``set route`` with the same keys changes a route that exists and fails on a missing one.
* ``netsh interface ipv6 set dnsservers name=<index> source=static address=<ip> register=none validate=no``
  replaces the adapter's IPv6 name servers with one; ``add dnsservers name=<index> address=<ip> index=<n>
  validate=no`` puts another at position n of the search order; ``set dnsservers name=<index> source=dhcp``
  goes back to the ones DHCPv6 gives. ``validate=no`` keeps netsh from querying the server first (a server
  that is not reachable yet is not an error). The WMI alternative, ``MSFT_DNSClientServerAddress`` (in
  ``root\\StandardCimv2``, Windows 8 / Server 2012 and later), is not used, for the same reason as for
  ``MSFT_NetIPAddress``.
* ``ping -n 1 -w 1000 <ip>``: exit status 0 when a reply came; for IPv4 a "Destination host unreachable" reply
  from a router also exits 0, so a reply must also carry ``TTL=`` (printed in every language's output).
* ``SetComputerNameExW(ComputerNamePhysicalDnsHostname (5), name)`` (kernel32) sets the DNS host name and the
  NetBIOS name (the name cut to 15 characters, MAX_COMPUTERNAME_LENGTH); it takes effect after a reboot; it
  returns 0 on failure, the reason in the thread's last error. pywin32's ``win32api`` has no binding for it
  (its stubs list only ``GetComputerNameEx``), so it is called through ctypes (``kernel32`` can be injected).
  ``win32api.GetComputerNameEx(win32con.ComputerNamePhysicalDnsHostname)`` is the running name and fails with
  ``pywintypes.error``.
* ``SetComputerNameExW(ComputerNamePhysicalDnsHostname, name)`` stores ``name`` as it was given in the value ``NV
  Hostname`` of ``HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters`` and leaves ``Hostname`` (the
  running name) as it is; the next boot takes ``NV Hostname``. GetComputerNameEx has no format for that pending
  name, so ``hostname`` reads it with the standard library's ``winreg`` (``OpenKey``, ``QueryValueEx``, which
  raise ``OSError``, ``FileNotFoundError`` for a missing value).

Unconfirmed (no Windows here): that ``IPSubnet`` gives IPv6 prefixes as bare numbers on every version, the
``TTL=`` rule for every language, netsh's exit statuses for an address that already exists, and that deleting
the default route with netsh also clears the static gateway ``EnableDHCP`` leaves in the adapter's settings.
Also unconfirmed: that ``add route`` exits non-zero for a route that already exists (the agent then tries
``set route``, which succeeds only on an existing route, so an existing route is taken as it is, not as the
agent's, and a real failure still fails), that ``delete route`` without ``store=`` also removes the persistent
route, and that ``set|add dnsservers`` take ``validate=no`` on every version the agent supports (Windows 7 /
Server 2008 R2 and later document it; earlier ones have ``set dnsserver`` without it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, PlatformError
from agent.network.model import colon_mac, normal_mac
from agent.network.renderers import windows as canonical
from agent.platform.base import scrub
from agent.platform.network import MAX_FILE_SIZE, Observed
from agent.platform.wmi import com_text, load, prop

log = logging.getLogger(__name__)

NAMESPACE = "root\\cimv2"
ADAPTERS = "SELECT * FROM Win32_NetworkAdapterConfiguration WHERE IPEnabled = TRUE"
#: COMPUTER_NAME_FORMAT's ComputerNamePhysicalDnsHostname (win32con has it; the number is for the fakes).
COMPUTER_NAME_PHYSICAL_DNS_HOSTNAME = 5
#: Where SetComputerNameExW leaves the DNS host name the next boot takes (HKEY_LOCAL_MACHINE).
TCPIP_PARAMETERS = "SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters"
PENDING_HOSTNAME = "NV Hostname"
#: MAX_COMPUTERNAME_LENGTH: the NetBIOS name is the host name cut to this many characters.
NETBIOS_MAX = 15
#: A DNS host name label.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
#: The Win32_NetworkAdapterConfiguration methods' return values (0 and 1 are success).
RETURN_CODES = {
    64: "method not supported on this platform", 65: "unknown failure", 66: "invalid subnet mask",
    67: "an error occurred while processing an instance that was returned", 68: "invalid input parameter",
    69: "more than five gateways specified", 70: "invalid IP address", 71: "invalid gateway IP address",
    72: "an error occurred while accessing the registry", 79: "invalid security parameter",
    80: "unable to configure TCP/IP service", 81: "unable to configure DHCP service",
    84: "IP not enabled on adapter", 91: "access denied", 92: "out of memory", 93: "already exists",
    94: "path, file or object not found", 95: "unable to notify service", 96: "unable to notify DNS service",
    97: "interface not configurable", 100: "DHCP not enabled on adapter",
}
REBOOT_REQUIRED = 1
#: Seconds one netsh or ping may take.
TOOL_TIMEOUT = 30.0

Runner = Callable[[Sequence[str]], "tuple[int, str]"]


def run_tool(argv: Sequence[str]) -> tuple[int, str]:
    """Run a Windows tool: its exit status and output (PlatformError when it cannot run or hangs)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise PlatformError(f"{argv[0]} did not finish within {TOOL_TIMEOUT:g} s") from None
    except OSError as exc:
        raise PlatformError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    return done.returncode, (done.stdout or done.stderr).decode("utf-8", "replace")


class WindowsNetwork:
    """The network port on Windows (see the module's description). ``modules`` injects pywin32's
    (``pythoncom``, ``pywintypes``, ``win32com.client``, ``win32api``, ``win32con``), the standard ``winreg``,
    ``kernel32`` (with ``SetComputerNameExW`` and ``get_last_error``, ctypes' by default), and ``run`` the tool
    runner: tests give fakes, and nothing real is reached."""

    def __init__(self, backups: str | os.PathLike[str], *, modules: dict[str, Any] | None = None,
                 run: Runner | None = None) -> None:
        self.backups: Path | None = Path(backups)
        self._loaded: dict[str, Any] = dict(modules or {})
        self._faked = modules is not None and run is not None
        self._run = run or run_tool

    @property
    def refusal(self) -> str | None:
        """None when the port may act; elsewhere than on Windows it acts only on the fakes it was given, so no
        test can reach this machine's network or name."""
        if sys.platform == "win32" or self._faked:
            return None
        return "the Windows network port acts only on Windows (elsewhere only on the fakes a test gives it)"

    def _allowed(self) -> None:
        if self.refusal is not None:
            raise PlatformError(self.refusal)

    def _module(self, name: str) -> Any:
        return load(self._loaded, name)

    # -- the adapters through WMI -------------------------------------------------------------------------

    def _adapters(self) -> dict[str, Any]:
        """The IP-enabled adapters by 12-digit MAC; PlatformError when two have one MAC (an emulated NIC left
        beside the PV one): which of them nova means cannot be told, so neither is guessed."""
        self._allowed()
        com_error = self._module("pywintypes").com_error
        try:
            self._module("pythoncom").CoInitialize()
            locator = self._module("win32com.client").Dispatch("WbemScripting.SWbemLocator")
            found = list(locator.ConnectServer(".", NAMESPACE).ExecQuery(ADAPTERS))
            adapters: dict[str, Any] = {}
            for adapter in found:
                mac = prop(adapter, "MACAddress")
                if not isinstance(mac, str) or len(normal_mac(mac)) != 12:
                    continue
                first = adapters.setdefault(normal_mac(mac), adapter)
                if first is not adapter:
                    raise PlatformError(
                        f"two IP-enabled network adapters have MAC {colon_mac(normal_mac(mac))} (interface index "
                        f"{prop(first, 'InterfaceIndex')} and {prop(adapter, 'InterfaceIndex')}): which one to "
                        "configure cannot be told; disable or remove the one not meant")
            return adapters
        except com_error as exc:
            raise PlatformError(f"cannot list the network adapters through WMI: {com_text(exc)}") from exc

    def _adapter(self, mac: str) -> Any:
        adapter = self._adapters().get(mac)
        if adapter is None:
            raise PlatformError(f"no IP-enabled network adapter has MAC {colon_mac(mac)}")
        return adapter

    def stack(self, setting: str) -> str:
        """Always ``windows``: ``network.renderer`` may say ``auto`` or ``windows``, no file stack."""
        if setting not in ("auto", canonical.NAME):
            raise ConfigError(f"network.renderer {setting} is not a Windows network; use auto or windows")
        return canonical.NAME

    def interfaces(self) -> dict[str, str]:
        """The adapters as the network model matches them: ``{mac12: name}``, the name being the MAC with colons
        (Windows' own connection names have spaces and change at the user's whim)."""
        return {mac: colon_mac(mac) for mac in self._adapters()}

    def _call(self, adapter: Any, mac: str, method: str, **arguments: Any) -> bool:
        """Run a WMI method; whether it asks for a reboot; PlatformError naming adapter, method and code."""
        com_error = self._module("pywintypes").com_error
        try:
            if arguments:
                parameters = adapter.Methods_(method).InParameters.SpawnInstance_()
                for name, value in arguments.items():
                    parameters.Properties_.Item(name).Value = value
                out = adapter.ExecMethod_(method, parameters)
            else:
                out = adapter.ExecMethod_(method)
            code = out.Properties_.Item("ReturnValue").Value
        except com_error as exc:
            raise PlatformError(f"{method} on adapter {colon_mac(mac)} failed: {com_text(exc)}") from exc
        if code in (0, REBOOT_REQUIRED):
            return bool(code == REBOOT_REQUIRED)
        meaning = RETURN_CODES.get(code, "an error WMI does not describe")
        raise PlatformError(f"{method} on adapter {colon_mac(mac)} returned {code} ({meaning})")

    # -- "files": the adapters' documents -----------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The adapter's present configuration as a canonical document; None when no adapter has the MAC."""
        mac = canonical.mac_of(path)
        adapter = self._adapters().get(mac)
        return None if adapter is None else canonical.dumps(_present(adapter, mac, self._applied(mac)))

    def write(self, path: str, contents: bytes, mode: int) -> None:
        """Stage the document for ``apply`` (checked first: a damaged one is refused before anything is set)."""
        canonical.parse(contents)
        self._store(self._staging() / f"{canonical.mac_of(path)}.json", contents)

    def remove(self, path: str) -> bool:
        # A rollback removes only files that were new: an adapter's document always has an old one.
        raise PlatformError(f"{path} is an adapter's configuration, which cannot be removed")

    def discard_partial(self, path: str) -> bool:
        staged = self._staging() / f"{canonical.mac_of(path)}.json"
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
            return True
        return False

    def apply(self, stack: str, interfaces: Sequence[str]) -> None:
        """Set every staged document of ``interfaces`` on its adapter, then drop it."""
        if stack != canonical.NAME:
            raise PlatformError(f"this Windows agent applies only the {canonical.NAME} stack, not {stack!r:.40}")
        reboot = False
        for name in interfaces:
            mac = normal_mac(name)
            staged = self._staging() / f"{mac}.json"
            contents = self._load(staged)
            if contents is None:
                continue
            doc = canonical.parse(contents)
            previous = self._applied(mac)
            # Before the first change: a crash midway still knows what it added. The static routes are the ones
            # added before; _set_routes records each route as it adds or removes it.
            self._own(mac, doc, previous.get("routes", []))
            reboot |= self._set(mac, doc, previous)
            staged.unlink()
        if reboot:
            log.warning("Windows says the network configuration takes full effect only after a reboot")

    def _record(self, mac: str) -> Path:
        return self._staging().parent / f"applied-{mac}.json"

    def _own(self, mac: str, doc: dict[str, Any], routes: list[list[str]]) -> None:
        """Record ``doc`` as set on the adapter, with ``routes`` as the static routes the agent added."""
        self._store(self._record(mac), canonical.dumps(canonical.with_routes(doc, routes)))

    def _applied(self, mac: str) -> dict[str, Any]:
        """The document the agent last set on the adapter (DHCP, nothing of its own, when it never set one)."""
        record = self._record(mac)
        before = self._load(record)
        if before is None:
            return canonical.document(mac, dhcp=True)
        try:
            return canonical.parse(before)
        except PlatformError as exc:
            raise PlatformError(
                f"{record} is damaged ({exc}): remove it; the agent then takes the adapter as it finds it and "
                "manages only the IPv6 addresses, routes and name servers it sets from then on (the ones it set "
                "before stay until removed by hand)") from None

    def _set(self, mac: str, doc: dict[str, Any], previous: dict[str, Any]) -> bool:
        adapter = self._adapter(mac)
        index = str(prop(adapter, "InterfaceIndex"))
        present = _present(adapter, mac, previous)
        log.info("configuring adapter %s (%s)", colon_mac(mac), "DHCP" if doc["dhcp"] else ", ".join(doc["ipv4"]))
        reboot = False
        if doc["dhcp"]:
            # EnableDHCP leaves static default gateways: remove them first (the ones set now and the ones the
            # agent recorded), so that a gateway DHCP gives too is installed again by DHCP, not removed after.
            self._drop_gateways(index, previous.get("gateways", []) + present.get("gateways", []), keep=[])
            reboot |= self._call(adapter, mac, "EnableDHCP")
            reboot |= self._call(adapter, mac, "SetDNSServerSearchOrder")
        else:
            interfaces = [ipaddress.IPv4Interface(a) for a in doc["ipv4"]]
            reboot |= self._call(adapter, mac, "EnableStatic", IPAddress=[str(a.ip) for a in interfaces],
                                 SubnetMask=[str(a.netmask) for a in interfaces])
            if doc["gateways"]:
                reboot |= self._call(adapter, mac, "SetGateways", DefaultIPGateway=doc["gateways"],
                                     GatewayCostMetric=[1] * len(doc["gateways"]))
            if doc["dns"]:
                reboot |= self._call(adapter, mac, "SetDNSServerSearchOrder", DNSServerSearchOrder=doc["dns"])
            else:
                reboot |= self._call(adapter, mac, "SetDNSServerSearchOrder")
            # SetGateways is not called without gateways: the static ones set before are removed instead.
            self._drop_gateways(index, present.get("gateways", []), keep=doc["gateways"])
        for address in sorted(set(previous.get("ipv6", [])) - set(doc.get("ipv6", []))):
            self._netsh("ipv6", "delete", "address", f"interface={index}",
                        f"address={ipaddress.IPv6Interface(address).ip}", may_fail=True)
        for gateway in sorted(set(previous.get("gateway6", [])) - set(doc.get("gateway6", []))):
            self._netsh("ipv6", "delete", "route", "prefix=::/0", f"interface={index}", f"nexthop={gateway}",
                        may_fail=True)
        # What the adapter holds whether or not it is on DHCP (an address SLAAC gave is not added again).
        live = set(_addresses(adapter)) | set(_strings(adapter, "DefaultIPGateway"))
        for address in doc.get("ipv6", []):
            if address not in live:
                self._netsh("ipv6", "add", "address", f"interface={index}", f"address={address}")
        for gateway in doc.get("gateway6", []):
            if gateway not in live:
                self._netsh("ipv6", "add", "route", "prefix=::/0", f"interface={index}", f"nexthop={gateway}")
        self._set_routes(mac, index, doc, previous.get("routes", []))
        self._set_dns6(index, doc.get("dns6", []), previous.get("dns6", []))
        return reboot

    def _set_routes(self, mac: str, index: str, doc: dict[str, Any], previous: list[list[str]]) -> None:
        """Remove the static routes the agent added that nova no longer gives, then add nova's new ones, recording
        after each what the agent added (a route that was there already is not the agent's: never recorded)."""
        routes: list[list[str]] = doc.get("routes", [])
        owned = list(previous)
        for prefix, gateway in previous:
            if [prefix, gateway] not in routes:
                self._netsh(_family(prefix), "delete", "route", f"prefix={prefix}", f"interface={index}",
                            f"nexthop={gateway}", may_fail=True)
                owned.remove([prefix, gateway])
                self._own(mac, doc, owned)
        for prefix, gateway in routes:
            if [prefix, gateway] in previous:
                continue
            keys = (f"prefix={prefix}", f"interface={index}", f"nexthop={gateway}", "store=persistent")
            try:
                self._netsh(_family(prefix), "add", "route", *keys)
            except PlatformError:
                # Already there (an operator's own): set route succeeds only on a route that exists, so anything
                # else is still the add's failure. The route is taken as it is, and is not the agent's to remove.
                if not self._netsh(_family(prefix), "set", "route", *keys, may_fail=True):
                    raise
                log.info("the route to %s via %s on interface %s was there already: it is left to whoever added "
                         "it", prefix, gateway, index)
                continue
            owned.append([prefix, gateway])
            self._own(mac, doc, owned)

    def _set_dns6(self, index: str, servers: list[str], previous: list[str]) -> None:
        """The IPv6 name servers in nova's order, or DHCPv6's again when the agent set some and nova gives none."""
        if servers == previous:
            return
        if not servers:
            self._netsh("ipv6", "set", "dnsservers", f"name={index}", "source=dhcp")
            return
        self._netsh("ipv6", "set", "dnsservers", f"name={index}", "source=static", f"address={servers[0]}",
                    "register=none", "validate=no")
        for position, server in enumerate(servers[1:], start=2):
            self._netsh("ipv6", "add", "dnsservers", f"name={index}", f"address={server}", f"index={position}",
                        "validate=no")

    def _drop_gateways(self, index: str, gateways: list[str], keep: list[str]) -> None:
        for gateway in dict.fromkeys(gateways):
            if gateway not in keep:
                self._netsh("ipv4", "delete", "route", "prefix=0.0.0.0/0", f"interface={index}", f"nexthop={gateway}",
                            may_fail=True)

    def _netsh(self, family: str, *args: str, may_fail: bool = False) -> bool:
        """Run one netsh command; whether it worked (a failure is a PlatformError unless ``may_fail``)."""
        self._allowed()
        argv = ["netsh", "interface", family, *args]
        status, output = self._run(argv)
        if status != 0:
            said = scrub(output, "", tail=True) or "no message"
            message = f"{' '.join(argv)} failed with exit status {status}: {said}"
            if not may_fail:
                raise PlatformError(message)
            log.info("%s (which may fail here: it may be gone already, or there already)", message)
        return status == 0

    # -- the contents a change keeps until it ends ---------------------------------------------------------

    def keep(self, name: str, contents: bytes) -> None:
        self._store(self._kept_dir() / _plain(name), contents)

    def kept(self, name: str) -> bytes | None:
        return self._load(self._kept_dir() / _plain(name))

    def kept_names(self) -> list[str]:
        directory = self._kept_dir()
        return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []

    def forget(self, name: str) -> bool:
        with contextlib.suppress(FileNotFoundError):
            (self._kept_dir() / _plain(name)).unlink()
            return True
        return False

    def _kept_dir(self) -> Path:
        if self.backups is None:
            raise PlatformError("this agent has no directory to keep a network change's files in")
        return self.backups / "kept"

    def _staging(self) -> Path:
        return self._kept_dir().parent / "staged"

    @staticmethod
    def _store(path: Path, contents: bytes) -> None:
        """Write ``path`` atomically and durably (a temporary file beside it, flushed, then renamed over it)."""
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(contents)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise PlatformError(f"cannot write {path.name} in {path.parent}: {exc.strerror}") from exc

    @staticmethod
    def _load(path: Path) -> bytes | None:
        try:
            with path.open("rb") as source:
                contents = source.read(MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PlatformError(f"cannot read {path.name} in {path.parent}: {exc.strerror}") from exc
        if len(contents) > MAX_FILE_SIZE:
            raise PlatformError(f"{path.name} is larger than {MAX_FILE_SIZE} bytes")
        return contents

    # -- the host name ------------------------------------------------------------------------------------

    def set_hostname(self, name: str) -> bool:
        """Make ``name`` the computer's DNS host name (and, cut to 15 characters, its NetBIOS name) from the next
        boot; True when that differs from the running name, so a reboot is pending."""
        if not _HOST_LABEL.fullmatch(name):
            raise PlatformError(f"cannot set the host name {scrub(repr(name), '')}: a Windows host name is one "
                                "label of 1 to 63 letters, digits and hyphens")
        self._allowed()
        kernel32 = self._kernel32()
        if len(name) > NETBIOS_MAX:
            log.warning("the host name %s is longer than %d characters: its NetBIOS name will be %s", name,
                        NETBIOS_MAX, name[:NETBIOS_MAX].upper())
        if not kernel32.SetComputerNameExW(self._name_format(), name):
            code = kernel32.get_last_error()
            raise PlatformError(f"cannot set the host name {name}: SetComputerNameExW failed with error {code}")
        return name.lower() != self.running_hostname().lower()

    def hostname(self) -> str | None:
        """The host name the computer will have after the next boot: the one a rename left pending, else the
        running one. The machine journals it as the name to restore, and a name asked for again is unchanged."""
        self._allowed()
        winreg = self._module("winreg")
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, TCPIP_PARAMETERS) as key:
                pending, _ = winreg.QueryValueEx(key, PENDING_HOSTNAME)
        except FileNotFoundError:
            pending = None
        except OSError as exc:
            raise PlatformError(f"cannot read the host name for the next boot ({PENDING_HOSTNAME} under "
                                f"HKLM\\{TCPIP_PARAMETERS}): {exc.strerror or exc}") from exc
        return pending if isinstance(pending, str) and pending else self.running_hostname()

    def rename_pending(self) -> bool:
        """Whether the next boot renames the computer (the pending host name is not the running one)."""
        return (self.hostname() or "").lower() != self.running_hostname().lower()

    def running_hostname(self) -> str:
        """The running computer name (a rename takes effect only at the next boot)."""
        self._allowed()
        if TYPE_CHECKING:
            import pywintypes
            import win32api
        else:
            win32api, pywintypes = self._module("win32api"), self._module("pywintypes")
        try:
            return str(win32api.GetComputerNameEx(self._name_format()))
        except pywintypes.error as exc:
            raise PlatformError(f"cannot read the host name: {exc.strerror} (GetComputerNameEx, error "
                                f"{exc.winerror})") from exc

    def _kernel32(self) -> Any:
        if "kernel32" not in self._loaded:
            if not hasattr(ctypes, "WinDLL"):
                raise PlatformError("the host name can be set this way only on Windows")
            library: Any = ctypes.WinDLL("kernel32", use_last_error=True)
            library.get_last_error = getattr(ctypes, "get_last_error")  # noqa: B009 - absent from Linux's ctypes
            self._loaded["kernel32"] = library
        return self._loaded["kernel32"]

    def _name_format(self) -> int:
        return int(getattr(self._module("win32con"), "ComputerNamePhysicalDnsHostname",
                           COMPUTER_NAME_PHYSICAL_DNS_HOSTNAME))

    # -- observing ----------------------------------------------------------------------------------------

    def observe(self) -> Observed:
        """Every adapter's global addresses and default gateways, as WMI lists them now."""
        addresses: dict[str, frozenset[str]] = {}
        defaults: set[tuple[str, str]] = set()
        for mac, adapter in self._adapters().items():
            name = colon_mac(mac)
            addresses[name] = frozenset(_addresses(adapter))
            defaults |= {(gateway, name) for gateway in _strings(adapter, "DefaultIPGateway")}
        return Observed(addresses, frozenset(defaults))

    def answers(self, address: str) -> bool:
        """Whether ``address`` answers one ping within a second."""
        self._allowed()
        try:
            target = ipaddress.ip_address(address)
        except ValueError:
            raise PlatformError(f"{scrub(repr(address), '')} is not an IP address to ping") from None
        status, output = self._run(["ping", "-n", "1", "-w", "1000", str(target)])
        return status == 0 and (target.version == 6 or "TTL=" in output.upper())




def _strings(adapter: Any, name: str) -> list[str]:
    value = prop(adapter, name)
    return [str(v) for v in value] if value else []


def _addresses(adapter: Any) -> list[str]:
    """The adapter's addresses as "ip/prefix", link-local ones left out (as the Linux port keeps global ones)."""
    found = []
    for ip, subnet in zip(_strings(adapter, "IPAddress"), _strings(adapter, "IPSubnet"), strict=False):
        with contextlib.suppress(ValueError):
            found.append(str(ipaddress.ip_interface(f"{ip.split('%')[0]}/{subnet}")))
    return [a for a in found if not ipaddress.ip_interface(a).is_link_local]


def _family(prefix: str) -> str:
    return "ipv6" if ipaddress.ip_network(prefix).version == 6 else "ipv4"


def _present(adapter: Any, mac: str, applied: dict[str, Any]) -> dict[str, Any]:
    """The adapter's configuration now, as a canonical document; its static routes and IPv6 name servers are the
    ones the agent set (``applied``), which WMI does not list."""
    own = {"routes": applied.get("routes", []), "dns6": applied.get("dns6", [])}
    found = _addresses(adapter)
    ipv4 = [a for a in found if ipaddress.ip_interface(a).version == 4]
    ipv6 = [a for a in found if ipaddress.ip_interface(a).version == 6]
    gateways = _strings(adapter, "DefaultIPGateway")
    v4 = [g for g in gateways if ipaddress.ip_address(g).version == 4]
    v6 = [g for g in gateways if ipaddress.ip_address(g).version == 6 and not ipaddress.ip_address(g).is_link_local]
    if prop(adapter, "DHCPEnabled"):
        # What DHCP and SLAAC gave is the network's: only the document's own static IPv6 would follow it.
        return canonical.document(mac, dhcp=True, **own)
    dns = [s for s in _strings(adapter, "DNSServerSearchOrder") if ipaddress.ip_address(s).version == 4]
    return canonical.document(mac, dhcp=False, ipv4=ipv4, gateways=v4, dns=dns, ipv6=ipv6, gateway6=v6, **own)


def _plain(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", name):
        raise PlatformError(f"{name!r:.60} is not a name for kept contents")
    return name
