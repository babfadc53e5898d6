"""The live network port against the kernel: real ifupdown, ip and ping in the lab's namespaces (tests/netns.py).

Nothing here touches the machine's own network: every tool runs under the lab's ``ip netns exec`` prefix, or
in namespaces of its own (``unshare``), and the ``host_network`` fixture checks the machine's addresses and
routes are the same after each test as before it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import FileRefused, PlatformError
from agent.network.detect import detect
from agent.platform.base import run_tool
from agent.platform.files import temp_name
from agent.platform.network import APPLY, MAX_FILE_SIZE, LiveNetwork, Observed
from tests.conftest import STATE_DIR, wait_for
from tests.netns import NICS, Lan, entry, key

STANZA = "auto eth0\niface eth0 inet static\n  address {address}\n  gateway {gateway}\n"
STANZA6 = "auto eth0\niface eth0 inet6 static\n  address {address}\n  gateway {gateway}\n  dad-attempts 0\n"
ETH0 = "/etc/network/interfaces.d/eth0"
REFUSED = "would change this machine's own interfaces; run the agent in a network namespace of its own"


def _own_network() -> tuple[set[tuple[str, str, int]], list[tuple[str, str, str]]]:
    """The machine's own addresses and routes (read only), without the fields that change by themselves."""
    links = json.loads(subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, check=True).stdout)
    addresses = {(link["ifname"], info["local"], info["prefixlen"]) for link in links
                 for info in link.get("addr_info", [])}
    routes = [(route.get("dst", ""), route.get("gateway", ""), route.get("dev", "")) for family in ("-4", "-6")
              for route in json.loads(subprocess.run(["ip", "-j", family, "route", "show"], capture_output=True,
                                                     check=True).stdout)]
    return addresses, sorted(routes)


@pytest.fixture(autouse=True)
def host_network() -> Iterator[None]:
    """Every test here leaves the machine's own addresses, routes and /etc/network as they were."""
    before = _own_network()
    etc = sorted(os.listdir("/etc/network"))
    had_run_network = os.path.exists("/run/network")
    yield
    assert _own_network() == before, "the machine's own network changed"
    assert sorted(os.listdir("/etc/network")) == etc
    assert os.path.exists("/run/network") == had_run_network


@pytest.fixture
def net(lan: Lan) -> LiveNetwork:
    """The port on the lab's guest: its image as the root, its namespace as the tools' prefix."""
    return LiveNetwork(lan.root, prefix=lan.prefix)


def configure(net: LiveNetwork, text: str | None) -> None:
    """Put eth0's stanza in the image (or take it away) as the machine would."""
    if text is None:
        net.remove(ETH0)
    else:
        net.write(ETH0, text.encode(), 0o644)


def routes_by_gateway(lan: Lan) -> set[tuple[str, str]]:
    return {(route["gateway"], route["dev"]) for route in lan.routes() if route["dst"] == "default"}


# -- the lab itself -------------------------------------------------------------------------------------


def test_the_lab_is_an_ifupdown_guest_of_its_own(lan: Lan) -> None:
    """The lab's image is detected as ifupdown, its interfaces carry nova's MACs, its gateway answers once an
    address is up, and closing it leaves no namespace behind."""
    assert detect(lan.root) == "ifupdown"
    for name, mac in NICS.items():
        assert lan.run(["cat", f"/sys/class/net/{name}/address"]).strip() == mac
        assert (lan.root / "sys/class/net" / name / "address").read_text().strip() == mac
    assert entry(NICS["eth0"], ip="x")["mac"] == NICS["eth0"] and key(NICS["eth0"]) == "fa163e0a1b2c"
    assert lan.addresses("eth0") == set()
    lan.run(["ip", "addr", "add", "10.1.0.5/16", "dev", "eth1"])
    lan.up("eth1")
    assert lan.addresses("eth1") == {"10.1.0.5/16"}
    assert lan.pings("10.1.0.1")
    lan.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert lan.guest not in names and lan.gateway not in names


