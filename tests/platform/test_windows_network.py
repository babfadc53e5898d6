"""The Windows network port against the fake WMI, netsh, ping and computer name (tests/fakes/wmi_network.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.errors import PlatformError
from agent.network.renderers import windows
from agent.platform.windows_network import WindowsNetwork
from tests.fakes.wmi_network import Adapter, FakeWindowsNet
from tests.fakes.xeniface import WBEM_E_FAILED, wmi_error

MAC = "fa:16:3e:0a:1b:2c"
PATH = "wmi:adapter/fa163e0a1b2c"
STATIC = windows.document(MAC, dhcp=False, ipv4=["203.0.113.10/24", "203.0.113.11/24"],
                          gateways=["203.0.113.1"], dns=["198.51.100.53"])


@pytest.fixture
def net() -> FakeWindowsNet:
    return FakeWindowsNet([Adapter(MAC, index=7)])


@pytest.fixture
def port(net: FakeWindowsNet, tmp_path: Path) -> WindowsNetwork:
    return WindowsNetwork(tmp_path / "network-backups", modules=net.modules(), run=net.run)


def set_doc(port: WindowsNetwork, doc: dict[str, object]) -> bytes:
    contents = windows.dumps(doc)
    port.write(PATH, contents, 0o644)
    port.apply("windows", [MAC])
    return contents


def test_a_dhcp_adapter_reads_as_dhcp(port: WindowsNetwork) -> None:
    """The backup of a DHCP adapter is DHCP, not the lease it holds."""
    assert json.loads(port.read(PATH) or b"") == {"mac": MAC, "dhcp": True}
    assert port.read("wmi:adapter/fa163e000000") is None
    assert port.interfaces() == {"fa163e0a1b2c": MAC}


def test_two_adapters_with_one_mac_are_refused(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """Two IP-enabled adapters with one MAC (an emulated NIC beside the PV one, MACs in either case): every call
    that looks for the adapters refuses, naming the MAC and both interface indexes, and nothing is set."""
    net.adapters["emulated"] = Adapter(MAC.upper(), index=12)
    for call in (port.interfaces, lambda: port.read(PATH), lambda: set_doc(port, STATIC)):
        with pytest.raises(PlatformError, match=rf"two IP-enabled network adapters have MAC {MAC} \(interface "
                                                r"index 7 and 12\)"):
            call()
    assert net.calls == [] and net.commands == []


def test_a_static_configuration_is_set_through_wmi_and_reads_back_the_same(port: WindowsNetwork,
                                                                           net: FakeWindowsNet) -> None:
    """EnableStatic, SetGateways and SetDNSServerSearchOrder get nova's values; the adapter then reads back as
    the very bytes written, so a second resetnetwork finds nothing to change."""
    contents = set_doc(port, STATIC)
    assert [(name, given) for name, _, given in net.calls] == [
        ("EnableStatic", {"IPAddress": ["203.0.113.10", "203.0.113.11"],
                          "SubnetMask": ["255.255.255.0", "255.255.255.0"]}),
        ("SetGateways", {"DefaultIPGateway": ["203.0.113.1"], "GatewayCostMetric": [1]}),
        ("SetDNSServerSearchOrder", {"DNSServerSearchOrder": ["198.51.100.53"]})]
    assert net.commands == []
    assert port.read(PATH) == contents


def test_a_static_gateway_nova_no_longer_gives_is_removed(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """SetGateways is not called with no gateway: the one set before is removed through netsh instead."""
    set_doc(port, STATIC)
    set_doc(port, {**STATIC, "gateways": []})
    assert net.commands == [["netsh", "interface", "ipv4", "delete", "route", "prefix=0.0.0.0/0", "interface=7",
                             "nexthop=203.0.113.1"]]
    assert net.adapters[MAC].gateways == []


def test_back_to_dhcp_removes_the_static_gateway_the_agent_set(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """Rolling back to DHCP: EnableDHCP, the DHCP name servers again, and the static gateway removed (EnableDHCP
    leaves it)."""
    old = port.read(PATH) or b""
    set_doc(port, STATIC)
    port.write(PATH, old, 0o644)
    port.apply("windows", [MAC])
    adapter = net.adapters[MAC]
    assert adapter.dhcp and adapter.ipv4 == ["192.0.2.50/24"] and adapter.dns == ["192.0.2.53"]
    assert adapter.gateways == ["192.0.2.1"]
    assert port.read(PATH) == old


def test_ipv6_goes_through_netsh_and_is_removed_again(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """Static IPv6 addresses and the IPv6 default route are added with netsh, and a later configuration without
    them removes them (the port remembers what it set)."""
    with_v6 = {**STATIC, "ipv6": ["2001:db8::10/64"], "gateway6": ["2001:db8::1"]}
    contents = set_doc(port, with_v6)
    assert net.adapters[MAC].ipv6 == ["2001:db8::10/64"] and net.adapters[MAC].gateway6 == ["2001:db8::1"]
    assert port.read(PATH) == contents
    set_doc(port, STATIC)
    assert net.adapters[MAC].ipv6 == [] and net.adapters[MAC].gateway6 == []
    assert ["netsh", "interface", "ipv6", "delete", "address", "interface=7", "address=2001:db8::10"] in net.commands


ROUTED = {**STATIC, "routes": [["10.0.0.0/8", "203.0.113.254"], ["2001:db8:9::/48", "2001:db8::fe"]],
          "dns6": ["2001:db8::53", "2001:db8::54"]}


def test_static_routes_and_ipv6_name_servers_go_through_netsh(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """Each static route is added as a persistent route on the adapter's interface index, the IPv6 name servers are
    set in order; the adapter then reads back as the very bytes written."""
    contents = set_doc(port, ROUTED)
    assert net.commands == [
        ["netsh", "interface", "ipv4", "add", "route", "prefix=10.0.0.0/8", "interface=7", "nexthop=203.0.113.254",
         "store=persistent"],
        ["netsh", "interface", "ipv6", "add", "route", "prefix=2001:db8:9::/48", "interface=7",
         "nexthop=2001:db8::fe", "store=persistent"],
        ["netsh", "interface", "ipv6", "set", "dnsservers", "name=7", "source=static", "address=2001:db8::53",
         "register=none", "validate=no"],
        ["netsh", "interface", "ipv6", "add", "dnsservers", "name=7", "address=2001:db8::54", "index=2",
         "validate=no"]]
    adapter = net.adapters[MAC]
    assert adapter.routes == [("10.0.0.0/8", "203.0.113.254"), ("2001:db8:9::/48", "2001:db8::fe")]
    assert adapter.dns6 == ["2001:db8::53", "2001:db8::54"]
    assert port.read(PATH) == contents


def test_routes_and_ipv6_name_servers_nova_drops_are_removed_but_not_others(port: WindowsNetwork,
                                                                            net: FakeWindowsNet) -> None:
    """A later document without them deletes the routes the agent added and gives the IPv6 name servers back to
    DHCPv6; a route an operator added on the adapter stays."""
    net.adapters[MAC].routes.append(("172.16.0.0/12", "203.0.113.254"))
    set_doc(port, ROUTED)
    del net.commands[:]
    set_doc(port, {**STATIC, "routes": [["10.0.0.0/8", "203.0.113.254"]]})
    assert net.commands == [
        ["netsh", "interface", "ipv6", "delete", "route", "prefix=2001:db8:9::/48", "interface=7",
         "nexthop=2001:db8::fe"],
        ["netsh", "interface", "ipv6", "set", "dnsservers", "name=7", "source=dhcp"]]
    assert net.adapters[MAC].routes == [("172.16.0.0/12", "203.0.113.254"), ("10.0.0.0/8", "203.0.113.254")]
    assert net.adapters[MAC].dns6 == []


def test_a_route_that_is_there_already_is_taken_but_not_the_agents(port: WindowsNetwork, net: FakeWindowsNet,
                                                                    tmp_path: Path) -> None:
    """add route fails on a route an operator added; set route then succeeds on it, so the change goes on, but the
    route is not recorded as the agent's: when nova drops it, it stays."""
    net.adapters[MAC].routes.append(("10.0.0.0/8", "203.0.113.254"))
    set_doc(port, {**STATIC, "routes": [["10.0.0.0/8", "203.0.113.254"]]})
    assert [argv[3] for argv in net.commands] == ["add", "set"]
    assert "routes" not in json.loads((tmp_path / "network-backups" / "applied-fa163e0a1b2c.json").read_bytes())
    set_doc(port, STATIC)
    assert net.adapters[MAC].routes == [("10.0.0.0/8", "203.0.113.254")]
    assert [argv[3] for argv in net.commands] == ["add", "set"]


