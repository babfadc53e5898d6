"""resetnetwork on Windows end to end: the real daemon on the WMI XenStore (the fake xeniface over the real
xenstored) with the Windows network port over the fake WMI network configuration, driven as nova drives it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import NETWORK_BACKUPS, Agent
from agent.host import Host
from agent.platform.windows_network import WindowsNetwork
from tests import test_xenstore_wmi
from tests.conftest import open_journal, wait_for
from tests.fakes.wmi_network import Adapter, FakeWindowsNet

#: The WMI XenStore's fixtures (the fake xeniface, the daemon in a thread on it), used here as they are there.
xeniface = test_xenstore_wmi.xeniface
wmi_agent = test_xenstore_wmi.wmi_agent

MAC = "fa:16:3e:0a:1b:2c"
NETWORK = {"fa163e0a1b2c": {"label": "public", "mac": MAC, "gateway": "203.0.113.1", "gateway_v6": "2001:db8::1",
                            "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"}],
                            "ip6s": [{"ip": "2001:db8::10", "netmask": 64, "enabled": "1"}],
                            "dns": ["198.51.100.53"]}}


@pytest.fixture
def net() -> FakeWindowsNet:
    """A Windows guest with one adapter on DHCP, named WIN-OLD."""
    return FakeWindowsNet([Adapter(MAC, index=4)])


@pytest.fixture
def windows_agent(wmi_agent: Any, net: FakeWindowsNet, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real daemon in a thread on the WMI XenStore, its network port the Windows one over ``net`` (the port
    the daemon will build on Windows, built here instead of the Linux one)."""
    monkeypatch.setattr(Agent, "network_port", lambda agent: WindowsNetwork(
        agent.config.state_path / NETWORK_BACKUPS, modules=net.modules(), run=net.run))
    return wmi_agent


def is_dhcp(net: FakeWindowsNet) -> bool:
    adapter = net.adapters[MAC]
    return adapter.dhcp and adapter.ipv4 == ["192.0.2.50/24"] and adapter.ipv6 == [] and adapter.gateway6 == []


def test_the_network_is_set_and_the_rename_waits_for_a_reboot(windows_agent: Any, host: Host,
                                                               net: FakeWindowsNet, state_dir: Path) -> None:
    """features offers resetnetwork; the adapter gets nova's addresses, gateways and name server; the reply is "0"
    and says the host name takes effect after a reboot, which the journal records."""
    windows_agent()
    assert "resetnetwork" in host.call("features", "", timeout=20)["message"].split(",")
    reply = host.reset_network(NETWORK, "web-1", timeout=30)
    assert reply == {"returncode": "0", "message": "the host name web-1 takes effect after a reboot"}
    adapter = net.adapters[MAC]
    assert (adapter.dhcp, adapter.ipv4, adapter.gateways, adapter.dns) == (
        False, ["203.0.113.10/24"], ["203.0.113.1"], ["198.51.100.53"])
    assert (adapter.ipv6, adapter.gateway6) == (["2001:db8::10/64"], ["2001:db8::1"])
    assert (net.running_name, net.next_boot_name) == ("WIN-OLD", "web-1")
    journal = open_journal(state_dir)
    command, = journal.commands(name="resetnetwork")
    applied, = [t for t in journal.transitions(command.id) if t.dest == "verifying"]
    assert "reboot_pending" in str(applied.detail)


def test_a_failing_wmi_method_rolls_back_to_dhcp(windows_agent: Any, host: Host, net: FakeWindowsNet) -> None:
    """SetGateways refusing the gateway (71) rolls the adapter back to its old DHCP configuration; the reply says
    so, naming the method and the code's meaning; the host name stays."""
    windows_agent()
    net.fail["SetGateways"] = 71
    reply = host.reset_network(NETWORK, "web-1", timeout=30)
    assert reply["returncode"] == "500" and "was rolled back" in reply["message"]
    assert "SetGateways on adapter fa:16:3e:0a:1b:2c returned 71 (invalid gateway IP address)" in reply["message"]
    assert is_dhcp(net) and net.adapters[MAC].gateways == ["192.0.2.1"]
    assert net.next_boot_name == "WIN-OLD"


def test_a_gateway_that_never_answers_rolls_back(windows_agent: Any, host: Host, net: FakeWindowsNet) -> None:
    """With verify = gateway and a gateway that does not answer ping, the change is rolled back after the
    timeout: DHCP again, the old host name for the next boot, and a reply that says why."""
    windows_agent(network_verify="gateway", network_verify_timeout=1)
    reply = host.reset_network(NETWORK, "web-1", timeout=30)
    assert reply["returncode"] == "500" and "gateway 203.0.113.1, 2001:db8::1 does not answer" in reply["message"]
    assert is_dhcp(net) and net.next_boot_name == "WIN-OLD"
    assert ["ping", "-n", "1", "-w", "1000", "203.0.113.1"] in net.commands


def test_a_restart_while_verifying_rolls_back_once(windows_agent: Any, host: Host, net: FakeWindowsNet) -> None:
    """The agent stops while the new network is being verified; the next agent rolls it back (once) from the
    journal and answers the request."""
    first = windows_agent(network_verify="gateway", network_verify_timeout=600)
    answers: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: answers.update(reply=host.reset_network(NETWORK, "web-1", timeout=60)))
    caller.start()
    wait_for(lambda: net.adapters[MAC].ipv4 == ["203.0.113.10/24"] and net.next_boot_name == "web-1")
    first.stop()
    assert "reply" not in answers
    windows_agent(network_verify="gateway", network_verify_timeout=600)
    caller.join(60)
    reply = answers["reply"]
    assert reply["returncode"] == "500" and "the agent stopped" in reply["message"]
    assert is_dhcp(net) and net.next_boot_name == "WIN-OLD"
    assert [name for name, _, _ in net.calls].count("EnableDHCP") == 1