# -- refusal ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", [
    lambda net: net.apply("ifupdown", ["eth0"]),
    lambda net: net.observe(),
    lambda net: net.answers("203.0.113.1"),
    lambda net: net.set_hostname("elsewhere"),
], ids=["apply", "observe", "answers", "set_hostname"])
def test_a_root_without_a_namespace_is_refused(lan: Lan, act: Callable[[LiveNetwork], object]) -> None:
    """Under a root, without a prefix and in the machine's own namespace, the port refuses to act on the
    network, and changes nothing in the image (the machine's network is checked by host_network)."""
    configure(LiveNetwork(lan.root), STANZA.format(address="203.0.113.10/24", gateway="203.0.113.1"))
    net = LiveNetwork(lan.root)
    assert net.refusal is not None and REFUSED in net.refusal and str(lan.root) in net.refusal
    before = sorted((str(p), p.lstat().st_mtime_ns) for p in lan.root.rglob("*"))
    with pytest.raises(PlatformError, match=re.escape(REFUSED)):
        act(net)
    assert sorted((str(p), p.lstat().st_mtime_ns) for p in lan.root.rglob("*")) == before
    assert lan.addresses("eth0") == set()


@pytest.mark.parametrize("where", ["slash", "prefix", "own namespace"])
def test_no_refusal_where_the_network_is_the_guests(lan: Lan, where: str) -> None:
    """The port may apply on the system it is on ("/"), under a prefix, or from a network namespace of its own
    (the agent run inside the lab's guest namespace)."""
    if where == "slash":
        assert LiveNetwork("/").refusal is None
    elif where == "prefix":
        assert LiveNetwork(lan.root, prefix=lan.prefix).refusal is None
    else:
        code = f"from agent.platform.network import LiveNetwork; print(LiveNetwork({str(lan.root)!r}).refusal)"
        assert lan.run([sys.executable, "-c", code]).strip() == "None"


# -- apply ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stanza", "address", "gateway"), [
    (STANZA, "203.0.113.10/24", "203.0.113.1"),
    (STANZA6, "2001:db8::10/64", "2001:db8::1"),
], ids=["ipv4", "ipv6"])
def test_apply_brings_the_files_up(lan: Lan, net: LiveNetwork, stanza: str, address: str, gateway: str) -> None:
    """ifupdown's apply of a rendered stanza gives eth0 its address and default route in the guest namespace;
    observe sees them, the gateway answers, and ifupdown kept its state in the image."""
    configure(net, stanza.format(address=address, gateway=gateway))
    net.apply("ifupdown", ["eth0"])
    observed = net.observe()
    assert observed.addresses["eth0"] == {address}
    assert observed.addresses["eth1"] == frozenset()
    assert (gateway, "eth0") in observed.defaults
    assert lan.addresses("eth0") == {address}
    assert net.answers(gateway) and lan.pings(gateway)
    assert "ifstate.eth0" in os.listdir(lan.root / "run/network")


def test_a_second_apply_leaves_no_stale_address(lan: Lan, net: LiveNetwork) -> None:
    """Re-applying with another address replaces the old one (the flush): ifdown alone knows only the new file."""
    configure(net, STANZA.format(address="203.0.113.10/24", gateway="203.0.113.1"))
    net.apply("ifupdown", ["eth0"])
    configure(net, STANZA.format(address="203.0.113.20/24", gateway="203.0.113.1"))
    net.apply("ifupdown", ["eth0"])
    assert net.observe() == Observed({"lo": frozenset(), "eth0": frozenset({"203.0.113.20/24"}),
                                      "eth1": frozenset()}, frozenset({("203.0.113.1", "eth0")}))
    assert routes_by_gateway(lan) == {("203.0.113.1", "eth0")}


def test_an_interface_the_files_no_longer_define_is_left_unconfigured(lan: Lan, net: LiveNetwork) -> None:
    """After its stanza is removed (a rollback to files without it), apply takes eth0 down and does not try to
    bring it up (ifquery's guard): no global address, no default route, and no error."""
    configure(net, STANZA.format(address="203.0.113.10/24", gateway="203.0.113.1"))
    net.apply("ifupdown", ["eth0"])
    configure(net, None)
    net.apply("ifupdown", ["eth0"])
    observed = net.observe()
    assert observed.addresses["eth0"] == frozenset() and observed.defaults == frozenset()
    assert lan.addresses("eth0") == set() and routes_by_gateway(lan) == set()


def test_a_failing_tool_is_named(lan: Lan, net: LiveNetwork) -> None:
    """ifup failing (the stanza names an interface the guest lacks) is a PlatformError naming ifup, its exit
    status and its message."""
    net.write("/etc/network/interfaces.d/eth9", b"iface eth9 inet static\n  address 192.0.2.9/24\n", 0o644)
    with pytest.raises(PlatformError, match=r"^ifup failed with exit status 1: .*eth9") as failed:
        net.apply("ifupdown", ["eth9"])
    assert "unshare" not in str(failed.value) and lan.guest not in str(failed.value)


