"""The networks every renderer is golden-tested with (the issue's list), built from nova-shaped entries, and
the golden-file check they share.

A case's golden directory mirrors the guest's root (``golden/<stack>/<scenario>[/<case>]/etc/...``) and holds
exactly the files rendered. ``UPDATE_GOLDEN=1`` rewrites it instead of comparing, so a deliberate change to
the output is one command and a reviewable diff."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from agent.network.model import Network, parse

SYSTEM = {"fa163e0a1b2c": "eth0", "fa163e998877": "eth1"}

_PUBLIC: dict[str, Any] = {
    "label": "public", "mac": "fa:16:3e:0a:1b:2c", "broadcast": "203.0.113.255", "gateway": "203.0.113.1",
    "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1", "gateway": "203.0.113.1"}],
    "gateway_v6": "2001:db8::1",
    "ip6s": [{"ip": "2001:db8::10", "netmask": 64, "enabled": "1", "gateway": "2001:db8::1"}],
    "dns": ["198.51.100.53", "198.51.100.54"]}
_PRIVATE: dict[str, Any] = {
    "label": "private", "mac": "fa:16:3e:99:88:77",
    "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0", "enabled": "1"}],
    "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.0.1"},
               {"route": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.1"}]}

#: name -> Network: the scenarios every renderer's golden files cover.
SCENARIOS: dict[str, Network] = {
    # One NIC with IPv4 only, a gateway and one name server.
    "one-nic-ipv4": parse({"fa163e0a1b2c": {
        "label": "public", "mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1",
        "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"}],
        "dns": ["198.51.100.53"]}}, "web-1", SYSTEM),
    # Public (IPv4 + IPv6, gateways, DNS) and private (IPv4, extra routes).
    "two-nics": parse({"fa163e0a1b2c": _PUBLIC, "fa163e998877": _PRIVATE}, "web-1.example.com", SYSTEM),
    # A disabled address is not configured; the enabled one is.
    "disabled-address": parse({"fa163e0a1b2c": {**_PUBLIC, "ip6s": [], "gateway_v6": None, "ips": [
        {"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"},
        {"ip": "203.0.113.99", "netmask": "255.255.255.0", "enabled": "0"}]}}, "web-1", SYSTEM),
    # An address without any gateway (a private network only).
    "no-gateway": parse({"fa163e998877": {**_PRIVATE, "routes": []}}, None, SYSTEM),
}


GOLDEN = Path(__file__).parent / "golden"


def nothing(path: str) -> bytes | None:
    """A guest where no file the renderer asks about exists yet."""
    return None


def check_golden(directory: Path, files: dict[str, bytes]) -> None:
    """``files`` ({guest path: bytes}) equal the golden files under ``directory``, none missing or extra."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        shutil.rmtree(directory, ignore_errors=True)
        for path, data in files.items():
            target = directory / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    expected = {"/" + p.relative_to(directory).as_posix(): p.read_bytes()
                for p in sorted(directory.rglob("*")) if p.is_file()} if directory.is_dir() else {}
    assert sorted(files) == sorted(expected), f"{directory}: set UPDATE_GOLDEN=1 to regenerate"
    assert files == expected


def sh_values(path: Path, data: bytes, names: list[str]) -> dict[str, str]:
    """``names``' values after sh sources ``data``, written to ``path`` (which must also pass ``sh -n``), as
    rc(8) and Red Hat's network scripts do."""
    path.write_bytes(data)
    subprocess.run(["sh", "-n", str(path)], check=True)
    script = '. "$1"; shift; for n; do eval "printf \'%s\\0\' \\"\\${$n}\\""; done'
    out = subprocess.run(["sh", "-c", script, "sh", str(path), *names], check=True, capture_output=True).stdout
    return dict(zip(names, out.decode().split("\0")[:-1], strict=True))
