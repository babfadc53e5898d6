"""The host name and DNS files: golden files for every scenario, with and without present files, and the
merge rules (the agent's own lines replaced, every other line kept)."""

from __future__ import annotations

import pytest

from agent.network.model import Network, parse
from agent.network.names import render_names
from tests.network.scenarios import GOLDEN, SCENARIOS, SYSTEM, check_golden

HOSTS = (b"127.0.0.1\tlocalhost\n"
         b"127.0.1.1\told-name.example.org\told-name\n"
         b"# The following lines are desirable for IPv6 capable hosts\n"
         b"::1     localhost ip6-localhost ip6-loopback\n"
         b"10.9.8.7 db.internal db")
RESOLV_CONF = (b"# Written by hand\n"
               b"search example.com\n"
               b"nameserver 192.0.2.1\n"
               b"nameserver 192.0.2.2\n"
               b"options rotate timeout:1\n")
BASE = b"search example.com\noptions edns0\n"

#: (stack, case) -> the files present before: none, or ones holding lines the agent does not manage.
CASES: dict[tuple[str, str], dict[str, bytes]] = {
    ("ifupdown", "fresh"): {},
    ("ifupdown", "kept"): {"/etc/hosts": HOSTS, "/etc/resolv.conf": RESOLV_CONF},
    ("ifupdown", "resolvconf"): {"/etc/hosts": HOSTS, "/etc/resolv.conf": b"nameserver 127.0.0.53\n",
                                 "/etc/resolvconf/resolv.conf.d/base": BASE},
    ("sysconfig", "fresh"): {},
    ("sysconfig", "kept"): {"/etc/hosts": HOSTS, "/etc/resolv.conf": RESOLV_CONF},
    ("freebsd", "fresh"): {},
    ("freebsd", "kept"): {"/etc/hosts": HOSTS, "/etc/resolv.conf": RESOLV_CONF},
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize(("stack", "case"), CASES)
def test_names_match_the_golden_files(scenario: str, stack: str, case: str) -> None:
    """Each scenario's host name and DNS files, per stack, from nothing and over present files, are the golden ones."""
    present = CASES[stack, case]
    files = render_names(SCENARIOS[scenario], present.get, stack)
    check_golden(GOLDEN / "names" / scenario / f"{stack}-{case}", files)


def test_the_agent_line_replaces_the_127_0_1_1_line_and_keeps_the_rest() -> None:
    """The old 127.0.1.1 line gives way to the new name in its place; every other line stays byte for byte."""
    out = render_names(SCENARIOS["two-nics"], {"/etc/hosts": HOSTS}.get, "ifupdown")["/etc/hosts"]
    assert out.splitlines() == [b"127.0.0.1\tlocalhost", b"127.0.1.1\tweb-1.example.com web-1",
                                *HOSTS.splitlines()[2:]]


def test_a_hosts_file_without_the_line_gets_it_after_localhost() -> None:
    """With no 127.0.1.1 line, the agent's goes after the first 127.0.0.1 line; repeats are folded into one."""
    present = b"127.0.0.1 localhost\n::1 localhost\n"
    out = render_names(SCENARIOS["one-nic-ipv4"], {"/etc/hosts": present}.get, "ifupdown")["/etc/hosts"]
    assert out == b"127.0.0.1 localhost\n127.0.1.1\tweb-1\n::1 localhost\n"
    twice = b"127.0.1.1 a\n127.0.0.1 localhost\n127.0.1.1 b\n"
    out = render_names(SCENARIOS["one-nic-ipv4"], {"/etc/hosts": twice}.get, "ifupdown")["/etc/hosts"]
    assert out == b"127.0.1.1\tweb-1\n127.0.0.1 localhost\n"


def test_nameservers_are_replaced_and_search_and_options_kept() -> None:
    """resolv.conf's nameserver lines are nova's, where the old ones were; search, options and comments stay."""
    out = render_names(SCENARIOS["two-nics"], {"/etc/resolv.conf": RESOLV_CONF}.get, "ifupdown")
    assert out["/etc/resolv.conf"] == (b"# Written by hand\nsearch example.com\nnameserver 198.51.100.53\n"
                                       b"nameserver 198.51.100.54\noptions rotate timeout:1\n")


def test_resolvconf_gets_its_base_file_and_resolv_conf_is_left_to_it() -> None:
    """With resolvconf's base file present, the name servers go there and /etc/resolv.conf is not written."""
    present = {"/etc/resolv.conf": b"nameserver 127.0.0.53\n", "/etc/resolvconf/resolv.conf.d/base": BASE}
    out = render_names(SCENARIOS["one-nic-ipv4"], present.get, "ifupdown")
    assert "/etc/resolv.conf" not in out
    assert out["/etc/resolvconf/resolv.conf.d/base"] == BASE + b"nameserver 198.51.100.53\n"


def test_stacks_that_carry_dns_themselves_get_no_resolver_file() -> None:
    """sysconfig, netplan, networkd and NetworkManager write DNS their own way; names leaves resolv.conf alone."""
    for stack in ("sysconfig", "netplan", "networkd", "networkmanager"):
        assert not {"/etc/resolv.conf", "/etc/resolvconf/resolv.conf.d/base"} & set(
            render_names(SCENARIOS["two-nics"], {}.get, stack))


def test_no_name_servers_leaves_the_resolver_as_it_is() -> None:
    """A network without DNS writes no resolver file, so the guest keeps the servers it has."""
    network = parse({"fa163e998877": {"label": "private", "mac": "fa:16:3e:99:88:77"}}, None, SYSTEM)
    assert render_names(network, {"/etc/resolv.conf": RESOLV_CONF}.get, "ifupdown") == {}


def test_the_hostname_file_follows_each_stack_convention() -> None:
    """Red Hat gets the full name, Debian-style stacks the first label, FreeBSD none (its name is in rc.conf)."""
    network: Network = SCENARIOS["two-nics"]
    assert render_names(network, {}.get, "sysconfig")["/etc/hostname"] == b"web-1.example.com\n"
    assert render_names(network, {}.get, "netplan")["/etc/hostname"] == b"web-1\n"
    assert "/etc/hostname" not in render_names(network, {}.get, "freebsd")
    assert "/etc/hosts" not in render_names(SCENARIOS["no-gateway"], {}.get, "netplan")