def test_a_missing_tool_names_its_package(lan: Lan, net: LiveNetwork, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ifupdown's tools on PATH, apply says which package to install, and runs nothing."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PlatformError, match=r"^ifdown is not installed; install the ifupdown package$"):
        net.apply("ifupdown", ["eth0"])


@pytest.mark.parametrize(("stack", "interfaces", "message"), [
    ("bogus", ["eth0"], "no way to apply a 'bogus' network"),
    ("ifupdown", ["-a"], "'-a' is not an interface name"),
    ("ifupdown", ["eth0/../x"], "is not an interface name"),
    ("ifupdown", [""], "'' is not an interface name"),
    ("ifupdown", ["x" * 16], "is not an interface name"),
    *[(stack, ["eth0"], "its tools act through the machine's own daemons")
      for stack in APPLY if stack not in ("ifupdown", "sysconfig")],
])
def test_apply_refuses_what_it_cannot_do_safely(lan: Lan, net: LiveNetwork, stack: str, interfaces: list[str],
                                               message: str) -> None:
    """An unknown stack, a name a tool would take for an option or a path, and under a root a stack driven by
    the machine's daemons, are refused before any tool runs."""
    with pytest.raises(PlatformError, match=re.escape(message)):
        net.apply(stack, interfaces)
    assert not (lan.root / "run/network/ifstate").exists()


@pytest.mark.parametrize("linked", ["etc/network", "run"])
def test_a_link_out_of_the_image_is_not_used(lan: Lan, net: LiveNetwork, tmp_path: Path, linked: str) -> None:
    """/etc/network or /run in the image being a link out of it (to the machine's own, say) is refused before
    any tool runs: the binds and ifupdown's state never reach outside the root."""
    outside = tmp_path / "outside"
    (lan.root / linked).rename(outside)
    (lan.root / linked).symlink_to(outside)
    before = sorted(p.name for p in outside.rglob("*"))
    with pytest.raises(PlatformError, match="leads out of the root"):
        net.apply("ifupdown", ["eth0"])
    assert sorted(p.name for p in outside.rglob("*")) == before


# -- observe, answers ---------------------------------------------------------------------------------


def test_observe_sees_only_global_addresses(lan: Lan, net: LiveNetwork) -> None:
    """observe lists every interface, with its global addresses only (no loopback, no link-local), normalised."""
    lan.up("eth0")
    lan.run(["ip", "addr", "add", "2001:db8:0:0::77/64", "dev", "eth0", "nodad"])
    lan.run(["ip", "addr", "add", "169.254.3.3/16", "dev", "eth0", "scope", "link"])
    observed = net.observe()
    assert observed.addresses == {"lo": frozenset(), "eth0": frozenset({"2001:db8::77/64"}), "eth1": frozenset()}
    assert observed.defaults == frozenset()


@pytest.mark.parametrize(("address", "answers"), [
    ("203.0.113.1", True),
    ("203.0.113.2", True),
    ("203.0.113.99", False),
    ("198.51.100.1", False),
], ids=["gateway", "added", "nobody", "unreachable"])
def test_answers(lan: Lan, net: LiveNetwork, address: str, answers: bool) -> None:
    """answers is whether one ping comes back: no reply and no route (ping's 1 and 2) are both a plain no."""
    configure(net, "auto eth0\niface eth0 inet static\n  address 203.0.113.10/24\n")  # no default route
    net.apply("ifupdown", ["eth0"])
    lan.answer_on("203.0.113.2/24")
    assert net.answers(address) is answers


def test_answers_refuses_what_is_no_address(net: LiveNetwork) -> None:
    """Only an IP address is pinged: anything else (an option, a name) is refused."""
    with pytest.raises(PlatformError, match="is not an IP address"):
        net.answers("-f")


# -- files ----------------------------------------------------------------------------------------------


def test_files_round_trip(lan: Lan, net: LiveNetwork) -> None:
    """write gives a new file the mode asked and keeps a replaced file's; read gives it back; remove and
    discard_partial clean up; no backup is ever left beside a stack's files."""
    directory = lan.root / "etc/network/interfaces.d"
    net.write(ETH0, b"one\n", 0o600)
    assert stat.S_IMODE((directory / "eth0").stat().st_mode) == 0o600
    (directory / "eth0").chmod(0o644)
    net.write(ETH0, b"two\n", 0o600)
    assert stat.S_IMODE((directory / "eth0").stat().st_mode) == 0o644
    assert net.read(ETH0) == b"two\n"
    assert os.listdir(directory) == ["eth0"]
    (directory / temp_name("eth0")).write_bytes(b"half")
    assert net.discard_partial(ETH0) is True and net.discard_partial(ETH0) is False
    assert net.remove(ETH0) is True and net.remove(ETH0) is False
    assert net.read(ETH0) is None
    assert os.listdir(directory) == []


def test_an_oversize_file_is_refused(lan: Lan, net: LiveNetwork) -> None:
    """A file past MAX_FILE_SIZE is neither read nor written."""
    (lan.root / "etc/network/interfaces.d/big").write_bytes(b"#" * (MAX_FILE_SIZE + 1))
    with pytest.raises(FileRefused, match=f"it is {MAX_FILE_SIZE + 1} bytes, more than the {MAX_FILE_SIZE}"):
        net.read("/etc/network/interfaces.d/big")
    with pytest.raises(FileRefused, match="bytes is more than"):
        net.write("/etc/network/interfaces.d/new", b"#" * (MAX_FILE_SIZE + 1), 0o644)
    assert net.read("/etc/network/interfaces") is not None


# -- the host name ------------------------------------------------------------------------------------


def test_the_host_name_is_left_alone_under_a_root(net: LiveNetwork) -> None:
    """Under a root the kernel's name is not the guest's: set_hostname changes nothing, hostname is None."""
    before = os.uname().nodename
    net.set_hostname("lab-guest-renamed")
    assert os.uname().nodename == before
    assert net.hostname() is None


def test_set_hostname_sets_the_kernels_name() -> None:
    """On "/", set_hostname is sethostname(2): run in UTS and network namespaces of its own, so this machine's
    name stays."""
    code = ("from agent.platform.network import LiveNetwork; n = LiveNetwork('/'); "
            "n.set_hostname('renamed-by-test'); print(n.hostname())")
    result = subprocess.run(["unshare", "--uts", "--net", sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "renamed-by-test"


@pytest.mark.parametrize("name", ["x" * 65, "", "a\0b"])
def test_a_host_name_the_kernel_cannot_take_is_refused(name: str) -> None:
    """sethostname takes 1 to 64 bytes without NUL; anything else is refused before it is called."""
    with pytest.raises(PlatformError, match="1 to 64 bytes"):
        LiveNetwork("/").set_hostname(name)


# -- run_tool --------------------------------------------------------------------------------------------


def test_run_tool_gives_the_output() -> None:
    """run_tool returns what the tool printed, in the C locale."""
    assert run_tool(["sh", "-c", 'echo "$LC_ALL"; echo out'], "", "", "dash") == "C\nout\n"


def test_run_tool_names_the_wrapped_tool_and_the_end_of_its_message() -> None:
    """A failure names the tool given (not its wrapper) with its status and the end of a long message."""
    script = 'printf "noise %.0s" $(seq 100) >&2; echo "the reason" >&2; exit 3'
    with pytest.raises(PlatformError, match=r"^ifup failed with exit status 3: \.\.\..*the reason$"):
        run_tool(["sh", "-c", script], "", "", "dash", tool="ifup")


def test_run_tool_timeout() -> None:
    """A tool past the caller's timeout is stopped and named."""
    with pytest.raises(PlatformError, match=r"^ifup did not finish within 0\.2 s$"):
        run_tool(["sleep", "5"], "", "", "coreutils", timeout=0.2, tool="ifup")


# -- the agent in the lab -------------------------------------------------------------------------------


def test_an_agent_process_runs_in_the_guest_namespace(lan: Lan, agent_process: Callable[..., Any]) -> None:
    """agent_process(prefix=lan.prefix, root=lan.root) runs the agent inside the guest's network namespace
    with the image as its root: where its network port may apply, and only to the lab."""
    proc = agent_process(prefix=lan.prefix, root=lan.root).start()
    wait_for(lambda: (lan.root / STATE_DIR.lstrip("/")).is_dir() or proc.process.poll() is not None)
    assert proc.process.poll() is None, proc.log()
    inside = os.readlink(f"/proc/{proc.process.pid}/ns/net")
    assert inside == lan.run(["readlink", "/proc/self/ns/net"]).strip() != os.readlink("/proc/self/ns/net")
    assert proc.stop() == 0, proc.log()
