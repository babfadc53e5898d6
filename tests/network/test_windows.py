"""The Windows renderer: one canonical document per adapter, which parses back, and the damaged ones parse refuses."""

from __future__ import annotations

import json

import pytest

from agent.errors import PlatformError
from agent.network import plan
from agent.network.model import parse
from agent.network.renderers import windows
from tests.network.scenarios import SCENARIOS, SYSTEM, nothing

PUBLIC = "wmi:adapter/fa163e0a1b2c"
PRIVATE = "wmi:adapter/fa163e998877"


@pytest.mark.parametrize(("scenario", "expected"), [
    ("one-nic-ipv4", {PUBLIC: {"mac": "fa:16:3e:0a:1b:2c", "dhcp": False, "ipv4": ["203.0.113.10/24"],
                               "gateways": ["203.0.113.1"], "dns": ["198.51.100.53"]}}),
    ("disabled-address", {PUBLIC: {"mac": "fa:16:3e:0a:1b:2c", "dhcp": False, "ipv4": ["203.0.113.10/24"],
                                   "gateways": ["203.0.113.1"], "dns": ["198.51.100.53", "198.51.100.54"]}}),
    ("no-gateway", {PRIVATE: {"mac": "fa:16:3e:99:88:77", "dhcp": False, "ipv4": ["10.1.2.3/16"],
                              "gateways": [], "dns": []}}),
])
def test_scenarios(scenario: str, expected: dict[str, dict[str, object]]) -> None:
    """Each scenario without static routes renders one document per adapter, as nova asks."""
    rendered = windows.render(SCENARIOS[scenario], nothing)
    assert {path: json.loads(contents) for path, contents in rendered.items()} == expected


def test_the_document_is_canonical_and_parses_back() -> None:
    """Sorted keys, no spaces, one line break; IPv6 sorted; parse gives the same document back."""
    network = parse({"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway_v6": "2001:db8::1",
                                      "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}],
                                      "ip6s": [{"ip": "2001:db8::20", "netmask": 64},
                                               {"ip": "2001:db8::10", "netmask": 64}]}}, None, SYSTEM)
    contents = windows.render(network, nothing)[PUBLIC]
    assert contents == (b'{"dhcp":false,"dns":[],"gateway6":["2001:db8::1"],"gateways":[],'
                        b'"ipv4":["203.0.113.10/24"],"ipv6":["2001:db8::10/64","2001:db8::20/64"],'
                        b'"mac":"fa:16:3e:0a:1b:2c"}\n')
    assert windows.dumps(windows.parse(contents)) == contents


def test_an_interface_without_ipv4_is_dhcp() -> None:
    """No IPv4 address from nova: DHCP (the static IPv4 methods need an address), IPv6 still static."""
    network = parse({"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c",
                                      "ip6s": [{"ip": "2001:db8::10", "netmask": 64}]}}, None, SYSTEM)
    assert json.loads(windows.render(network, nothing)[PUBLIC]) == {
        "mac": "fa:16:3e:0a:1b:2c", "dhcp": True, "ipv6": ["2001:db8::10/64"]}


def test_static_routes_and_ipv6_name_servers_have_their_own_keys() -> None:
    """nova's static routes of both families go to "routes", sorted (IPv4 first), and the IPv6 name servers to
    "dns6" in nova's order, apart from the IPv4 ones; the document parses back."""
    network = parse({"fa163e998877": {"mac": "fa:16:3e:99:88:77", "ips": [{"ip": "10.1.2.3",
                                                                          "netmask": "255.255.0.0"}],
                                      "routes": [{"route": "2001:db8:9::", "netmask": "48", "gateway": "2001:db8::1"},
                                                 {"route": "192.168.0.0", "netmask": "255.255.0.0",
                                                  "gateway": "10.1.0.1"},
                                                 {"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.0.1"}],
                                      "dns": ["2001:db8::54", "10.1.0.53", "2001:db8::53"]}}, None, SYSTEM)
    contents = windows.render(network, nothing)[PRIVATE]
    assert json.loads(contents) == {
        "mac": "fa:16:3e:99:88:77", "dhcp": False, "ipv4": ["10.1.2.3/16"], "gateways": [], "dns": ["10.1.0.53"],
        "routes": [["10.0.0.0/8", "10.1.0.1"], ["192.168.0.0/16", "10.1.0.1"], ["2001:db8:9::/48", "2001:db8::1"]],
        "dns6": ["2001:db8::54", "2001:db8::53"]}
    assert windows.dumps(windows.parse(contents)) == contents


def test_the_two_nics_scenario_renders_the_private_routes() -> None:
    """The scenario every renderer covers, with the private network's two routes, renders (nothing is refused)."""
    rendered = windows.render(SCENARIOS["two-nics"], nothing)
    assert json.loads(rendered[PRIVATE])["routes"] == [["10.0.0.0/8", "10.1.0.1"], ["192.168.0.0/16", "10.1.0.1"]]


