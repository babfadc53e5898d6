"""The XenStore wrapper against the real xenstored: values, timeouts, dead connections, restarts."""

from __future__ import annotations

import errno
import json
import socket
import threading
import uuid
from pathlib import Path

import pytest

from agent.errors import XenStoreError, XenStoreTimeout, XenStoreUnavailable
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.sandbox import Xenstored, create_domain
from agent.xenstore import XenStore
from tests.conftest import DOMID, open_journal, wait_for


def test_read_write_list_delete(guest: XenStore) -> None:
    """Values round-trip; missing nodes read as None and list as empty; deleting twice is fine."""
    guest.write("data/guest/x", '{"a": 1}')
    assert guest.read("data/guest/x") == b'{"a": 1}'
    assert "x" in guest.list("data/guest")
    guest.delete("data/guest/x")
    guest.delete("data/guest/x")
    assert guest.read("data/guest/x") is None
    assert guest.list("data/nothing") == []


def test_non_ascii_value_is_refused_clearly(guest: XenStore) -> None:
    """A value that is not 7-bit ASCII is a XenStoreError naming the path and the fix, never a raw
    UnicodeEncodeError, and nothing is written."""
    with pytest.raises(XenStoreError, match=r"/local/domain/5/data/guest/x: XenStore values are 7-bit ASCII.*"
                                            r"offset 3.*escape") as error:
        guest.write("data/guest/x", "caf\u00e9 s3cret")
    assert "s3cret" not in str(error.value) and "caf" not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert guest.read("data/guest/x") is None


def test_value_over_the_message_limit_is_an_error(guest: XenStore) -> None:
    """A value beyond XenStore's 4096-byte message payload is refused with a XenStoreError, not sent."""
    with pytest.raises(XenStoreError, match="invalid XenStore path or value") as error:
        guest.write("data/guest/big", "s3cret" * 1000)
    assert "s3cret" not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


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


def test_watch_reports_relative_paths(guest: XenStore) -> None:
    """Events under the domain home come back relative to it, as a guest sees them."""
    guest.watch("data/host", "t")
    guest.next_event(timeout=5)
    guest.write("data/host/abc", "{}")
    assert guest.next_event(timeout=5) == ("data/host/abc", "t")


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


def test_list_beyond_one_message_uses_directory_parts(guest: XenStore) -> None:
    """A child list larger than 4096 bytes (here 300 UUIDs) is read whole, in parts."""
    names = {str(uuid.UUID(int=n)) for n in range(300)}
    for name in names:
        guest.write(f"data/host/{name}", "{}")
    assert set(guest.list("data/host")) == names


def test_refused_watch_is_an_error_and_leaves_events_single(guest: XenStore) -> None:
    """xenstored refusing a watch (here a duplicate) is a XenStoreError with its errno, not a lost connection;
    the connection goes on and each change still arrives once."""
    guest.watch("data/host", "t")
    assert guest.next_event(timeout=5) == ("data/host", "t")
    with pytest.raises(XenStoreError) as error:
        guest.watch("data/host", "t")
    assert error.value.code == errno.EEXIST and not isinstance(error.value, XenStoreUnavailable)
    with pytest.raises(XenStoreError, match="invalid XenStore path") as bad:
        guest.watch("data/host/", "t")
    assert not isinstance(bad.value, XenStoreUnavailable)
    guest.write("data/host/a", "{}")
    guest.write("data/host/b", "{}")
    assert guest.next_event(timeout=5) == ("data/host/a", "t")
    assert guest.next_event(timeout=5) == ("data/host/b", "t")


def test_watches_sharing_a_token_fire_once_per_change(guest: XenStore) -> None:
    """Two watches with one token: a change below both arrives once, as xenstored sends it (pyxs alone
    delivered every event of the token once per watch call)."""
    guest.watch("data", "t")
    guest.watch("data/host", "t")
    assert [guest.next_event(timeout=5), guest.next_event(timeout=5)] == [("data", "t"), ("data/host", "t")]
    for path in ("data/host/a", "data/b", "data/c"):
        guest.write(path, "{}")
    events = [guest.next_event(timeout=5) for _ in range(3)]
    assert events == [("data/host/a", "t"), ("data/b", "t"), ("data/c", "t")]


def test_next_event_on_a_closed_connection_raises(guest: XenStore) -> None:
    """Waiting on a connection that is down raises every time instead of blocking until the timeout."""
    guest.close()
    for _ in range(2):
        with pytest.raises(XenStoreUnavailable):
            guest.next_event(timeout=30)
    guest.wake()
    assert guest.next_event(timeout=30) is None