def test_a_second_run_keeps_the_pending_rename(windows_agent: Any, host: Host, net: FakeWindowsNet) -> None:
    """Run 1 renames for the next boot; run 2 with the same data is unchanged (the pending name is the one asked
    for) and says the rename still waits for the reboot; a later run that fails restores that pending name, not the
    running one."""
    windows_agent(network_verify="gateway", network_verify_timeout=1)
    net.reachable = {"203.0.113.1", "2001:db8::1"}
    assert host.reset_network(NETWORK, "web-1", timeout=30)["returncode"] == "0"
    net.reachable = set()
    calls = len(net.calls)
    second = host.reset_network(NETWORK, "web-1", timeout=30)
    assert second == {"returncode": "0", "message": "the host name web-1 takes effect after a reboot"}
    assert net.next_boot_name == "web-1" and len(net.calls) == calls
    third = host.reset_network(NETWORK, "web-2", timeout=30)
    assert third["returncode"] == "500" and "was rolled back" in third["message"]
    assert (net.running_name, net.next_boot_name) == ("WIN-OLD", "web-1")


def test_after_the_reboot_an_unchanged_run_says_nothing_of_a_rename(windows_agent: Any, host: Host,
                                                                    net: FakeWindowsNet) -> None:
    """Once the reboot took the pending name, the same data again is "0" with no message."""
    windows_agent()
    assert host.reset_network(NETWORK, "web-1", timeout=30)["returncode"] == "0"
    net.reboot()
    assert host.reset_network(NETWORK, "web-1", timeout=30) == {"returncode": "0", "message": ""}


def test_two_adapters_with_the_mac_refuse_the_change(windows_agent: Any, host: Host, net: FakeWindowsNet) -> None:
    """An emulated NIC beside the PV one with nova's MAC: the reply is "500", names the MAC and both adapters and
    says nothing was changed; neither adapter nor the host name was touched."""
    windows_agent()
    net.adapters["emulated"] = Adapter(MAC.upper(), index=9)
    reply = host.reset_network(NETWORK, "web-1", timeout=30)
    assert reply["returncode"] == "500" and reply["message"].endswith("nothing was changed")
    assert f"two IP-enabled network adapters have MAC {MAC} (interface index 4 and 9)" in reply["message"]
    assert net.calls == [] and net.commands == [] and net.next_boot_name == "WIN-OLD"


ROUTED = {"fa163e0a1b2c": {**NETWORK["fa163e0a1b2c"],
                           "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "203.0.113.254"}],
                           "dns": ["198.51.100.53", "2001:db8::53"]}}


def test_static_routes_and_ipv6_name_servers_are_applied_and_a_second_run_is_unchanged(
        windows_agent: Any, host: Host, net: FakeWindowsNet) -> None:
    """nova's static route becomes a persistent route on the adapter and its IPv6 name server the adapter's; the
    change is verified ("0"); the same data again changes nothing (no WMI call, no netsh command)."""
    windows_agent()
    assert host.reset_network(ROUTED, None, timeout=30) == {"returncode": "0", "message": ""}
    adapter = net.adapters[MAC]
    assert adapter.routes == [("10.0.0.0/8", "203.0.113.254")] and adapter.dns6 == ["2001:db8::53"]
    assert adapter.dns == ["198.51.100.53"]
    calls, commands = len(net.calls), len(net.commands)
    assert host.reset_network(ROUTED, None, timeout=30) == {"returncode": "0", "message": ""}
    assert (len(net.calls), len(net.commands)) == (calls, commands)


def test_a_failing_route_rolls_back_the_old_routes_and_name_servers(windows_agent: Any, host: Host,
                                                                    net: FakeWindowsNet) -> None:
    """A route Windows refuses fails the change: the reply names the netsh command, and the routes and IPv6 name
    servers the agent set before are back, the new ones gone."""
    windows_agent()
    assert host.reset_network(ROUTED, None, timeout=30)["returncode"] == "0"
    entry = ROUTED["fa163e0a1b2c"]
    changed = {"fa163e0a1b2c": {**entry, "dns": ["2001:db8::54"], "routes": [
        {"route": "172.16.0.0", "netmask": "255.240.0.0", "gateway": "203.0.113.254"}]}}
    net.refuse.add("172.16.0.0/12")
    reply = host.reset_network(changed, None, timeout=30)
    assert reply["returncode"] == "500" and "was rolled back" in reply["message"]
    assert "add route prefix=172.16.0.0/12" in reply["message"]
    adapter = net.adapters[MAC]
    assert adapter.routes == [("10.0.0.0/8", "203.0.113.254")] and adapter.dns6 == ["2001:db8::53"]
    assert adapter.ipv4 == ["203.0.113.10/24"] and adapter.dns == ["198.51.100.53"]



def test_a_default_route_beside_the_gateway_refuses_the_change(windows_agent: Any, host: Host,
                                                               net: FakeWindowsNet) -> None:
    """A static default route through another next hop than the gateway: the reply is "500", says why and that
    nothing was changed; the adapter was not touched."""
    windows_agent()
    routes = [{"route": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "203.0.113.9"}]
    reply = host.reset_network({"fa163e0a1b2c": {**NETWORK["fa163e0a1b2c"], "routes": routes}}, None, timeout=30)
    assert reply["returncode"] == "500" and reply["message"].endswith("nothing was changed")
    assert "static default route 0.0.0.0/0 via 203.0.113.9, but its gateway is 203.0.113.1" in reply["message"]
    assert net.calls == [] and net.commands == [] and is_dhcp(net)
