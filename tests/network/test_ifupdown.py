"""The ifupdown renderer: golden files for every scenario, ifupdown's own parser, and /etc/network/interfaces."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.network.model import Network, parse
from agent.network.renderers import ifupdown
from tests.network.scenarios import GOLDEN as GOLDEN_ROOT
from tests.network.scenarios import SCENARIOS, SYSTEM, check_golden, nothing

GOLDEN = GOLDEN_ROOT / "ifupdown"
IFQUERY = shutil.which("ifquery") or (os.path.exists("/usr/sbin/ifquery") and "/usr/sbin/ifquery") or None
NEEDS_IFQUERY = pytest.mark.skipif(
    not IFQUERY, reason="ifquery not found: install Debian's ifupdown package (scripts/bootstrap does)")


def single(extra: dict[str, object]) -> Network:
    """A one-interface network (eth0) from nova's fields."""
    return parse({"fa163e0a1b2c": {"label": "public", "mac": "fa:16:3e:0a:1b:2c", **extra}}, None, SYSTEM)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden(scenario: str) -> None:
    """Each scenario renders exactly its golden files, the agent's file and a fresh /etc/network/interfaces."""
    check_golden(GOLDEN / scenario, ifupdown.render(SCENARIOS[scenario], nothing))


@NEEDS_IFQUERY
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ifquery_reads_every_interface(scenario: str, tmp_path: Path) -> None:
    """ifupdown's parser reads /etc/network/interfaces, through its source line, with every address."""
    network = SCENARIOS[scenario]
    files = ifupdown.render(network, nothing)
    (tmp_path / "interfaces.d").mkdir()
    (tmp_path / "interfaces.d" / Path(ifupdown.PATH).name).write_bytes(files[ifupdown.PATH])
    interfaces = files[ifupdown.INTERFACES].replace(b"/etc/network/", f"{tmp_path}/".encode())
    (tmp_path / "interfaces").write_bytes(interfaces)
    listed = subprocess.run([str(IFQUERY), "-i", str(tmp_path / "interfaces"), "--list"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert set(listed) == {"lo", *(i.name for i in network.interfaces)}
    for interface in network.interfaces:
        result = subprocess.run([str(IFQUERY), "-i", str(tmp_path / "interfaces"), interface.name],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for address in interface.addresses:
            assert f"address: {address.ip}\n" in result.stdout


def test_several_addresses_are_several_stanzas() -> None:
    """A second address of a family is a second ``iface`` stanza of the same interface, not an alias."""
    network = single({"gateway": "203.0.113.1", "ips": [
        {"ip": "203.0.113.10", "netmask": "255.255.255.0"}, {"ip": "198.51.100.7", "netmask": "255.255.255.0"}],
        "ip6s": [{"ip": "2001:db8::10", "netmask": 64}, {"ip": "2001:db8:1::10", "netmask": 64}]})
    text = ifupdown.render(network, nothing)[ifupdown.PATH].decode()
    assert text.count("iface eth0 inet static\n") == 2 and text.count("iface eth0 inet6 static\n") == 2
    assert "eth0:" not in text and text.count("gateway ") == 1
    assert "    address 198.51.100.7/24\n" in text and "    address 2001:db8:1::10/64\n" in text


@NEEDS_IFQUERY
def test_ifquery_reads_several_stanzas(tmp_path: Path) -> None:
    """ifupdown accepts several stanzas of one interface and family (what interfaces(5) documents)."""
    network = single({"ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"},
                              {"ip": "198.51.100.7", "netmask": "255.255.255.0"}]})
    (tmp_path / "cfg").write_bytes(ifupdown.render(network, nothing)[ifupdown.PATH])
    result = subprocess.run([str(IFQUERY), "-i", str(tmp_path / "cfg"), "eth0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "address: 203.0.113.10\n" in result.stdout


def test_off_link_route_is_onlink() -> None:
    """A route whose gateway is outside the interface's subnets carries ``onlink``, or the kernel refuses it."""
    network = single({"ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}],
                      "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "192.0.2.1"}]})
    text = ifupdown.render(network, nothing)[ifupdown.PATH].decode()
    assert "    up ip route replace 10.0.0.0/8 via 192.0.2.1 dev eth0 onlink\n" in text


def test_interface_without_addresses_is_manual() -> None:
    """An interface with no enabled address is brought up with no address (``inet manual``)."""
    text = ifupdown.render(single({"ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "0"}]}),
                           nothing)[ifupdown.PATH].decode()
    assert "auto eth0\niface eth0 inet manual\n" in text and "address" not in text


def test_interfaces_that_sources_already_is_left_alone() -> None:
    """/etc/network/interfaces that already sources interfaces.d (Debian's default) is not rewritten."""
    current = b"auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n"
    files = ifupdown.render(SCENARIOS["two-nics"], {ifupdown.INTERFACES: current}.get)
    assert set(files) == {ifupdown.PATH}


def test_relative_source_counts() -> None:
    """A relative ``source`` pattern is read from /etc/network, as ifupdown reads it."""
    current = b"auto lo\niface lo inet loopback\nsource interfaces.d/*.cfg\n"
    assert set(ifupdown.render(SCENARIOS["two-nics"], {ifupdown.INTERFACES: current}.get)) == {ifupdown.PATH}


def test_source_directory_does_not_count() -> None:
    """``source-directory`` skips names with a dot, so it does not take in the agent's ``.cfg`` file."""
    current = b"auto lo\niface lo inet loopback\nsource-directory /etc/network/interfaces.d\n"
    files = ifupdown.render(SCENARIOS["two-nics"], {ifupdown.INTERFACES: current}.get)
    assert files[ifupdown.INTERFACES] == current + b"\nsource /etc/network/interfaces.d/*\n"


def test_interfaces_is_made_to_source_keeping_the_rest() -> None:
    """A file without the source line keeps its content, gains the line and a loopback stanza, and its own
    stanzas for an interface the agent now manages are commented out (both would be applied)."""
    current = (b"# my comment\nauto eth0 eth2\niface eth0 inet dhcp\n    hostname web\n\n"
               b"iface eth2 inet static\n    address 192.0.2.5/24\n")
    files = ifupdown.render(SCENARIOS["one-nic-ipv4"], {ifupdown.INTERFACES: current}.get)
    assert files[ifupdown.INTERFACES].decode() == (
        "# my comment\n"
        "# disabled by openstack-agent resetnetwork: auto eth0 eth2\n"
        "auto eth2\n"
        "# disabled by openstack-agent resetnetwork: iface eth0 inet dhcp\n"
        "# disabled by openstack-agent resetnetwork:     hostname web\n"
        "\n"
        "iface eth2 inet static\n"
        "    address 192.0.2.5/24\n"
        "\n"
        "auto lo\n"
        "iface lo inet loopback\n"
        "\n"
        "source /etc/network/interfaces.d/*\n")


def test_header_names_the_writer() -> None:
    """The agent's file says who wrote it, so an administrator knows where to change it."""
    text = ifupdown.render(SCENARIOS["no-gateway"], nothing)[ifupdown.PATH].decode()
    assert text.startswith("# Written by openstack-agent resetnetwork")
