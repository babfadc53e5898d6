"""The netplan renderer: golden files for every scenario, and netplan's own generator."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.network.model import Network, parse
from agent.network.renderers import netplan
from tests.network.scenarios import GOLDEN as GOLDEN_ROOT
from tests.network.scenarios import SCENARIOS, SYSTEM, check_golden, nothing

GOLDEN = GOLDEN_ROOT / "netplan"
NETPLAN = shutil.which("netplan") or shutil.which("netplan", path="/usr/sbin:/sbin")
NEEDS_NETPLAN = pytest.mark.skipif(
    not NETPLAN, reason="netplan not found: install Debian's netplan.io package (scripts/bootstrap does)")


@pytest.fixture(scope="module")
def netplan_runs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip the tool checks, saying why, when netplan cannot start at all: as a non-root user, Debian 12's
    netplan 0.106 fails to find libnetplan through ctypes.util.find_library and dies on an undefined symbol."""
    if NETPLAN:
        root = tmp_path_factory.mktemp("netplan-probe")
        probe = subprocess.run([NETPLAN, "generate", "--root-dir", str(root)], capture_output=True, text=True)
        if probe.returncode != 0 and "libnetplan" in probe.stderr:
            last = probe.stderr.strip().splitlines()[-1]
            pytest.skip(f"netplan generate cannot start here (uid {os.getuid()}): {last}")


def generate(network: Network, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``netplan generate`` on the rendered file under ``root``, written 0600 as the machine writes it."""
    target = root / netplan.PATH.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(netplan.render(network, nothing)[netplan.PATH])
    target.chmod(0o600)
    return subprocess.run([str(NETPLAN), "generate", "--root-dir", str(root)], capture_output=True, text=True)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden(scenario: str) -> None:
    """Each scenario renders exactly its golden file."""
    check_golden(GOLDEN / scenario, netplan.render(SCENARIOS[scenario], nothing))


@NEEDS_NETPLAN
@pytest.mark.usefixtures("netplan_runs")
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_netplan_generate_accepts(scenario: str, tmp_path: Path) -> None:
    """netplan generates networkd files without a warning, with every address, gateway, route and server."""
    network = SCENARIOS[scenario]
    result = generate(network, tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    for interface in network.interfaces:
        text = (tmp_path / f"run/systemd/network/10-netplan-{interface.name}.network").read_text()
        assert f"PermanentMACAddress={interface.mac}\n" in text
        for address in interface.addresses:
            assert f"Address={address.with_prefixlen}\n" in text
        for server in interface.dns:
            assert f"DNS={server}\n" in text
        for route in interface.routes:
            assert f"Destination={route.destination.with_prefixlen}\nGateway={route.gateway}\n" in text
        for default in (network.gateway4, network.gateway6):
            if default is not None:
                carried = f"Destination={'0.0.0.0/0' if default[1].version == 4 else '::/0'}\nGateway={default[1]}\n"
                assert (carried in text) == (default[0] is interface)


def single(extra: dict[str, object]) -> Network:
    """A one-interface network (eth0) from nova's fields."""
    return parse({"fa163e0a1b2c": {"label": "public", "mac": "fa:16:3e:0a:1b:2c", **extra}}, None, SYSTEM)


def test_default_route_only_on_its_interface() -> None:
    """Only the first interface with a gateway carries the default route (``to: default``, not gateway4)."""
    public = {"label": "public", "mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1",
              "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}]}
    private = {"label": "private", "mac": "fa:16:3e:99:88:77", "gateway": "10.1.0.1",
               "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0"}]}
    text = netplan.render(parse({"a": public, "b": private}, None, SYSTEM), nothing)[netplan.PATH].decode()
    assert text.count('- to: "default"') == 1 and '"10.1.0.1"' not in text and "gateway4" not in text


@NEEDS_NETPLAN
@pytest.mark.usefixtures("netplan_runs")
def test_off_link_gateway_is_on_link(tmp_path: Path) -> None:
    """A gateway outside the interface's subnets gets ``on-link: true``, which networkd turns into GatewayOnLink."""
    network = single({"gateway": "192.0.2.1", "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}]})
    assert "          on-link: true\n" in netplan.render(network, nothing)[netplan.PATH].decode()
    result = generate(network, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "GatewayOnLink=true" in (tmp_path / "run/systemd/network/10-netplan-eth0.network").read_text()


def test_output_is_stable() -> None:
    """The same network gives the same bytes, and every string is quoted (a MAC is never a number)."""
    first = netplan.render(SCENARIOS["two-nics"], nothing)
    assert first == netplan.render(SCENARIOS["two-nics"], nothing)
    assert b'macaddress: "fa:16:3e:0a:1b:2c"\n' in first[netplan.PATH]
