"""The XenStore wrapper where it differs from the memory store: timeouts, dead daemons, the agent across restarts.

What it shares with the memory store (nodes, values, limits, watches, outages) is tested on both in
tests/test_memstore.py.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from agent.errors import XenStoreTimeout, XenStoreUnavailable
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.sandbox import Xenstored, create_domain
from agent.xenstore import XenStore, unreachable
from tests.conftest import DOMID, open_journal, wait_for


def test_call_to_a_silent_daemon_times_out(tmp_path: Path) -> None:
    """A daemon that accepts but never answers produces XenStoreTimeout, not a hang (pyxs alone hangs)."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with XenStore(f"unix:{path}", "/local/domain/5", timeout=0.5) as xs, pytest.raises(XenStoreTimeout):
            xs.read("name")
    finally:
        server.close()


def _stale_socket(path: Path) -> Path:
    """A socket file nothing listens on, as a stopped xenstored leaves behind."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
    return path


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda tmp: tmp / "missing.sock", "cannot connect to XenStore at unix:{path}: no xenstored socket "
                 "at {path}; start xenstored, or point --xenstore at its socket ('unix:PATH'; XENSTORED_PATH sets "
                 "the default)", id="no-socket"),
    pytest.param(lambda tmp: _stale_socket(tmp / "stale.sock"), "cannot connect to XenStore at unix:{path}: nothing "
                 "answers on {path} (a socket a stopped xenstored left behind?); start xenstored, or point --xenstore "
                 "at a running one's socket ('unix:PATH')", id="refused"),
])
def test_connect_to_nothing_says_what_to_check(tmp_path: Path, make, message: str) -> None:
    """No daemon at the address: XenStoreUnavailable naming the address, what is missing there and the fix."""
    path = make(tmp_path)
    with pytest.raises(XenStoreUnavailable) as failed:
        XenStore(f"unix:{path}").connect()
    assert str(failed.value) == message.format(path=path)


def test_xenbus_that_is_not_a_device_is_named(tmp_path: Path) -> None:
    """A XenBus path that cannot be opened for another reason is named with the system's reason."""
    with pytest.raises(XenStoreUnavailable) as failed:
        XenStore(f"xenbus:{tmp_path}").connect()
    assert str(failed.value) == (f"cannot connect to XenStore at xenbus:{tmp_path}: {tmp_path}: Is a directory; "
                                 "check --xenstore ('unix:PATH' for a xenstored socket, 'xenbus[:PATH]' in a guest)")


@pytest.mark.parametrize(("system", "cause", "message"), [
    pytest.param({}, errno.ENOENT, "/dev/xen/xenbus does not exist, and this does not look like a Xen guest (no "
                 "/proc/xen, and /sys/hypervisor/type does not say xen); run the agent in a Xen guest, or point "
                 "--xenstore at a xenstored socket ('unix:PATH')", id="not-xen"),
    pytest.param({"sys/hypervisor/type": "kvm\n"}, errno.ENOENT, "/dev/xen/xenbus does not exist, and this does not "
                 "look like a Xen guest (no /proc/xen, and /sys/hypervisor/type does not say xen); run the agent in "
                 "a Xen guest, or point --xenstore at a xenstored socket ('unix:PATH')", id="other-hypervisor"),
    pytest.param({"sys/hypervisor/type": "xen\n"}, errno.ENOENT, "/dev/xen/xenbus does not exist though this is a "
                 "Xen guest; load the Xen modules that provide it ('modprobe xenfs xen-evtchn', then 'mount -t xenfs "
                 "xenfs /proc/xen' if /proc/xen is empty), or point --xenstore at a xenstored socket ('unix:PATH')",
                 id="xen-without-modules"),
    pytest.param({"proc/xen/": ""}, errno.ENOENT, "/dev/xen/xenbus does not exist though this is a Xen guest; load "
                 "the Xen modules that provide it ('modprobe xenfs xen-evtchn', then 'mount -t xenfs xenfs "
                 "/proc/xen' if /proc/xen is empty), or point --xenstore at a xenstored socket ('unix:PATH')",
                 id="proc-xen-without-xenbus"),
    pytest.param({"proc/xen/": ""}, errno.EACCES, "permission denied on /dev/xen/xenbus; the agent needs read and "
                 "write access to it: run it as root", id="permission"),
])
def test_xenbus_unreachable_says_what_to_check(tmp_path: Path, system: dict[str, str], cause: int,
                                               message: str) -> None:
    """An unopenable XenBus is explained from what the system shows: not Xen, Xen without its modules, or no
    permission (tested against throw-away /proc and /sys trees)."""
    for name, text in system.items():  # a name ending in "/" is a directory
        directory = tmp_path / name if name.endswith("/") else (tmp_path / name).parent
        directory.mkdir(parents=True, exist_ok=True)
        if not name.endswith("/"):
            (tmp_path / name).write_text(text)
    error = OSError(cause, os.strerror(cause))
    assert unreachable("xenbus", "/dev/xen/xenbus", error, root=str(tmp_path)) == (
        f"cannot connect to XenStore at xenbus: {message}")


def test_dead_daemon_wakes_the_watch_and_pending_calls(xenstored: Xenstored, guest: XenStore) -> None:
    """When xenstored dies, a blocked watch wait raises at once instead of blocking forever."""
    guest.watch("data/host", "t")
    assert guest.next_event(timeout=5) == ("data/host", "t")  # the watch fires once when set
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            guest.next_event(timeout=30)
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    xenstored.stop()
    waiter.join(10)
    assert not waiter.is_alive()
    assert errors and isinstance(errors[0], XenStoreUnavailable)
    with pytest.raises(XenStoreUnavailable):
        guest.read("name")


def test_agent_survives_a_xenstored_restart(run_agent, xenstored: Xenstored, tmp_path: Path) -> None:
    """The agent reconnects with backoff after xenstored restarts, watches again, rescans, and answers."""
    run_agent()
    with XenStore(xenstored.address, f"/local/domain/{DOMID}") as xs:
        assert Host(xs, 0.01).call("version", timeout=10)["returncode"] == "0"
    xenstored.stop()
    xenstored.start()  # a fresh, empty store on the same socket
    home = create_domain(xenstored.address, DOMID)
    with XenStore(xenstored.address, home) as xs:
        assert Host(xs, 0.01).call("version", timeout=20)["returncode"] == "0"
        assert Host(xs, 0.01).call("features", timeout=10)["returncode"] == "0"


def test_requests_present_at_reconnect_are_answered(
        run_agent, xenstored: Xenstored, state_dir: Path) -> None:
    """Requests present when the agent reconnects are found by the rescan, not only by watch events."""
    agent = run_agent()
    xenstored.stop()
    xenstored.start()
    home = create_domain(xenstored.address, DOMID)
    with XenStore(xenstored.address, home) as xs:
        for n in range(5):
            xs.write(f"{HOST_DIR}/queued-{n}", '{"name": "version"}')
        wait_for(lambda: len(xs.list(GUEST_DIR)) == 5)
        replies = {json.loads(xs.read(f"{GUEST_DIR}/{i}") or b"{}")["returncode"] for i in xs.list(GUEST_DIR)}
    assert replies == {"0"}
    agent.stop()
    assert len(open_journal(state_dir).commands()) == 5
