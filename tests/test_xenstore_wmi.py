"""The WMI XenStore transport (``agent.xenstore_wmi``) over the fake xeniface, itself over the real xenstored.

The contract tests of tests/test_memstore.py that hold for WMI run here too, on a ``backend`` fixture of this
module (pytest gives a test the fixtures of the module it is collected in). Those that watch for the changed
path, or for events ordered with answers, have a WMI counterpart below: the interface names the watched path
and delivers events asynchronously. So does the one that lists a node whose children's names pass one message:
the driver asks xenstored for the list in one message, which xenstored refuses. At the end a real daemon
serves a host that uses xenstored directly.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import config as agent_config
from agent.errors import XenStoreError, XenStoreUnavailable
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.sandbox import Xenstored, create_domain
from agent.xenstore import Transport, XenStore, open_transport
from agent.xenstore_wmi import WmiXenStore
from tests import test_memstore as contract
from tests.conftest import open_journal, wait_for
from tests.fakes.xeniface import WBEM_E_FAILED, FakeXeniface, wmi_error
from tests.system import password_matches, runs, shadow_hash
from tests.test_injectfile import KEY, make_guest_files

Backend = contract.Backend
xs = contract.xs
other = contract.other
watched = contract.watched

# -- the shared contract ----------------------------------------------------------------------------------

test_values_round_trip = contract.test_values_round_trip
test_write_makes_missing_parents_with_empty_values = contract.test_write_makes_missing_parents_with_empty_values
test_mkdir_makes_nodes_and_leaves_existing_ones = contract.test_mkdir_makes_nodes_and_leaves_existing_ones
test_delete_removes_the_subtree_and_missing_nodes_are_fine = \
    contract.test_delete_removes_the_subtree_and_missing_nodes_are_fine
test_batched_calls_do_each_call_in_order = contract.test_batched_calls_do_each_call_in_order
test_missing_node_lists_as_empty_and_does_not_exist = contract.test_missing_node_lists_as_empty_and_does_not_exist
test_bad_values_are_refused_before_sending = contract.test_bad_values_are_refused_before_sending
test_a_value_may_fill_the_payload_to_4096_bytes = contract.test_a_value_may_fill_the_payload_to_4096_bytes
test_bad_paths_are_refused_before_sending = contract.test_bad_paths_are_refused_before_sending
test_paths_longer_than_2048_bytes_are_einval = contract.test_paths_longer_than_2048_bytes_are_einval
test_a_watch_fires_once_at_first_with_its_own_path = contract.test_a_watch_fires_once_at_first_with_its_own_path
test_wake_from_another_thread_returns_none = contract.test_wake_from_another_thread_returns_none
test_a_closed_connection_raises_until_connected = contract.test_a_closed_connection_raises_until_connected

PASSWORD = "N3w-Admin pass:word"
#: Seconds between the event thread's looks at whether its session still exists (10 by default).
CHECK_INTERVAL = 0.2


@pytest.fixture
def xeniface(xenstored: Xenstored, domain: str) -> FakeXeniface:
    """The guest's PV drivers: relative paths are the guest's (``domain``)."""
    return FakeXeniface(xenstored.address, domain)


def wmi(fake: FakeXeniface, domain_path: str = "", check_interval: float = CHECK_INTERVAL) -> WmiXenStore:
    return WmiXenStore(domain_path, timeout=10, check_interval=check_interval, **fake.modules())


@pytest.fixture
def backend(xenstored: Xenstored, domain: str, xeniface: FakeXeniface) -> Iterator[Backend]:
    """The contract's backend: WMI sessions; xenstored stopping takes the driver with it."""

    def open_wmi(domain_path: str) -> Transport:
        transport = wmi(xeniface, domain_path)
        transport.connect()
        return transport

    def end(transport: WmiXenStore) -> None:
        xeniface.end_session(transport._ident or "")
        wait_for(lambda: not transport.connected)

    def stop() -> None:
        xeniface.unload()
        xenstored.stop()

    def start() -> None:
        xenstored.start()
        create_domain(xenstored.address, contract.DOMID)
        xeniface.load()

    made = Backend("wmi", domain, open_wmi, stop, start, end)
    yield made
    for transport in made.opened:
        transport.close()


@pytest.fixture
def host_side(guest: XenStore) -> XenStore:
    """The host's connection: xenstored directly, rooted at the guest's home."""
    return guest


def waiting(transport: Transport) -> tuple[threading.Thread, list[BaseException]]:
    """A thread blocked in ``next_event`` without a timeout; what it raised."""
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            transport.next_event(timeout=None)
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    return waiter, raised


# -- where WMI differs ------------------------------------------------------------------------------------


