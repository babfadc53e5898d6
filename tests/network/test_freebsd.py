"""The FreeBSD renderer: golden rc.conf files for every scenario, from nothing and over a present rc.conf whose
other lines survive byte for byte, and the result read back by sh as rc(8) reads it."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from agent.network.model import Route
from agent.network.renderers import freebsd
from tests.network.scenarios import GOLDEN, SCENARIOS, check_golden, sh_values

#: An installed system's rc.conf with an earlier network: the agent's stale variables among lines it must keep
#: (a multi-line value holding text that looks like an assignment, a trailing comment, a foreign route).
RC_CONF = (b'hostname="old-name"\n'
           b'# Set dumpdev to "AUTO" to enable crash dumps, "NO" to disable\n'
           b'dumpdev="AUTO"\n'
           b'ifconfig_eth0="DHCP"\n'
           b'ifconfig_eth0_alias0="inet 203.0.113.50 netmask 255.255.255.255"\n'
           b'ifconfig_eth0_alias1="inet 203.0.113.51 netmask 255.255.255.255"\n'
           b'ifconfig_lo0_alias0="inet 127.0.0.2 netmask 255.255.255.255"\n'
           b'ifconfig_eth1_descr="private"\n'
           b'defaultrouter="203.0.113.254"\n'
           b'static_routes="backup agent_eth0_0"\n'
           b'route_backup="-net 198.18.0.0/15 203.0.113.254"\n'
           b'route_agent_eth0_0="-net 172.16.0.0/12 203.0.113.254"\n'
           b'keymap="us.kbd" # set by bsdinstall\n'
           b"motd_text='first line\n"
           b"hostname=not-a-setting'\n"
           b'sshd_enable="YES"')
CASES: dict[str, dict[str, bytes]] = {"fresh": {}, "kept": {"/etc/rc.conf": RC_CONF}}
#: Variables of RC_CONF the agent never touches, with the values sh gives them.
FOREIGN = {"dumpdev": "AUTO", "ifconfig_lo0_alias0": "inet 127.0.0.2 netmask 255.255.255.255",
           "ifconfig_eth1_descr": "private", "route_backup": "-net 198.18.0.0/15 203.0.113.254",
           "keymap": "us.kbd", "motd_text": "first line\nhostname=not-a-setting", "sshd_enable": "YES"}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("case", CASES)
def test_rc_conf_matches_the_golden_files(scenario: str, case: str) -> None:
    """Each scenario's rc.conf, from nothing and edited from an installed one, is the golden one."""
    files = freebsd.render(SCENARIOS[scenario], CASES[case].get)
    check_golden(GOLDEN / "freebsd" / scenario / case, files)


def source(tmp_path: Path, data: bytes, names: list[str]) -> dict[str, str]:
    return sh_values(tmp_path / "rc.conf", data, names)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("case", CASES)
def test_rc_conf_reads_back_in_sh_as_written(tmp_path: Path, scenario: str, case: str) -> None:
    """sh parses the rc.conf and gets each of the agent's values, and each foreign one unchanged."""
    network = SCENARIOS[scenario]
    data = freebsd.render(network, CASES[case].get)["/etc/rc.conf"]
    values = freebsd.settings(network, CASES[case].get("/etc/rc.conf") or b"")
    assert source(tmp_path, data, list(values)) == values
    if case == "kept":
        assert source(tmp_path, data, list(FOREIGN)) == FOREIGN


def test_stale_variables_go_and_every_other_line_stays_byte_for_byte() -> None:
    """Stale aliases, router and agent route go; every line assigning nothing of the agent's stays, in order."""
    network = SCENARIOS["two-nics"]
    out = freebsd.render(network, {"/etc/rc.conf": RC_CONF}.get)["/etc/rc.conf"]
    for stale in (b"_alias0", b"_alias1=", b'defaultrouter="203.0.113.254"', b"route_agent_eth0_0",
                  b"old-name", b"DHCP"):
        assert stale not in out.replace(b"ifconfig_lo0_alias0", b"")
    assert b'static_routes="backup agent_eth1_0 agent_eth1_1"\n' in out
    owned = freebsd.owned(network)
    foreign = [chunk for name, chunk in freebsd.logical_lines(RC_CONF) if name is None or not owned(name)]
    assert [c.rstrip(b"\n") for c in foreign] == [
        c.rstrip(b"\n") for name, c in freebsd.logical_lines(out) if name is None or not owned(name)
        if c.rstrip(b"\n") != freebsd.HEADER.encode()]


