"""The systemd-networkd renderer: golden files for every scenario, their structure, and networkd's own parser."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.network.model import parse
from agent.network.renderers import networkd
from tests.network.scenarios import SCENARIOS, SYSTEM

GOLDEN = Path(__file__).parent / "golden" / "networkd"
NETWORKD = Path("/lib/systemd/systemd-networkd")


def _nothing(path: str) -> bytes | None:
    return None


def _golden(scenario: str) -> dict[str, bytes]:
    base = GOLDEN / scenario
    return {"/" + p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


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
    files = networkd.render(SCENARIOS[scenario], _nothing)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN / scenario, ignore_errors=True)
        for path, data in files.items():
            target = GOLDEN / scenario / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    assert files == _golden(scenario)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_render_is_deterministic_and_reads_nothing(scenario: str) -> None:
    """Rendering twice gives the same bytes, and ``current`` is never consulted (the files are the agent's own)."""
    def forbidden(path: str) -> bytes | None:
        raise AssertionError(f"networkd read {path}")
    assert networkd.render(SCENARIOS[scenario], forbidden) == networkd.render(SCENARIOS[scenario], forbidden)


def test_two_nics_structure() -> None:
    """Match by MAC, addresses, default routes only on the interface carrying them, DNS, and [Route] sections."""
    files = networkd.render(SCENARIOS["two-nics"], _nothing)
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
    for files in (networkd.render(network, _nothing) for network in SCENARIOS.values()):
        for data in files.values():
            assert data.startswith(b"# Written by openstack-agent resetnetwork")


def test_second_gateway_is_not_a_second_default_route() -> None:
    """Only the first interface with a gateway gets ``Gateway=``; another interface's gateway is dropped."""
    entries = {"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1",
                                "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}]},
               "fa163e998877": {"mac": "fa:16:3e:99:88:77", "gateway": "10.1.0.1",
                                "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0"}]}}
    files = networkd.render(parse(entries, None, SYSTEM), _nothing)
    assert b"Gateway=203.0.113.1" in files["/etc/systemd/network/50-openstack-agent-eth0.network"]
    assert b"Gateway" not in files["/etc/systemd/network/50-openstack-agent-eth1.network"]


def test_off_link_gateways_are_onlink_routes() -> None:
    """A gateway outside the interface's subnets is a [Route] with GatewayOnLink=yes, for the default route and
    for static routes alike."""
    entries = {"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway": "198.51.100.1",
                                "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.255"}],
                                "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "198.51.100.2"}]}}
    sections = _ini(networkd.render(parse(entries, None, SYSTEM), _nothing)[
        "/etc/systemd/network/50-openstack-agent-eth0.network"])
    assert sections[1:] == [("Network", [("Address", "203.0.113.10/32")]),
                            ("Route", [("Gateway", "198.51.100.1"), ("GatewayOnLink", "yes")]),
                            ("Route", [("Destination", "10.0.0.0/8"), ("Gateway", "198.51.100.2"),
                                       ("GatewayOnLink", "yes")])]


def _networkd_parse(directory: Path) -> str:
    """networkd's own log of reading ``directory`` as /etc/systemd/network, in private mount and network
    namespaces (with its other directories emptied), so nothing on this machine changes."""
    empty = directory.parent / "empty"
    empty.mkdir()
    script = ("set -e; mount --bind \"$1\" /etc/systemd/network; mount -t tmpfs tmpfs /run/systemd;"
              " for d in /usr/lib/systemd/network /lib/systemd/network /usr/local/lib/systemd/network; do"
              " [ -d $d ] && mount --bind \"$2\" $d; done;"
              " SYSTEMD_LOG_LEVEL=info SYSTEMD_LOG_TARGET=console timeout 3 \"$3\" || true")
    result = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script, "sh",
                             str(directory), str(empty), str(NETWORKD)],
                            capture_output=True, text=True, timeout=60, check=False)
    return result.stdout + result.stderr


def _can_run_networkd() -> str | None:
    if not NETWORKD.exists():
        return f"{NETWORKD} is not installed"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "running systemd-networkd in private namespaces needs root and unshare"
    if not Path("/etc/systemd/network").is_dir():
        return "/etc/systemd/network does not exist to mount over"
    return None


def test_networkd_itself_rejects_a_bad_file(tmp_path: Path) -> None:
    """The check below is real: networkd logs an unknown key and a bad MAC in a file it reads."""
    reason = _can_run_networkd()
    if reason:
        pytest.skip(reason)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "50-bad.network").write_text("[Match]\nMACAddress=zz\n[Network]\nBogus=1\n")
    log = _networkd_parse(tmp_path / "etc")
    assert "Unknown key 'Bogus'" in log and "Not a valid hardware address" in log


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_networkd_reads_every_file_without_a_complaint(scenario: str, tmp_path: Path) -> None:
    """systemd-networkd (Debian 12's, 252) parses each rendered file and logs nothing about it: every section,
    key and value is one it knows."""
    reason = _can_run_networkd()
    if reason:
        pytest.skip(reason)
    (tmp_path / "etc").mkdir()
    for path, data in networkd.render(SCENARIOS[scenario], _nothing).items():
        (tmp_path / "etc" / Path(path).name).write_bytes(data)
    log = _networkd_parse(tmp_path / "etc")
    assert "Enumeration completed" in log, log
    assert ".network" not in log, log