@pytest.mark.parametrize("contents", [
    b"not json", b"[]", b'{"mac":"fa:16:3e:0a:1b:2c"}', b'{"mac":"x","dhcp":true}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":false,"ipv4":[]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":false,"ipv4":["203.0.113.10"]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":false,"ipv4":["2001:db8::1/64"]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"extra":1}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"routes":[["10.0.0.0/8","2001:db8::1"]]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"routes":[["10.0.0.1/8","10.1.0.1"]]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"routes":[["10.0.0.0","10.1.0.1"]]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"routes":["10.0.0.0/8 10.1.0.1"]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"dns6":["198.51.100.53"]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"routes":[["0.0.0.0/0","10.1.0.1"]]}',
    b'{"mac":"fa:16:3e:0a:1b:2c","dhcp":true,"routes":[["::/0","2001:db8::1"]]}',
    json.dumps({"mac": "fa:16:3e:0a:1b:2c", "dhcp": True,
                "routes": [[f"10.{i // 256}.{i % 256}.0/24", "10.1.0.1"] for i in range(windows.MAX_ROUTES + 1)]}
               ).encode(),
])
def test_parse_refuses_a_damaged_document(contents: bytes) -> None:
    """A document that is not the canonical form is a PlatformError, never set on an adapter."""
    with pytest.raises(PlatformError):
        windows.parse(contents)


@pytest.mark.parametrize("path", ["/etc/hosts", "wmi:adapter/fa163e0a1b2", "wmi:adapter/FA163E0A1B2C"])
def test_only_adapter_paths_name_an_adapter(path: str) -> None:
    """A path that is not ``wmi:adapter/<12 lowercase hex digits>`` is refused."""
    with pytest.raises(PlatformError):
        windows.mac_of(path)


def test_the_plan_writes_no_unix_names_files_on_windows() -> None:
    """plan.render for windows gives only the adapters' documents, no /etc/hostname, hosts or resolv.conf."""
    assert list(plan.render(SCENARIOS["one-nic-ipv4"], "windows", nothing)) == [PUBLIC]


def _with_routes(*routes: dict[str, str], gateway: str = "10.1.0.1") -> dict[str, object]:
    return {"fa163e998877": {"mac": "fa:16:3e:99:88:77", "gateway": gateway, "gateway_v6": "2001:db8::1",
                             "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0"}],
                             "ip6s": [{"ip": "2001:db8::10", "netmask": 64}], "routes": list(routes)}}


def test_a_default_route_through_the_gateway_is_the_gateway() -> None:
    """A static default route of either family whose next hop is the interface's gateway is left out of "routes"
    (it is the adapter's gateway, set with SetGateways), so no netsh route ever names a default prefix."""
    network = parse(_with_routes({"route": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.0.1"},
                                 {"route": "::", "netmask": "0", "gateway": "2001:db8::1"},
                                 {"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.0.1"}), None, SYSTEM)
    doc = json.loads(windows.render(network, nothing)[PRIVATE])
    assert (doc["routes"], doc["gateways"], doc["gateway6"]) == ([["10.0.0.0/8", "10.1.0.1"]], ["10.1.0.1"],
                                                                 ["2001:db8::1"])


@pytest.mark.parametrize(("route", "message"), [
    ({"route": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.0.9"},
     "static default route 0.0.0.0/0 via 10.1.0.9, but its gateway is 10.1.0.1"),
    ({"route": "::", "netmask": "0", "gateway": "2001:db8::9"},
     "static default route ::/0 via 2001:db8::9, but its gateway is 2001:db8::1"),
])
def test_a_default_route_through_another_next_hop_is_refused(route: dict[str, str], message: str) -> None:
    """A static default route that names another next hop than the interface's gateway is refused at render
    time (so the machine replies "500", nothing changed) rather than set beside the gateway."""
    network = parse(_with_routes(route), None, SYSTEM)
    with pytest.raises(PlatformError, match=message):
        windows.render(network, nothing)


def test_more_routes_than_an_adapter_takes_are_refused() -> None:
    """More than MAX_ROUTES static routes on one interface are refused at render time, naming the bound."""
    routes = [{"route": f"10.{i // 256}.{i % 256}.0", "netmask": "255.255.255.0", "gateway": "10.1.0.1"}
              for i in range(windows.MAX_ROUTES + 1)]
    network = parse(_with_routes(*routes), None, SYSTEM)
    with pytest.raises(PlatformError, match=f"{windows.MAX_ROUTES + 1} static routes.* at most {windows.MAX_ROUTES}"):
        windows.render(network, nothing)
    assert len(json.loads(windows.render(parse(_with_routes(*routes[:-1]), None, SYSTEM), nothing)[PRIVATE])[
        "routes"]) == windows.MAX_ROUTES