def test_a_present_variable_is_rewritten_in_its_place() -> None:
    """hostname and ifconfig_eth0 keep their lines' places; only the variables new to the file are appended."""
    out = freebsd.render(SCENARIOS["one-nic-ipv4"], {"/etc/rc.conf": RC_CONF}.get)["/etc/rc.conf"].splitlines()
    assert out[0] == b'hostname="web-1"'
    assert out[3] == b'ifconfig_eth0="inet 203.0.113.10 netmask 255.255.255.0"'
    assert b'defaultrouter="203.0.113.1"' in out[:10]


def test_a_network_without_a_gateway_removes_the_default_router_and_leaves_other_interfaces() -> None:
    """No gateway removes defaultrouter; eth0 (not nova's) and the host name (none given) keep their lines."""
    out = freebsd.render(SCENARIOS["no-gateway"], {"/etc/rc.conf": RC_CONF}.get)["/etc/rc.conf"]
    assert b"defaultrouter" not in out
    assert b'ifconfig_eth0="DHCP"\n' in out and b'hostname="old-name"\n' in out
    assert b'static_routes="backup"\n' in out and b"route_agent_eth0_0" not in out


def test_rendering_is_idempotent() -> None:
    """Rendering over the renderer's own output gives the same bytes; the comment is put once."""
    for present in ({}, {"/etc/rc.conf": RC_CONF}):
        first = freebsd.render(SCENARIOS["two-nics"], present.get)
        assert freebsd.render(SCENARIOS["two-nics"], first.get) == first
        assert first["/etc/rc.conf"].count(freebsd.HEADER.encode()) == 1


def test_extra_addresses_are_aliases_counted_from_zero_and_ipv6_routes_use_prefixlen() -> None:
    """Extra addresses are alias0.. (IPv4 first, /32 in a known subnet); IPv6 routes take the -prefixlen form."""
    base = SCENARIOS["two-nics"].interfaces[0]
    interface = dataclasses.replace(base, addresses=(
        ipaddress.ip_interface("203.0.113.10/24"), ipaddress.ip_interface("203.0.113.11/24"),
        ipaddress.ip_interface("198.51.100.7/25"), ipaddress.ip_interface("2001:db8::10/64"),
        ipaddress.ip_interface("2001:db8::11/64")), routes=(
        Route(ipaddress.ip_network("2001:db8:100::/48"), ipaddress.ip_address("2001:db8::1")),))
    network = dataclasses.replace(SCENARIOS["two-nics"], interfaces=(interface,))
    values = freebsd.settings(network, b"")
    assert values["ifconfig_eth0_alias0"] == "inet 203.0.113.11 netmask 255.255.255.255"
    assert values["ifconfig_eth0_alias1"] == "inet 198.51.100.7 netmask 255.255.255.128"
    assert values["ifconfig_eth0_alias2"] == "inet6 2001:db8::11 prefixlen 64"
    assert values["ipv6_static_routes"] == "agent_eth0_0"
    assert values["ipv6_route_agent_eth0_0"] == "2001:db8:100:: -prefixlen 48 2001:db8::1"
    assert "static_routes" not in values


def test_values_are_quoted_so_sh_gives_them_back(tmp_path: Path) -> None:
    """A value with sh's special characters is escaped inside double quotes and sources back exactly."""
    nasty = 'a "b" $c `d` \\e'
    line = freebsd.assignment("x", nasty) + b"\n"
    assert source(tmp_path, line, ["x"]) == {"x": nasty}