def test_the_routes_added_before_a_failure_are_removed_by_the_rollback(port: WindowsNetwork,
                                                                       net: FakeWindowsNet) -> None:
    """Each route is recorded as it is added: after a later route fails, applying the old document again removes
    the ones this change added, and only those."""
    net.adapters[MAC].routes.append(("172.16.0.0/12", "203.0.113.254"))
    old = set_doc(port, STATIC)
    net.refuse.add("2001:db8:9::/48")
    with pytest.raises(PlatformError):
        set_doc(port, ROUTED)
    assert ("10.0.0.0/8", "203.0.113.254") in net.adapters[MAC].routes
    port.write(PATH, old, 0o644)
    port.apply("windows", [MAC])
    assert net.adapters[MAC].routes == [("172.16.0.0/12", "203.0.113.254")]
    assert port.read(PATH) == old


@pytest.mark.parametrize("contents", [b'{"mac": "x"', b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"extra":1}'])
def test_a_damaged_record_is_named_with_its_fix(port: WindowsNetwork, tmp_path: Path, contents: bytes) -> None:
    """A damaged applied-<mac>.json fails read and apply with a PlatformError that names the file and says to
    remove it; once removed, the adapter reads and is set again."""
    set_doc(port, ROUTED)
    record = tmp_path / "network-backups" / "applied-fa163e0a1b2c.json"
    record.write_bytes(contents)
    pattern = rf"{record}.* damaged .*remove it"
    with pytest.raises(PlatformError, match=pattern):
        port.read(PATH)
    with pytest.raises(PlatformError, match=pattern):
        set_doc(port, STATIC)
    record.unlink()
    assert port.read(PATH) == windows.dumps(STATIC)
    set_doc(port, STATIC)


@pytest.mark.parametrize(("family", "prefix", "gateway"), [("ipv4", "0.0.0.0/0", "203.0.113.1"),
                                                           ("ipv6", "::/0", "2001:db8::1")])
def test_the_fakes_set_route_leaves_a_default_route(net: FakeWindowsNet, family: str, prefix: str,
                                                    gateway: str) -> None:
    """In the fake, as in netsh, set route on a default route changes it and leaves it; on a missing one it fails."""
    adapter = net.adapters[MAC]
    adapter.gateways, adapter.gateway6 = ["203.0.113.1"], ["2001:db8::1"]
    argv = ["netsh", "interface", family, "set", "route", f"prefix={prefix}", "interface=7", f"nexthop={gateway}",
            "store=persistent"]
    assert net.run(argv)[0] == 0
    assert (adapter.gateways, adapter.gateway6) == (["203.0.113.1"], ["2001:db8::1"])
    assert net.run([*argv[:7], "nexthop=203.0.113.9" if family == "ipv4" else "nexthop=2001:db8::9"]) == (
        1, "Element not found.\r\n")


def test_a_route_windows_refuses_is_a_platform_error(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """An add route that fails (and is no existing route either) is a PlatformError naming the command and
    netsh's message."""
    net.refuse.add("10.0.0.0/8")
    with pytest.raises(PlatformError, match=r"add route prefix=10\.0\.0\.0/8 .* exit status 1: The parameter is "
                                            "incorrect"):
        set_doc(port, ROUTED)
    assert net.adapters[MAC].routes == []


@pytest.mark.parametrize(("method", "code", "meaning"), [
    ("EnableStatic", 66, "invalid subnet mask"), ("EnableStatic", 70, "invalid IP address"),
    ("SetGateways", 71, "invalid gateway IP address"), ("SetDNSServerSearchOrder", 84, "IP not enabled on adapter"),
    ("EnableStatic", 64, "method not supported on this platform"), ("SetGateways", 4242, "does not describe"),
])
def test_a_failing_method_names_adapter_method_and_meaning(port: WindowsNetwork, net: FakeWindowsNet, method: str,
                                                           code: int, meaning: str) -> None:
    """A return value other than 0 or 1 is a PlatformError saying which adapter, which method and what it means."""
    net.fail[method] = code
    with pytest.raises(PlatformError, match=f"{method} on adapter {MAC} returned {code} \\(.*{meaning}"):
        set_doc(port, STATIC)


def test_reboot_required_is_success(port: WindowsNetwork, net: FakeWindowsNet,
                                    caplog: pytest.LogCaptureFixture) -> None:
    """Return value 1 (done, reboot required) is not a failure; the log says a reboot is wanted."""
    net.fail["SetGateways"] = 1
    with caplog.at_level(logging.WARNING):
        set_doc(port, STATIC)
    assert "reboot" in caplog.text


def test_a_com_error_is_a_platform_error(port: WindowsNetwork, net: FakeWindowsNet,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A WMI failure raised as com_error becomes a PlatformError naming the method and WMI's description."""
    def broken(adapter: Adapter, name: str, given: object) -> int:
        raise wmi_error(WBEM_E_FAILED, "Generic failure ")

    monkeypatch.setattr(net, "method", broken)
    with pytest.raises(PlatformError, match=r"EnableStatic on adapter .* failed: Generic failure"):
        set_doc(port, STATIC)


def test_only_staged_documents_are_applied(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """discard_partial drops a staged document, and an apply with nothing staged sets nothing."""
    port.write(PATH, windows.dumps(STATIC), 0o644)
    assert port.discard_partial(PATH) and not port.discard_partial(PATH)
    port.apply("windows", [MAC])
    assert net.calls == []


@pytest.mark.parametrize(("stack", "contents"), [("ifupdown", None), ("windows", b"{}")])
def test_apply_refuses_other_stacks_and_write_damaged_documents(port: WindowsNetwork, stack: str,
                                                               contents: bytes | None) -> None:
    """Only the windows stack applies, and only a canonical document is staged."""
    with pytest.raises(PlatformError):
        if contents is None:
            port.apply(stack, [MAC])
        else:
            port.write(PATH, contents, 0o644)


def test_observe_lists_global_addresses_and_gateways(port: WindowsNetwork) -> None:
    """observe gives the adapter's addresses with prefixes (no link-local) and its default gateways."""
    set_doc(port, {**STATIC, "ipv6": ["2001:db8::10/64"]})
    observed = port.observe()
    assert observed.addresses == {MAC: frozenset({"203.0.113.10/24", "203.0.113.11/24", "2001:db8::10/64"})}
    assert observed.defaults == {("203.0.113.1", MAC)}


def test_answers_needs_a_real_reply(port: WindowsNetwork, net: FakeWindowsNet, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway answers when ping gets an echo reply; "Destination host unreachable" (exit status 0 on Windows)
    and a time-out are no answer."""
    net.reachable.add("203.0.113.1")
    assert port.answers("203.0.113.1") and not port.answers("203.0.113.2")
    monkeypatch.setattr(net, "run", lambda argv: (0, "Reply from 203.0.113.9: Destination host unreachable.\r\n"))
    assert not WindowsNetwork(port.backups or ".", modules=net.modules(), run=net.run).answers("203.0.113.1")
    with pytest.raises(PlatformError):
        port.answers("gateway; del")


def test_the_host_name_waits_for_a_reboot(port: WindowsNetwork, net: FakeWindowsNet,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """set_hostname sets the next boot's name and says a reboot is pending; hostname is then that pending name,
    running_hostname the running one; a name over 15 characters is logged with the NetBIOS name it gives."""
    assert not port.rename_pending()
    with caplog.at_level(logging.WARNING):
        assert port.set_hostname("a-rather-long-web-name") is True
    assert net.next_boot_name == "a-rather-long-web-name" and port.hostname() == "a-rather-long-web-name"
    assert port.running_hostname() == "WIN-OLD" and port.rename_pending()
    assert "A-RATHER-LONG-W" in caplog.text
    assert port.set_hostname("win-old") is False and not port.rename_pending()


def test_the_pending_name_falls_back_to_the_running_one(port: WindowsNetwork, net: FakeWindowsNet) -> None:
    """Without an NV Hostname value (no rename ever wrote one) hostname is the running name; another registry
    error is a PlatformError naming the value."""
    net.running_name = "WIN-RUN"
    net.registry_error = FileNotFoundError(2, "The system cannot find the file specified")
    assert port.hostname() == "WIN-RUN" and not port.rename_pending()
    net.registry_error = PermissionError(13, "Access is denied")
    with pytest.raises(PlatformError, match="NV Hostname"):
        port.hostname()


@pytest.mark.parametrize("name", ["", "web_1", "web.example.com", "-web", "x" * 64])
def test_a_name_windows_cannot_take_is_refused(port: WindowsNetwork, net: FakeWindowsNet, name: str) -> None:
    """A name that is not one DNS label is refused before SetComputerNameExW."""
    with pytest.raises(PlatformError):
        port.set_hostname(name)
    assert net.next_boot_name == "WIN-OLD"


def test_a_failing_rename_is_a_platform_error(port: WindowsNetwork, net: FakeWindowsNet,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SetComputerNameExW returning 0 is a PlatformError with the thread's last error."""
    monkeypatch.setattr(net, "_set_name", lambda kind, name: 0)
    net._last_error = 5
    port = WindowsNetwork(port.backups or ".", modules=net.modules(), run=net.run)
    with pytest.raises(PlatformError, match="error 5"):
        port.set_hostname("web-1")


def test_kept_contents_live_beside_not_among_the_staged(port: WindowsNetwork) -> None:
    """keep/kept/forget round-trip; staged documents are not kept contents (the machine forgets those it does
    not own)."""
    port.keep("resetnetwork-3-0.old", b"old")
    port.write(PATH, windows.dumps(STATIC), 0o644)
    assert port.kept_names() == ["resetnetwork-3-0.old"] and port.kept("resetnetwork-3-0.old") == b"old"
    assert port.forget("resetnetwork-3-0.old") and not port.forget("resetnetwork-3-0.old")
    assert port.kept("resetnetwork-3-0.old") is None
    with pytest.raises(PlatformError):
        port.keep("../escape", b"x")


@pytest.mark.parametrize("call", [
    lambda port: port.read(PATH), lambda port: port.set_hostname("web-1"), lambda port: port.hostname(),
    lambda port: port.running_hostname(),
    lambda port: port.observe(), lambda port: port.answers("203.0.113.1"), lambda port: port.interfaces(),
])
def test_without_fakes_nothing_is_reached_here(tmp_path: Path, call: Any) -> None:
    """Off Windows a port given no fakes refuses, and every call is a PlatformError before anything is run."""
    port = WindowsNetwork(tmp_path)
    assert port.refusal is not None and "only on Windows" in port.refusal
    with pytest.raises(PlatformError, match="only on Windows"):
        call(port)