def test_a_value_with_a_nul_is_refused_before_sending(xs: Transport) -> None:
    """The driver writes values with "%s" (a NUL would cut them short): refused, without errno or the value."""
    with pytest.raises(XenStoreError, match="invalid XenStore path or value") as error:
        xs.write("data/guest/x", "s3cret\x00tail")
    assert error.value.code is None and "s3cret" not in str(error.value)
    assert xs.read("data/guest/x") is None


def test_events_name_the_watched_path(xs: Transport, host_side: XenStore, xeniface: FakeXeniface) -> None:
    """A change below a watch fires it with the watched path; a second token shares the driver's watch, fires
    once at first and then with the first token."""
    watched(xs, HOST_DIR)
    host_side.write(f"{HOST_DIR}/request/below", "{}")
    assert xs.next_event(timeout=10) == (HOST_DIR, "t")
    watched(xs, HOST_DIR, "u")
    assert [call for call in xeniface.calls if call[0] == "SetWatch"] == [("SetWatch", f"{xs.domain_path}/{HOST_DIR}")]
    host_side.write(f"{HOST_DIR}/again", "{}")
    assert {xs.next_event(timeout=10), xs.next_event(timeout=10)} == {(HOST_DIR, "t"), (HOST_DIR, "u")}


def test_other_sessions_watches_are_not_delivered(xs: Transport, other: Transport, host_side: XenStore) -> None:
    """WMI sends every session's watch events to every consumer: only this session's watched paths come out."""
    watched(xs, HOST_DIR)
    watched(other, GUEST_DIR)
    host_side.write(f"{GUEST_DIR}/reply", "{}")
    assert other.next_event(timeout=10) == (GUEST_DIR, "t")  # sent to every consumer by now, xs's included
    host_side.write(f"{HOST_DIR}/request", "{}")
    assert xs.next_event(timeout=10) == (HOST_DIR, "t")


def test_event_pending_is_always_true(xs: Transport) -> None:
    """No event is known to have arrived when a call returns, so every path may have one pending: the daemon
    then reads a request before deleting it."""
    assert xs.event_pending(f"{HOST_DIR}/anything") and xs.event_pending("data/elsewhere")


def test_next_event_gives_none_after_its_timeout(xs: Transport) -> None:
    """With no change, next_event returns None after its timeout: NextEvent's time-outs stay inside."""
    watched(xs, HOST_DIR)
    assert xs.next_event(timeout=0.5) is None and xs.connected


LOSSES: dict[str, Callable[[FakeXeniface, WmiXenStore], None]] = {
    "driver-reload": lambda fake, transport: fake.reload(),
    "session-ended": lambda fake, transport: fake.end_session(transport._ident or ""),
}


@pytest.mark.parametrize("lose", LOSSES)
def test_a_lost_session_wakes_the_waiter_then_reconnects(xeniface: FakeXeniface, host_side: XenStore,
                                                         lose: str) -> None:
    """A session lost while the agent waits for events: the event thread notices, the blocked next_event and
    every call raise XenStoreUnavailable, and connect makes a new session whose watch fires first."""
    transport = wmi(xeniface)
    transport.connect()
    watched(transport, HOST_DIR)
    waiter, raised = waiting(transport)
    LOSSES[lose](xeniface, transport)
    waiter.join(20)
    assert not waiter.is_alive() and len(raised) == 1 and isinstance(raised[0], XenStoreUnavailable)
    for call in contract.CALLS.values():
        with pytest.raises(XenStoreUnavailable):
            call(transport, f"{HOST_DIR}/x")
    transport.connect()
    watched(transport, HOST_DIR, "again")
    host_side.write(f"{HOST_DIR}/after", "{}")
    assert transport.next_event(timeout=10) == (HOST_DIR, "again")
    transport.close()


def test_children_past_one_message_are_an_error(xs: Transport) -> None:
    """The driver lists children in one XS_DIRECTORY answer, which xenstored refuses past 4096 bytes of names
    (300 UUIDs here), and its GetFirstChild/GetNextSibling send the same: list raises XenStoreError instead of
    giving part of the list, and the node still exists (the contract's whole list does not hold over WMI)."""
    for n in range(300):
        xs.write(f"{HOST_DIR}/{uuid.UUID(int=n)}", "{}")
    with pytest.raises(XenStoreError, match="refused list"):
        xs.list(HOST_DIR)
    assert xs.exists(HOST_DIR)


def test_a_session_number_used_again_is_not_taken_for_ours(xeniface: FakeXeniface) -> None:
    """After a reload the driver numbers sessions from 0 again: another client's session 0 does not keep
    ours alive; it is lost, and calls raise XenStoreUnavailable instead of reaching the other session."""
    transport = wmi(xeniface)
    transport.connect()
    watched(transport, HOST_DIR)
    number, = xeniface.sessions
    xeniface.reload()
    assert xeniface.add_session("XenGuestAgent") == number
    wait_for(lambda: not transport.connected)
    with pytest.raises(XenStoreUnavailable):
        transport.read(HOST_DIR)
    transport.close()
    assert [session.name for session in xeniface.sessions.values()] == ["XenGuestAgent"]


