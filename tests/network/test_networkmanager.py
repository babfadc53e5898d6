"""The NetworkManager renderer: golden keyfiles for every scenario, stable UUIDs, and libnm's own reader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.network.model import parse
from agent.network.renderers import networkmanager
from tests.network.scenarios import GOLDEN as GOLDEN_ROOT
from tests.network.scenarios import SCENARIOS, SYSTEM, check_golden, nothing

GOLDEN = GOLDEN_ROOT / "networkmanager"
SYSTEM_PYTHON = "/usr/bin/python3"
ETH0 = "/etc/NetworkManager/system-connections/openstack-agent-eth0.nmconnection"

#: Run by the system's Python (python3-gi and gir1.2-nm-1.0 are Debian packages, not in the venv): reads a
#: keyfile with libnm's own keyfile reader, verifies it as NetworkManager does before using a profile, writes it
#: back with libnm's writer, and prints what came out.
_LIBNM = r"""
import json, sys, gi
gi.require_version("NM", "1.0")
from gi.repository import GLib, NM
text = sys.stdin.read()
keyfile = GLib.KeyFile()
keyfile.load_from_data(text, len(text.encode()), GLib.KeyFileFlags.NONE)
warnings = []
def handler(keyfile, connection, kind, data, user_data):
    if kind == NM.KeyfileHandlerType.WARN:
        warnings.append(str(data.warn_get()))
    return False
connection = NM.keyfile_read(keyfile, "/etc/NetworkManager/system-connections", NM.KeyfileHandlerFlags.NONE,
                             handler, None)
try:
    connection.verify()
    error = None
except GLib.Error as e:
    error = e.message
written = NM.keyfile_write(connection, NM.KeyfileHandlerFlags.NONE, None, None)
groups = {g: {k: written.get_value(g, k) for k in written.get_keys(g)[0]} for g in written.get_groups()[0]}
print(json.dumps({"version": NM.utils_version(), "warnings": warnings, "error": error, "written": groups}))
"""


def _keys(text: bytes) -> dict[str, dict[str, str]]:
    """The keyfile's groups and keys (comments and blank lines left out)."""
    groups: dict[str, dict[str, str]] = {}
    group = ""
    for line in text.decode().splitlines():
        if line.startswith("["):
            group = line.strip("[]")
            groups[group] = {}
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            groups[group][key] = value
    return groups


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_render_matches_golden_files(scenario: str) -> None:
    """Each scenario renders exactly its golden keyfiles (UPDATE_GOLDEN=1 rewrites them)."""
    check_golden(GOLDEN / scenario, networkmanager.render(SCENARIOS[scenario], nothing))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_render_is_byte_identical_again_and_readsnothing(scenario: str) -> None:
    """Re-rendering gives the same bytes (UUIDs included), and ``current`` is never consulted."""
    def forbidden(path: str) -> bytes | None:
        raise AssertionError(f"networkmanager read {path}")
    network = SCENARIOS[scenario]
    assert networkmanager.render(network, forbidden) == networkmanager.render(network, forbidden)


def test_uuid_follows_the_mac_not_the_rest() -> None:
    """The same MAC keeps its UUID when the addresses change; another MAC gets another UUID."""
    one = _keys(networkmanager.render(SCENARIOS["one-nic-ipv4"], nothing)[ETH0])
    two = _keys(networkmanager.render(SCENARIOS["two-nics"], nothing)[ETH0])
    eth1 = _keys(networkmanager.render(SCENARIOS["no-gateway"], nothing)[ETH0.replace("eth0", "eth1")])
    assert one["connection"]["uuid"] == two["connection"]["uuid"] != eth1["connection"]["uuid"]


def test_two_nics_structure() -> None:
    """Bound by MAC; IPv4 and IPv6 manual with the gateways on eth0 only; routes on eth1; no IPv6 is disabled."""
    files = networkmanager.render(SCENARIOS["two-nics"], nothing)
    eth0, eth1 = _keys(files[ETH0]), _keys(files[ETH0.replace("eth0", "eth1")])
    assert eth0["connection"]["type"] == "ethernet" and "interface-name" not in eth0["connection"]
    assert eth0["ethernet"] == {"mac-address": "FA:16:3E:0A:1B:2C"}
    assert eth0["ipv4"] == {"method": "manual", "address1": "203.0.113.10/24", "gateway": "203.0.113.1",
                            "dns": "198.51.100.53;198.51.100.54;"}
    assert eth0["ipv6"] == {"method": "manual", "address1": "2001:db8::10/64", "gateway": "2001:db8::1"}
    assert eth1["ipv4"] == {"method": "manual", "address1": "10.1.2.3/16",
                            "route1": "10.0.0.0/8,10.1.0.1", "route2": "192.168.0.0/16,10.1.0.1"}
    assert eth1["ipv6"] == {"method": "disabled"}


