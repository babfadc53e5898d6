"""The systemd-networkd renderer: golden files for every scenario and their structure.

Nothing on Debian 12 validates a .network file offline (``systemd-analyze verify`` refuses them, and
systemd-networkd 252 has no check mode). Running the real networkd in private namespaces and reading its log
was tried: whether it logged its parse of the files within its run was not reliable (a known-bad file went
unreported under load), so a clean log proved nothing and that check is not kept. The end-to-end network
tests of resetnetwork will run networkd for real where it can run."""

from __future__ import annotations

import pytest

from agent.network.model import parse
from agent.network.renderers import networkd
from tests.network.scenarios import GOLDEN as GOLDEN_ROOT
from tests.network.scenarios import SCENARIOS, SYSTEM, check_golden, nothing

GOLDEN = GOLDEN_ROOT / "networkd"


def _ini(text: bytes) -> list[tuple[str, list[tuple[str, str]]]]:
    """The file's sections in order, each with its keys in order (repeated keys kept, as networkd reads them)."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            sections.append((line.strip("[]"), []))
        else:
            key, _, value = line.partition("=")
            sections[-1][1].append((key, value))
    return sections


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_render_matches_golden_files(scenario: str) -> None:
    """Each scenario renders exactly its golden files (UPDATE_GOLDEN=1 rewrites them)."""
    check_golden(GOLDEN / scenario, networkd.render(SCENARIOS[scenario], nothing))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_render_is_deterministic_and_readsnothing(scenario: str) -> None:
    """Rendering twice gives the same bytes, and ``current`` is never consulted (the files are the agent's own)."""
    def forbidden(path: str) -> bytes | None:
        raise AssertionError(f"networkd read {path}")
    assert networkd.render(SCENARIOS[scenario], forbidden) == networkd.render(SCENARIOS[scenario], forbidden)


def test_two_nics_structure() -> None:
    """Match by MAC, addresses, default routes only on the interface carrying them, DNS, and [Route] sections."""
    files = networkd.render(SCENARIOS["two-nics"], nothing)
    eth0 = _ini(files["/etc/systemd/network/50-openstack-agent-eth0.network"])
    eth1 = _ini(files["/etc/systemd/network/50-openstack-agent-eth1.network"])
    assert eth0 == [("Match", [("MACAddress", "fa:16:3e:0a:1b:2c")]),
                    ("Network", [("Address", "203.0.113.10/24"), ("Address", "2001:db8::10/64"),
                                 ("Gateway", "203.0.113.1"), ("Gateway", "2001:db8::1"),
                                 ("DNS", "198.51.100.53"), ("DNS", "198.51.100.54")])]
    assert eth1 == [("Match", [("MACAddress", "fa:16:3e:99:88:77")]),
                    ("Network", [("Address", "10.1.2.3/16")]),
                    ("Route", [("Destination", "10.0.0.0/8"), ("Gateway", "10.1.0.1")]),
                    ("Route", [("Destination", "192.168.0.0/16"), ("Gateway", "10.1.0.1")])]


def test_header_says_who_wrote_it() -> None:
    """Every file starts with a comment naming openstack-agent resetnetwork."""
    for files in (networkd.render(network, nothing) for network in SCENARIOS.values()):
        for data in files.values():
            assert data.startswith(b"# Written by openstack-agent resetnetwork")


def test_second_gateway_is_not_a_second_default_route() -> None:
    """Only the first interface with a gateway gets ``Gateway=``; another interface's gateway is dropped."""
    entries = {"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1",
                                "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}]},
               "fa163e998877": {"mac": "fa:16:3e:99:88:77", "gateway": "10.1.0.1",
                                "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0"}]}}
    files = networkd.render(parse(entries, None, SYSTEM), nothing)
    assert b"Gateway=203.0.113.1" in files["/etc/systemd/network/50-openstack-agent-eth0.network"]
    assert b"Gateway" not in files["/etc/systemd/network/50-openstack-agent-eth1.network"]


def test_off_link_gateways_are_onlink_routes() -> None:
    """A gateway outside the interface's subnets is a [Route] with GatewayOnLink=yes, for the default route and
    for static routes alike."""
    entries = {"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway": "198.51.100.1",
                                "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.255"}],
                                "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "198.51.100.2"}]}}
    sections = _ini(networkd.render(parse(entries, None, SYSTEM), nothing)[
        "/etc/systemd/network/50-openstack-agent-eth0.network"])
    assert sections[1:] == [("Network", [("Address", "203.0.113.10/32")]),
                            ("Route", [("Gateway", "198.51.100.1"), ("GatewayOnLink", "yes")]),
                            ("Route", [("Destination", "10.0.0.0/8"), ("Gateway", "198.51.100.2"),
                                       ("GatewayOnLink", "yes")])]
