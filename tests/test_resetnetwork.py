"""resetnetwork end to end: the agent as a real process inside the lab's guest network namespace, on a real
xenstored, driven by the host side as nova drives it; killed with SIGKILL in each state that changes the
network, and restarted."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.host import Host
from agent.platform.network import LiveNetwork
from agent.xenstore import XenStore
from tests.conftest import wait_for
from tests.netns import NICS, Lan, entry, key

NETWORK = {key(NICS["eth0"]): entry(NICS["eth0"], label="public", gateway="203.0.113.1",
                                    ips=[{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"}],
                                    ip6s=[{"ip": "2001:db8::10", "netmask": 64, "enabled": "1"}],
                                    dns=["198.51.100.53"]),
           key(NICS["eth1"]): entry(NICS["eth1"], label="private",
                                    ips=[{"ip": "10.1.2.3", "netmask": "255.255.0.0", "enabled": "1"}],
                                    routes=[{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.0.1"}])}
BEFORE = b"auto eth0\niface eth0 inet static\n    address 203.0.113.20/24\n    gateway 203.0.113.1\n"


@pytest.fixture
def image(lan: Lan) -> Lan:
    """The lab's guest as an image boots: eth0 at 203.0.113.20 from its own ifupdown file, eth1 unconfigured."""
    (lan.root / "etc/network/interfaces.d/50-openstack-agent.cfg").write_bytes(BEFORE)
    LiveNetwork(lan.root, prefix=lan.prefix).apply("ifupdown", ["eth0"])
    return lan


def etc(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "etc").rglob("*")) if p.is_file()}


def start(agent_process: Any, lan: Lan, *flags: str) -> Any:
    proc = agent_process(*flags, prefix=lan.prefix, root=lan.root).start()
    return proc


def test_nova_network_is_applied_and_verified(agent_process: Any, image: Lan, host: Host) -> None:
    """Both interfaces get their addresses, the default route and the static route; both gateways answer; the
    host gets "0"; features lists resetnetwork."""
    start(agent_process, image)
    assert "resetnetwork" in host.call("features", "", timeout=30)["message"].split(",")
    assert host.reset_network(NETWORK, "web-1") == {"returncode": "0", "message": ""}
    assert image.addresses("eth0") == {"203.0.113.10/24", "2001:db8::10/64"}
    assert image.addresses("eth1") == {"10.1.2.3/16"}
    routes = {(r.get("dst"), r.get("gateway")) for r in image.routes()}
    assert ("default", "203.0.113.1") in routes and ("10.0.0.0/8", "10.1.0.1") in routes
    assert image.pings("203.0.113.1") and image.pings("10.1.0.1")
    assert (image.root / "etc/hostname").read_text() == "web-1\n"


def test_a_gateway_that_never_answers_is_rolled_back_while_the_agent_keeps_serving(
        agent_process: Any, image: Lan, host: Host, xenstored: Any, domain: str) -> None:
    """With verify = gateway and a gateway nobody answers for, the change is rolled back after the timeout; in
    the meantime the agent answers other requests."""
    start(agent_process, image, "--network-verify", "gateway", "--network-verify-timeout", "4")
    broken = {key(NICS["eth0"]): {**NETWORK[key(NICS["eth0"])], "gateway": "203.0.113.254"}}
    before = etc(image.root)
    answers: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: answers.update(reset=host.reset_network(broken, "web-1")))
    caller.start()
    with XenStore(xenstored.address, domain) as other:
        wait_for(lambda: image.addresses("eth0") == {"203.0.113.10/24"})  # applied, now being verified
        assert Host(other, poll_interval=0.01).call("version", "agent", timeout=10)["returncode"] == "0"
        assert "reset" not in answers  # answered while the reset was still being verified
    caller.join(60)
    assert answers["reset"]["returncode"] == "500"
    assert "was rolled back" in answers["reset"]["message"] and "203.0.113.254" in answers["reset"]["message"]
    assert etc(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


@pytest.mark.parametrize("state", ["switching", "applying", "verifying"])
def test_sigkill_in_a_changing_state_is_rolled_back_by_the_next_process(
        agent_process: Any, image: Lan, host: Host, state: str) -> None:
    """The agent killed with SIGKILL right after journaling ``state``: the next process rolls back, the host's
    request gets one "500" saying why, and the guest is as it was."""
    before = etc(image.root)
    first = start(agent_process, image, "--crash-at", f"enter:{state}")
    answers: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: answers.update(reset=host.reset_network(NETWORK, "web-1", timeout=90)))
    caller.start()
    assert first.wait(60) == -9
    start(agent_process, image)
    caller.join(90)
    assert answers["reset"] == {"returncode": "500", "message": (
        f"resetnetwork failed and was rolled back: the agent stopped (a crash or a reboot) while {state}; "
        "the previous network configuration is restored")}
    assert etc(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}
    assert image.addresses("eth1") == set()