def test_a_server_of_a_family_the_interface_lacks_moves_to_one_that_has_it() -> None:
    """NetworkManager refuses ``dns`` under ``method=disabled``: an IPv6 server listed for an IPv4-only interface
    goes to the interface with the IPv6 default route; one nobody could reach is left out."""
    entries = {"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway_v6": "2001:db8::1",
                                "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0"}],
                                "ip6s": [{"ip": "2001:db8::10", "netmask": 64}]},
               "fa163e998877": {"mac": "fa:16:3e:99:88:77", "dns": ["10.1.0.53", "2001:db8::53"],
                                "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0"}]}}
    files = networkmanager.render(parse(entries, None, SYSTEM), nothing)
    assert _keys(files[ETH0])["ipv6"]["dns"] == "2001:db8::53;"
    assert _keys(files[ETH0.replace("eth0", "eth1")])["ipv4"]["dns"] == "10.1.0.53;"
    alone = parse({"fa163e998877": entries["fa163e998877"]}, None, SYSTEM)
    only = _keys(networkmanager.render(alone, nothing)[ETH0.replace("eth0", "eth1")])
    assert only["ipv6"] == {"method": "disabled"}


def test_off_link_gateways_are_onlink_routes() -> None:
    """A gateway outside the interface's subnets becomes a default route with onlink=true; so do static routes'."""
    entries = {"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway": "198.51.100.1",
                                "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.255"}],
                                "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "198.51.100.2"}]}}
    ipv4 = _keys(networkmanager.render(parse(entries, None, SYSTEM), nothing)[ETH0])["ipv4"]
    assert ipv4 == {"method": "manual", "address1": "203.0.113.10/32",
                    "route1": "0.0.0.0/0,198.51.100.1", "route1_options": "onlink=true",
                    "route2": "10.0.0.0/8,198.51.100.2", "route2_options": "onlink=true"}


def _libnm(text: bytes) -> dict[str, object]:
    result = subprocess.run([SYSTEM_PYTHON, "-c", _LIBNM], input=text.decode(), capture_output=True, text=True,
                            timeout=60, check=True)
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def _libnm_missing() -> str | None:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('NM', '1.0')"],
                           capture_output=True, check=False) if Path(SYSTEM_PYTHON).exists() else None
    if probe is None or probe.returncode != 0:
        return ("libnm's keyfile reader is not importable from the system Python "
                "(apt-get install python3-gi gir1.2-nm-1.0)")
    return None


def _cases() -> list[tuple[str, bytes]]:
    off_link = parse({"fa163e0a1b2c": {"mac": "fa:16:3e:0a:1b:2c", "gateway": "198.51.100.1",
                                       "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.255"}]}}, None, SYSTEM)
    networks = {**SCENARIOS, "off-link": off_link}
    return [(f"{name}:{Path(path).name}", data) for name, network in sorted(networks.items())
            for path, data in sorted(networkmanager.render(network, nothing).items())]


@pytest.mark.parametrize(("case", "data"), _cases(), ids=[case for case, _ in _cases()])
def test_libnm_reads_and_verifies_every_keyfile(case: str, data: bytes) -> None:
    """libnm (Debian 12's NetworkManager 1.42 library, the daemon's own keyfile code) reads each keyfile without
    a warning, verifies the profile, and writes back every key with the value rendered (so no key is unknown
    or misread). nmcli 1.42 has no ``--offline`` mode for this; libnm is the real check available."""
    reason = _libnm_missing()
    if reason:
        pytest.skip(reason)
    result = _libnm(data)
    assert result["warnings"] == [] and result["error"] is None, result
    written = result["written"]
    assert isinstance(written, dict)
    for section in ("ipv4", "ipv6"):
        # libnm 1.42's writer folds the gateway into address1 (``<cidr>,<gateway>``); it means the same.
        address, _, gateway = written.get(section, {}).get("address1", "").partition(",")
        if gateway:
            written[section].update(address1=address, gateway=gateway)
    for group, keys in _keys(data).items():
        for key, value in keys.items():
            assert written[group][key] == value, (group, key, written[group][key])


def test_libnm_check_is_real() -> None:
    """libnm refuses what NetworkManager would: ``dns`` under ``method=disabled``."""
    reason = _libnm_missing()
    if reason:
        pytest.skip(reason)
    bad = networkmanager.render(SCENARIOS["no-gateway"], nothing)[ETH0.replace("eth0", "eth1")]
    result = _libnm(bad.replace(b"[ipv6]\nmethod=disabled\n", b"[ipv6]\nmethod=disabled\ndns=2001:db8::53;\n"))
    assert result["error"] == "ipv6.dns: this property is not allowed for 'method=disabled'"
