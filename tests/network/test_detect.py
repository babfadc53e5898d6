"""Which network stack an image runs, from what it has under the agent's root."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.network.detect import choose, detect

IMAGES = {
    "ubuntu-netplan": (["usr/sbin/netplan", "lib/systemd/systemd-networkd"], ["etc/netplan"], "netplan"),
    "debian-ifupdown": (["sbin/ifup", "lib/systemd/systemd-networkd"], ["etc/network/interfaces"], "ifupdown"),
    "rhel-network-scripts": (["usr/sbin/NetworkManager"], ["etc/sysconfig/network-scripts", "etc/NetworkManager"],
                             "sysconfig"),
    "fedora-networkmanager": (["usr/sbin/NetworkManager"], ["etc/NetworkManager"], "networkmanager"),
    "arch-networkd": (["usr/lib/systemd/systemd-networkd"], [], "networkd"),
    "freebsd": ([], ["etc/rc.conf", "boot/kernel/kernel"], "freebsd"),
}


#: The signs that are files rather than directories.
FILES = ("interfaces", "rc.conf", "kernel")


def make_image(root: Path, tools: list[str], paths: list[str]) -> Path:
    for tool in tools:
        (root / tool).parent.mkdir(parents=True, exist_ok=True)
        (root / tool).touch()
    for path in paths:
        if path.endswith(FILES):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).touch()
        else:
            (root / path).mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.parametrize("image", IMAGES)
def test_the_stack_is_found_from_what_the_image_has(tmp_path: Path, image: str) -> None:
    """Each kind of image is recognised by its own tool and configuration directory, inside the root."""
    tools, paths, expected = IMAGES[image]
    assert detect(make_image(tmp_path, tools, paths)) == expected
    assert choose("auto", tmp_path) == expected


def test_a_named_renderer_wins_and_a_bad_name_is_refused(tmp_path: Path) -> None:
    """network.renderer names the stack outright; an unknown name is a configuration error listing the choices."""
    assert choose("networkd", tmp_path) == "networkd"
    with pytest.raises(ConfigError, match="not one of auto, ifupdown, netplan"):
        choose("wicked", tmp_path)


def test_an_image_with_no_known_stack_says_so(tmp_path: Path) -> None:
    """An image with none of the stacks gets an error telling the operator to name one."""
    assert detect(tmp_path) is None
    with pytest.raises(ConfigError, match=r"name one with network\.renderer"):
        choose("auto", tmp_path)
