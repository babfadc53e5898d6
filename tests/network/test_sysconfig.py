"""The sysconfig renderer: golden ifcfg and route files for every scenario, from nothing and over present
files whose unmanaged keys survive, and each file read back by sh as the value it was meant to hold."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from agent.network.renderers import sysconfig
from tests.network.scenarios import GOLDEN, SCENARIOS, check_golden, sh_values

D = "/etc/sysconfig/network-scripts"
#: Files an image or an earlier writer left: unmanaged keys and comments to keep, stale managed keys to drop.
PRESENT = {
    f"{D}/ifcfg-eth0": (b"# Created by cloud-init on instance boot automatically, do not edit.\n"
                        b"DEVICE=eth0\nBOOTPROTO=dhcp\nNM_CONTROLLED=no\n"
                        b"IPADDR1=203.0.113.50\nNETMASK1=255.255.255.0\nGATEWAY=203.0.113.254\n"
                        b"MTU=9000\nETHTOOL_OPTS=\"-K eth0 tso off\"\nZONE=public\n"),
    f"{D}/ifcfg-eth1": b"DEVICE=eth1\nGATEWAY=10.1.0.254\nDEFROUTE=no\nMTU=1450\n# the private network",
    f"{D}/route-eth1": b"172.16.0.0/12 via 10.1.0.254 dev eth1\n",
    f"{D}/route6-eth0": b"2001:db8:1::/48 via 2001:db8::1 dev eth0\n",
}
CASES: dict[str, dict[str, bytes]] = {"fresh": {}, "kept": PRESENT}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("case", CASES)
def test_sysconfig_matches_the_golden_files(scenario: str, case: str) -> None:
    """Each scenario's ifcfg and route files, from nothing and over present files, are the golden ones."""
    files = sysconfig.render(SCENARIOS[scenario], CASES[case].get)
    check_golden(GOLDEN / "sysconfig" / scenario / case, files)


def source(tmp_path: Path, data: bytes, names: list[str]) -> dict[str, str]:
    return sh_values(tmp_path / "ifcfg", data, names)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ifcfg_files_read_back_in_sh_as_written(tmp_path: Path, scenario: str) -> None:
    """sh parses every ifcfg file and gets back each managed value and each kept key's, exactly."""
    network = SCENARIOS[scenario]
    files = sysconfig.render(network, PRESENT.get)
    gateway = network.gateway4
    for interface in network.interfaces:
        data = files[f"{D}/ifcfg-{interface.name}"]
        gw4 = str(gateway[1]) if gateway and gateway[0] is interface else None
        keys = sysconfig.ifcfg_keys(interface, gw4, None)
        assert source(tmp_path, data, list(keys)) == keys
        kept = {"eth0": {"MTU": "9000", "ETHTOOL_OPTS": "-K eth0 tso off", "ZONE": "public"},
                "eth1": {"MTU": "1450"}}[interface.name]
        assert source(tmp_path, data, list(kept)) == kept


def test_stale_managed_keys_go_and_unmanaged_lines_stay() -> None:
    """Stale IPADDR1/NETMASK1, NM_CONTROLLED=no and a moved GATEWAY go; MTU, ETHTOOL_OPTS, ZONE, comments stay."""
    files = sysconfig.render(SCENARIOS["two-nics"], PRESENT.get)
    eth0 = files[f"{D}/ifcfg-eth0"].decode()
    for stale in ("NM_CONTROLLED", "IPADDR1", "NETMASK1", "BOOTPROTO=dhcp", "GATEWAY=203.0.113.254"):
        assert stale not in eth0
    assert eth0.endswith("# Created by cloud-init on instance boot automatically, do not edit.\n"
                         "MTU=9000\nETHTOOL_OPTS=\"-K eth0 tso off\"\nZONE=public\n")
    eth1 = files[f"{D}/ifcfg-eth1"].decode()
    assert "GATEWAY" not in eth1 and "DEFROUTE" not in eth1
    assert eth1.endswith("MTU=1450\n# the private network\n")


def test_route_files_are_written_whole_and_emptied_when_routes_go() -> None:
    """route-<if> holds exactly nova's routes; a present route file with none left is emptied, none is made."""
    files = sysconfig.render(SCENARIOS["two-nics"], PRESENT.get)
    assert files[f"{D}/route-eth1"].splitlines()[1:] == [b"10.0.0.0/8 via 10.1.0.1 dev eth1",
                                                          b"192.168.0.0/16 via 10.1.0.1 dev eth1"]
    assert files[f"{D}/route6-eth0"] == (sysconfig.ROUTE_HEADER + "\n").encode()
    assert f"{D}/route-eth0" not in files


def test_rendering_is_idempotent() -> None:
    """Rendering over the renderer's own output gives the same bytes, so the comment and keys never pile up."""
    network = SCENARIOS["two-nics"]
    first = sysconfig.render(network, PRESENT.get)
    assert sysconfig.render(network, first.get) == first


def test_extra_addresses_are_numbered_and_secondaries_listed() -> None:
    """A second IPv4 address is IPADDR1/PREFIX1; IPv6 beyond the first go in IPV6ADDR_SECONDARIES, quoted."""
    interface = dataclasses.replace(SCENARIOS["two-nics"].interfaces[0], addresses=(
        ipaddress.ip_interface("203.0.113.10/24"), ipaddress.ip_interface("198.51.100.7/25"),
        ipaddress.ip_interface("2001:db8::10/64"), ipaddress.ip_interface("2001:db8::11/64"),
        ipaddress.ip_interface("2001:db8:5::1/56")))
    keys = sysconfig.ifcfg_keys(interface, None, None)
    assert (keys["IPADDR1"], keys["PREFIX1"]) == ("198.51.100.7", "25")
    assert keys["IPV6ADDR_SECONDARIES"] == "2001:db8::11/64 2001:db8:5::1/56"
    assert b'IPV6ADDR_SECONDARIES="2001:db8::11/64 2001:db8:5::1/56"\n' in sysconfig.merge(keys, None)
