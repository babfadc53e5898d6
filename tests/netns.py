"""A lab network of real network namespaces, for the network tests: a guest and its gateway.

The guest namespace holds ``eth0`` and ``eth1`` with nova's MACs; each is one end of a veth pair whose other
end is in the gateway namespace (``gw0`` holds 203.0.113.1/24 and 2001:db8::1/64, ``gw1`` 10.1.0.1/16). The
guest's image is a directory laid out as an ifupdown image. Every command this module runs either creates or
deletes a namespace of its own, or runs inside one (``ip netns exec``): the machine's own interfaces, routes
and ``/etc/network`` are never touched, which is what lets the tests run as root on a CI machine.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

#: The guest's interfaces and their MACs (nova's fa:16:3e prefix).
NICS = {"eth0": "fa:16:3e:0a:1b:2c", "eth1": "fa:16:3e:99:88:77"}
#: The gateway side of each guest interface, and the addresses it holds.
PEERS = {"eth0": ("gw0", ("203.0.113.1/24", "2001:db8::1/64")), "eth1": ("gw1", ("10.1.0.1/16",))}
INTERFACES = "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n"

_names = itertools.count()


def entry(mac: str, **fields: Any) -> dict[str, Any]:
    """A ``vm-data/networking/<mac>`` object as nova writes it: its label and MAC, and ``fields``."""
    return {"label": "public" if mac == NICS["eth0"] else "private", "mac": mac, **fields}


def key(mac: str) -> str:
    """The XenStore key nova gives a MAC's entry: the MAC without colons."""
    return mac.replace(":", "")


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _mkdir(path: Path, mode: int = 0o755) -> None:
    """A directory of ``mode`` whatever the umask (agents in test threads set 077)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    path.chmod(mode)


def _file(path: Path, text: str, mode: int = 0o644) -> None:
    _mkdir(path.parent)
    path.write_text(text)
    path.chmod(mode)


class Lan:
    """The lab: build with ``Lan(root)`` (a directory to make the guest's image in), end with ``close()`` or
    a with-block. A failure to build removes what was made and raises."""

    def __init__(self, root: Path) -> None:
        tag = f"{os.getpid()}-{next(_names)}"
        self.root = root
        self.guest = f"oa-guest-{tag}"
        self.gateway = f"oa-gw-{tag}"
        self.prefix: tuple[str, ...] = ("ip", "netns", "exec", self.guest)
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for namespace in (self.guest, self.gateway):
            _run(["ip", "netns", "add", namespace])
            self._made.append(namespace)
            self._in(namespace, ["ip", "link", "set", "lo", "up"])
        for name, mac in NICS.items():
            peer, addresses = PEERS[name]
            # Made inside the guest namespace with the peer moved straight to the gateway's: neither end ever
            # exists in the machine's own namespace.
            self.run(["ip", "link", "add", name, "address", mac, "type", "veth", "peer", "name", peer,
                      "netns", self.gateway])
            for address in addresses:
                self._add(peer, address)
            self._in(self.gateway, ["ip", "link", "set", peer, "up"])
        self._image()

    def _image(self) -> None:
        """The guest's image: what agent.network.detect takes for ifupdown, and what the model reads."""
        _mkdir(self.root)
        _file(self.root / "etc/network/interfaces", INTERFACES)
        _mkdir(self.root / "etc/network/interfaces.d")
        for hooks in ("if-pre-up.d", "if-up.d", "if-down.d", "if-post-down.d"):
            _mkdir(self.root / "etc/network" / hooks)
        _file(self.root / "etc/hostname", "lab-guest\n")
        _file(self.root / "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tlab-guest\n")
        _file(self.root / "etc/resolv.conf", "nameserver 192.0.2.53\n")
        _mkdir(self.root / "run/network")
        for name, mac in NICS.items():
            _file(self.root / "sys/class/net" / name / "address", mac + "\n")
        _file(self.root / "usr/sbin/ifup", "", mode=0o755)  # detect's sign of ifupdown: it only looks

    def _in(self, namespace: str, argv: Sequence[str]) -> str:
        return _run(["ip", "netns", "exec", namespace, *argv])

    def _add(self, device: str, address: str) -> None:
        extra = ["nodad"] if ipaddress.ip_interface(address).version == 6 else []
        self._in(self.gateway, ["ip", "addr", "add", address, "dev", device, *extra])

    # -- use ----------------------------------------------------------------------------------------------

    def run(self, argv: Sequence[str]) -> str:
        """Run ``argv`` in the guest namespace; its output, or RuntimeError with its message."""
        return self._in(self.guest, argv)

    def addresses(self, ifname: str) -> set[str]:
        """The guest interface's global addresses, as "ip/prefix"."""
        found: set[str] = set()
        for link in json.loads(self.run(["ip", "-j", "addr", "show", "dev", ifname]) or "[]"):
            for info in link.get("addr_info", []):
                if info.get("scope") == "global":
                    found.add(str(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")))
        return found

    def routes(self) -> list[dict[str, Any]]:
        """The guest's routes (main table), IPv4 then IPv6, as ``ip -j`` gives them."""
        return [route for family in ("-4", "-6")
                for route in json.loads(self.run(["ip", "-j", family, "route", "show"]) or "[]")]

    def pings(self, address: str) -> bool:
        """Whether ``address`` answers a ping from the guest."""
        result = subprocess.run(["ip", "netns", "exec", self.guest, "ping", "-c", "1", "-W", "1", address],
                                capture_output=True, check=False)
        return result.returncode == 0

    def answer_on(self, address: str, side: str = "eth0") -> None:
        """Add ``address`` ("ip/prefix") on the gateway's end of the guest's ``side`` link."""
        self._add(PEERS[side][0], address)

    def up(self, ifname: str) -> None:
        """Set the guest interface's link up."""
        self.run(["ip", "link", "set", ifname, "up"])

    # -- end ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Delete the namespaces (their veth pairs go with them). Idempotent."""
        errors = []
        while self._made:
            namespace = self._made.pop()
            result = subprocess.run(["ip", "netns", "del", namespace], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                errors.append(f"{namespace}: {result.stderr.strip()}")
        if errors:
            raise RuntimeError(f"could not delete the lab's namespaces: {'; '.join(errors)}")

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
