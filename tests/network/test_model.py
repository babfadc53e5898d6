"""The network model: nova's vm-data parsed, checked and matched to the guest's interfaces."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.network.model import NetworkDataError, Route, parse, system_interfaces

PUBLIC = {"label": "public", "mac": "FA:16:3E:0A:1B:2C", "broadcast": "203.0.113.255", "gateway": "203.0.113.1",
          "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1", "gateway": "203.0.113.1"},
                  {"ip": "203.0.113.11", "netmask": "255.255.255.0", "enabled": "0"}],
          "gateway_v6": "2001:db8::1",
          "ip6s": [{"ip": "2001:db8::10", "netmask": 64, "enabled": "1", "gateway": "2001:db8::1"}],
          "dns": ["198.51.100.53", "2001:db8::53"]}
PRIVATE = {"label": "private", "mac": "fa:16:3e:99:88:77",
           "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0", "enabled": "1"}],
           "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.0.1"}],
           "dns": ["198.51.100.53"]}
SYSTEM = {"fa163e0a1b2c": "eth0", "fa163e998877": "eth1"}


def test_two_interfaces_are_parsed_matched_and_typed() -> None:
    """Entries (JSON text or objects) become typed interfaces named as the guest names them; a disabled
    address is left out; DNS is gathered without repeats; the first gateway carries the default route."""
    network = parse({"fa163e0a1b2c": json.dumps(PUBLIC), "FA163E998877": PRIVATE}, "web-1\n", SYSTEM)
    eth0, eth1 = network.interfaces
    assert (eth0.name, eth0.mac, eth0.label) == ("eth0", "fa:16:3e:0a:1b:2c", "public")
    assert eth0.addresses == (ipaddress.ip_interface("203.0.113.10/24"), ipaddress.ip_interface("2001:db8::10/64"))
    assert (str(eth0.gateway4), str(eth0.gateway6)) == ("203.0.113.1", "2001:db8::1")
    assert eth1.routes == (Route(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_address("10.1.0.1")),)
    assert [str(s) for s in network.dns] == ["198.51.100.53", "2001:db8::53"]
    assert network.gateway4 is not None and network.gateway4[0] is eth0
    assert network.hostname == "web-1"


@pytest.mark.parametrize(("entry", "problem"), [
    ("not json", "vm-data/networking/k is not JSON"),
    ([], "is not a JSON object"),
    ({"label": "x"}, "has no valid 'mac'"),
    ({"mac": "fa:16:3e:00:00:01"}, "this guest has no interface with MAC fa:16:3e:00:00:01"),
    ({**PRIVATE, "ips": [{"ip": "10.1.2.300", "netmask": "255.255.0.0"}]}, "'ips[].ip' is not an IPv4 address"),
    ({**PRIVATE, "ips": [{"ip": "10.1.2.3", "netmask": "255.0.255.0"}]}, "the netmask of 10.1.2.3 is not a dotted"),
    ({**PRIVATE, "ip6s": [{"ip": "2001:db8::1", "netmask": 129}]}, "not a prefix length from 0 to 128"),
    ({**PRIVATE, "gateway": "2001:db8::1"}, "'gateway' is not an IPv4 address"),
    ({**PRIVATE, "routes": [{"route": "10.0.0.0", "netmask": "x", "gateway": "10.1.0.1"}]}, "no valid netmask"),
    ({**PRIVATE, "dns": "198.51.100.53"}, "'dns' must be a list"),
    ({**PRIVATE, "label": "x\nauto eth9"}, "'label' must be one line of printable text"),
    # A scope id would carry a line break into the rendered files: an "up" command of the host's making.
    ({**PRIVATE, "dns": ["2001:db8::53%x\n    up touch /PWNED"]}, "'dns' is not an IP address"),
    ({**PRIVATE, "gateway_v6": "2001:db8::1%x\n    pre-up touch /PWNED"}, "'gateway_v6' is not an IPv6 address"),
    ({**PRIVATE, "routes": [{"route": "2001:db8:1::", "netmask": "48", "gateway": "fe80::1%eth0"}]},
     "'routes[].gateway' is not an IPv6 address"),
    ({**PRIVATE, "ip6s": [{"ip": "fe80::10%eth0", "netmask": 64}]}, "'ip6s[].ip' is not an IPv6 address"),
    ({**PRIVATE, "ips": [{"ip": "127.0.0.5", "netmask": "255.0.0.0"}]}, "cannot be an interface's address"),
    ({**PRIVATE, "ip6s": [{"ip": "fe80::10", "netmask": 64}]}, "cannot be an interface's address"),
    ({**PRIVATE, "gateway": "224.0.0.1"}, "cannot be an interface's gateway"),
    ({**PRIVATE, "gateway": "0.0.0.0"}, "cannot be an interface's gateway"),
    ({**PRIVATE, "ip6s": [{"ip": "2001:db8::1", "netmask": "\u0666\u0664"}]}, "not a prefix length from 0 to 128"),
    ({**PRIVATE, "ip6s": [{"ip": "2001:db8::1", "netmask": True}]}, "not a prefix length from 0 to 128"),
])
def test_bad_data_is_an_error_naming_what_is_wrong(entry: Any, problem: str) -> None:
    """Malformed data, or a MAC the guest lacks, is refused with the entry and the problem named."""
    with pytest.raises(NetworkDataError, match=re.escape(problem)):
        parse({"k": entry}, None, SYSTEM)


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("", None), ("RESCUE-web-1", "RESCUE-web-1"),
                                                ("db.example.com.", "db.example.com")])
def test_hostname(text: str | None, expected: str | None) -> None:
    """The host name is kept as nova wrote it (a RESCUE- prefix included); none means keep the current one."""
    assert parse({}, text, SYSTEM).hostname == expected


@pytest.mark.parametrize("text", ["-bad", "a" * 64, "under_score", "two words"])
def test_bad_hostname_is_refused(text: str) -> None:
    """A host name that is not RFC 1123 is refused rather than written into /etc/hosts."""
    with pytest.raises(NetworkDataError, match="not a valid host name"):
        parse({}, text, SYSTEM)


def test_system_interfaces_come_from_sys_class_net(tmp_path: Path) -> None:
    """The guest's interfaces are read from <root>/sys/class/net/*/address; loopback is left out."""
    for name, mac in [("lo", "00:00:00:00:00:00"), ("eth0", "FA:16:3E:0A:1B:2C\n"), ("ens4", "fa:16:3e:99:88:77")]:
        (tmp_path / "sys/class/net" / name).mkdir(parents=True)
        (tmp_path / "sys/class/net" / name / "address").write_text(mac)
    assert system_interfaces(tmp_path) == {"fa163e0a1b2c": "eth0", "fa163e998877": "ens4"}
