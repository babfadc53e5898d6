"""The XenStore wrapper where it differs from the memory store: timeouts, dead daemons, the agent across restarts.

What it shares with the memory store (nodes, values, limits, watches, outages) is tested on both in
tests/test_memstore.py.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from agent.errors import XenStoreTimeout, XenStoreUnavailable
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.sandbox import Xenstored, create_domain
from agent.xenstore import XenStore
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


def test_connect_to_nothing_is_unavailable(tmp_path: Path) -> None:
    """No daemon at the address: XenStoreUnavailable naming the address."""
    with pytest.raises(XenStoreUnavailable, match=r"missing\.sock"):
        XenStore(f"unix:{tmp_path / 'missing.sock'}").connect()


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