@pytest.mark.parametrize("fault", ["NextEvent", "EventId"])
def test_a_failing_event_thread_loses_the_session_and_the_reconnect_ends_it(
        xeniface: FakeXeniface, host_side: XenStore, fault: str) -> None:
    """The event source failing (the WMI service restarting) or an event that cannot be read ends the event
    thread: next_event raises XenStoreUnavailable, and the reconnect ends the old session (it would stay
    in the driver with its watch) before serving events again."""
    transport = wmi(xeniface, check_interval=3600)
    transport.connect()
    watched(transport, HOST_DIR)
    first = transport._ident
    xeniface.fault = fault
    host_side.write(f"{HOST_DIR}/request", "{}")
    with pytest.raises(XenStoreUnavailable):
        for _ in range(3):  # the request's event may come before a NextEvent fails
            transport.next_event(timeout=20)
    transport.connect()
    assert [session.name for session in xeniface.sessions.values()] == [transport._ident] != [first]
    watched(transport, HOST_DIR, "again")
    transport.close()
    assert xeniface.sessions == {}


def test_a_session_made_while_suspended_is_ended_after_the_resume(xeniface: FakeXeniface) -> None:
    """A connect during a suspend makes a session that cannot be found until the resume: the first connect
    after it ends that session, so none is left behind."""
    xeniface.suspend()
    transport = wmi(xeniface)
    with pytest.raises(XenStoreUnavailable, match="cannot be found"):
        transport.connect()
    assert len(xeniface.sessions) == 1
    xeniface.resume()
    transport.connect()
    assert [session.name for session in xeniface.sessions.values()] == [transport._ident]
    transport.close()
    assert xeniface.sessions == {}


@pytest.mark.parametrize("closer", ["connecting-thread", "another-thread"])
def test_close_ends_the_session_from_any_thread(xeniface: FakeXeniface, closer: str) -> None:
    """close ends the driver's session also from a thread that did not connect (COM objects are their
    thread's: the session is found again through that thread's own WMI connection)."""
    transport = wmi(xeniface)
    transport.connect()
    watched(transport, HOST_DIR)
    if closer == "another-thread":
        thread = threading.Thread(target=transport.close)
        thread.start()
        thread.join(20)
    else:
        transport.close()
    assert xeniface.sessions == {}


def test_children_the_driver_will_not_list_are_an_error_not_an_empty_list(xeniface: FakeXeniface) -> None:
    """GetChildren failing on a node that exists (WMI says no more) raises: an empty list would hide the
    requests waiting in data/host. A missing node still lists as empty."""
    transport = wmi(xeniface)
    transport.connect()
    transport.write("data/host/request", "{}")

    def refuse(name: str, path: str) -> None:
        if name == "GetChildren":
            raise wmi_error(WBEM_E_FAILED, "Generic failure ")

    xeniface.before_call = refuse
    with pytest.raises(XenStoreError, match="refused list"):
        transport.list("data/host")
    assert transport.list("data/nothing") == [] and transport.exists("data/host")
    transport.close()


@pytest.mark.parametrize("lose", LOSSES)
def test_a_call_notices_a_lost_session(xeniface: FakeXeniface, lose: str) -> None:
    """Without the event thread's look (an hour away), the first call after the loss raises
    XenStoreUnavailable, and so does next_event then."""
    transport = wmi(xeniface, check_interval=3600)
    transport.connect()
    transport.write("data/guest/x", "1")
    LOSSES[lose](xeniface, transport)
    with pytest.raises(XenStoreUnavailable, match="session ended"):
        transport.read("data/guest/x")
    assert not transport.connected
    with pytest.raises(XenStoreUnavailable):
        transport.next_event(timeout=30)
    transport.connect()
    assert transport.read("data/guest/x") == b"1"
    transport.close()


def test_suspend_then_resume(xeniface: FakeXeniface) -> None:
    """While the guest is suspended calls raise XenStoreUnavailable and no session can be opened; after the
    resume connecting works again."""
    transport = wmi(xeniface)
    transport.connect()
    xeniface.suspend()
    with pytest.raises(XenStoreUnavailable):
        transport.list(HOST_DIR)
    with pytest.raises(XenStoreUnavailable):
        transport.connect()
    xeniface.resume()
    transport.connect()
    watched(transport, HOST_DIR)
    transport.close()


def test_no_driver_says_what_to_check(xeniface: FakeXeniface) -> None:
    """Without xeniface there is no XenStoreBase: connect raises XenStoreUnavailable naming the drivers; once
    the driver is loaded it connects."""
    xeniface.unload()
    transport = wmi(xeniface)
    with pytest.raises(XenStoreUnavailable, match=r"no XenStoreBase object in WMI root\\wmi .*Xen PV drivers"):
        transport.connect()
    xeniface.load()
    transport.connect()
    assert transport.connected
    transport.close()


