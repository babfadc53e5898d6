"""Which network stack the image runs: named by ``network.renderer``, or found from what the image has.

The order follows what cloud-init does on the distributions that ship each stack, with netplan first (as
Ubuntu orders it): an image with netplan also has networkd or NetworkManager underneath, and netplan is
what owns their configuration there. Each stack is recognised by its own tool and the directory it reads,
both inside the agent's root (so ``--root DIR`` inspects DIR, not the machine the agent runs on):

    netplan         the ``netplan`` tool and ``/etc/netplan``
    ifupdown        ``ifup`` and ``/etc/network/interfaces``
    sysconfig       ``/etc/sysconfig/network-scripts`` (Red Hat's ifcfg files)
    networkmanager  ``NetworkManager`` and ``/etc/NetworkManager``
    networkd        ``systemd-networkd``
    freebsd         ``/etc/rc.conf`` and FreeBSD's ``/boot/kernel/kernel``
    windows         ``Windows/System32/wbem`` (WMI's directory), for an image looked at from outside: on a
                    running Windows guest the Windows network port names its stack itself
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.errors import ConfigError

AUTO = "auto"
RENDERERS = ("ifupdown", "netplan", "networkd", "networkmanager", "sysconfig", "freebsd", "windows")
_BIN = ("usr/sbin", "usr/bin", "sbin", "bin", "lib/systemd", "usr/lib/systemd")

#: (renderer, tools of which one must exist, paths that must all exist), in the order they are tried.
_SIGNS: Sequence[tuple[str, tuple[str, ...], tuple[str, ...]]] = (
    ("netplan", ("netplan",), ("etc/netplan",)),
    ("ifupdown", ("ifup",), ("etc/network/interfaces",)),
    ("sysconfig", (), ("etc/sysconfig/network-scripts",)),
    ("networkmanager", ("NetworkManager",), ("etc/NetworkManager",)),
    ("networkd", ("systemd-networkd",), ()),
    ("freebsd", (), ("etc/rc.conf", "boot/kernel/kernel")),
    ("windows", (), ("Windows/System32/wbem",)),
)


def _has_tool(root: Path, names: tuple[str, ...]) -> bool:
    return not names or any((root / directory / name).exists() for directory in _BIN for name in names)


def detect(root: str | Path = "/") -> str | None:
    """The first stack whose signs the image under ``root`` has, or None when it has none of them."""
    base = Path(root or "/")
    for renderer, tools, paths in _SIGNS:
        if _has_tool(base, tools) and all((base / path).exists() for path in paths):
            return renderer
    return None


def choose(setting: str, root: str | Path = "/") -> str:
    """The renderer to use: ``setting`` itself unless it is ``auto``; a ConfigError when nothing fits."""
    if setting != AUTO:
        if setting not in RENDERERS:
            raise ConfigError(f"network.renderer {setting!r} is not one of {AUTO}, {', '.join(RENDERERS)}")
        return setting
    found = detect(root)
    if found is None:
        raise ConfigError("no network stack found in this image (none of netplan, ifupdown, sysconfig, "
                          "NetworkManager, systemd-networkd, FreeBSD's rc.conf, Windows); name one with "
                          "network.renderer")
    return found