@pytest.mark.parametrize("prefix", ["Citrix", "XenProject"])
def test_both_class_prefixes(xenstored: Xenstored, domain: str, host_side: XenStore, prefix: str) -> None:
    """Drivers built with either class prefix serve values and watches; relative paths are the guest's."""
    fake = FakeXeniface(xenstored.address, domain, prefix=prefix)
    transport = wmi(fake)
    transport.connect()
    transport.write(f"{GUEST_DIR}/x", "1")
    assert host_side.read(f"{GUEST_DIR}/x") == b"1"
    watched(transport, HOST_DIR)
    transport.close()


def test_without_pywin32_connect_says_so() -> None:
    """Where pywin32 is missing (here), connecting raises XenStoreUnavailable saying what to install."""
    with pytest.raises(XenStoreUnavailable, match="pywin32 is not installed"):
        WmiXenStore().connect()


def test_the_address_picks_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """'wmi' opens the WMI transport, other addresses pyxs's; 'wmi' is the default address on Windows."""
    assert isinstance(open_transport("wmi", "", 5), WmiXenStore)
    assert isinstance(open_transport("unix:/nowhere", "", 5), XenStore)
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    config = agent_config.from_overrides()
    monkeypatch.setattr(sys, "platform", "win32")
    assert config.xenstore_address == "wmi"
    monkeypatch.setattr(sys, "platform", "linux")
    assert config.xenstore_address == "xenbus"


# -- a real daemon over WMI --------------------------------------------------------------------------------


@pytest.fixture
def wmi_agent(run_agent: Any, xeniface: FakeXeniface) -> Any:
    """Start the real daemon in a thread on the WMI transport (relative paths, as in a guest)."""
    return lambda **overrides: run_agent(transport=wmi(xeniface), domain_path="", **overrides)


def test_version_over_wmi(wmi_agent: Any, host: Host) -> None:
    """The agent on WMI answers nova's version request written to xenstored."""
    wmi_agent()
    reply = host.call("version", timeout=20)
    assert reply["returncode"] == "0" and reply["message"]


def test_password_over_wmi(wmi_agent: Any, host: Host, system_root: Path, chpasswd_runs: Path) -> None:
    """keyinit + password over WMI set the real password once."""
    wmi_agent()
    assert host.set_password(PASSWORD, timeout=20) == {"returncode": "0", "message": ""}
    assert password_matches(PASSWORD, shadow_hash(system_root, "root"))
    assert len(runs(chpasswd_runs)) == 1


def test_injectfile_over_wmi(wmi_agent: Any, host: Host, system_root: Path) -> None:
    """injectfile over WMI writes the file."""
    make_guest_files(system_root)
    wmi_agent()
    assert host.inject_file("/home/cloud/.ssh/authorized_keys", KEY, timeout=20) == {"returncode": "0",
                                                                                       "message": ""}
    assert (system_root / "home/cloud/.ssh/authorized_keys").read_bytes() == KEY


def test_stopping_the_agent_ends_its_session(wmi_agent: Any, xeniface: FakeXeniface) -> None:
    """A stop closes XenStore from the daemon's shutdown thread: the driver keeps no session (a service
    restarted often would otherwise reach the driver's maximum)."""
    wmi_agent().stop()
    assert xeniface.sessions == {}


def test_a_session_lost_mid_flow_completes_once(wmi_agent: Any, host: Host, system_root: Path, state_dir: Path,
                                               chpasswd_runs: Path, xeniface: FakeXeniface) -> None:
    """The driver reloads as the agent writes the password's reply: the agent reconnects with a new session,
    and the command completes with its reply, having set the password exactly once."""
    reloads: list[str] = []

    def reload_at_the_password_reply(method: str, path: str) -> None:
        if method == "SetValue" and path.startswith(f"{GUEST_DIR}/") and len(runs(chpasswd_runs)) == 1 \
                and not reloads:
            reloads.append(path)
            xeniface.reload()

    wmi_agent()
    first_session = {session.name for session in xeniface.sessions.values()}
    xeniface.before_call = reload_at_the_password_reply
    assert host.set_password(PASSWORD, timeout=30) == {"returncode": "0", "message": ""}
    assert len(reloads) == 1 and {session.name for session in xeniface.sessions.values()}.isdisjoint(first_session)
    assert password_matches(PASSWORD, shadow_hash(system_root, "root"))
    assert len(runs(chpasswd_runs)) == 1
    journal = open_journal(state_dir)
    password, = journal.commands(name="password")
    assert [t.dest for t in journal.transitions(password.id)][-1] == "done"
