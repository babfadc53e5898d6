"""The memory store against the real xenstored.

Every test taking ``backend`` runs twice: on ``XenStore`` over this test's own xenstored, and on a
``MemoryXenStore``. That both pass proves the memory store behaves as the real one in what the daemon and the
host side use of a XenStore connection. The tests at the end are about the memory store alone.
"""

from __future__ import annotations

import errno
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.errors import XenStoreError, XenStoreUnavailable
from agent.host import Host
from agent.memstore import MemoryStore, MemoryXenStore
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.sandbox import create_domain
from agent.xenstore import Transport, XenStore
from tests.conftest import DOMID, wait_for


@dataclass
class Backend:
    """One XenStore to test against: connections to it, and the ways it fails."""

    name: str
    home: str
    _open: Callable[[str], Transport]
    #: xenstored stops: every connection breaks, and no new one can be made.
    stop: Callable[[], None]
    #: xenstored starts again, empty, and the guest's domain is made again.
    start: Callable[[], None]
    #: One connection breaks, as when its socket is reset; the store and its other connections go on.
    break_connection: Callable[[Any], None]
    opened: list[Transport] = field(default_factory=list)

    def connect(self, domain_path: str | None = None) -> Transport:
        """A connected transport rooted at ``domain_path`` (the guest's home unless given)."""
        transport = self._open(self.home if domain_path is None else domain_path)
        self.opened.append(transport)
        return transport


@pytest.fixture(params=["xenstored", "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "xenstored":
        xenstored = request.getfixturevalue("xenstored")

        def open_real(domain_path: str) -> Transport:
            xs = XenStore(xenstored.address, domain_path)
            xs.connect()
            return xs

        def break_real(xs: XenStore) -> None:
            # pyxs's socket, reset under it: its router sees the connection end, as when xenstored dies.
            xs._client.router.connection.transport.sock.shutdown(socket.SHUT_RDWR)
            wait_for(lambda: not xs.connected)

        made = Backend("xenstored", request.getfixturevalue("domain"), open_real, xenstored.stop,
                       lambda: (xenstored.start(), create_domain(xenstored.address, DOMID)), break_real)
    else:
        store = MemoryStore()
        made = Backend("memory", store.create_domain(DOMID), store.connection, store.stop,
                       lambda: (store.start(), store.create_domain(DOMID)), MemoryXenStore.drop)
    yield made
    for transport in made.opened:
        transport.close()


@pytest.fixture
def xs(backend: Backend) -> Transport:
    """The connection under test (the agent's, say), rooted at the guest's home."""
    return backend.connect()


@pytest.fixture
def other(backend: Backend) -> Transport:
    """A second connection to the same store (the host's, say)."""
    return backend.connect()


def events(xs: Transport, count: int) -> list[tuple[str, str] | None]:
    return [xs.next_event(timeout=10) for _ in range(count)]


def watched(xs: Transport, path: str, token: str = "t") -> Transport:
    """``xs`` watching ``path``, its first event taken."""
    xs.watch(path, token)
    assert xs.next_event(timeout=10) == (path, token)
    return xs


# -- nodes --------------------------------------------------------------------------------------------


def test_values_round_trip(xs: Transport) -> None:
    """A written value reads back as bytes, a rewrite replaces it, and a missing node reads as None."""
    xs.write("data/guest/x", '{"a": 1}')
    assert xs.read("data/guest/x") == b'{"a": 1}'
    xs.write("data/guest/x", "2")
    assert xs.read("data/guest/x") == b"2"
    assert xs.read("data/guest/missing") is None


def test_value_characters(xs: Transport) -> None:
    """Values may hold DEL and NUL; trailing NULs do not read back (pyxs strips them from every answer)."""
    xs.write("data/guest/x", "a\x7fb\x00c\x00\x00")
    assert xs.read("data/guest/x") == b"a\x7fb\x00c"


def test_write_makes_missing_parents_with_empty_values(xs: Transport) -> None:
    """Writing a deep node makes its missing parents, each with an empty value."""
    xs.write("data/guest/a/b/c", "v")
    assert xs.read("data/guest/a") == b"" and xs.read("data/guest/a/b") == b""
    assert xs.list("data/guest/a") == ["b"] and xs.exists("data/guest/a/b")


def test_mkdir_makes_nodes_and_leaves_existing_ones(xs: Transport) -> None:
    """mkdir makes a node and its parents with empty values, and leaves an existing node's value alone."""
    xs.mkdir("data/guest/m/n")
    assert xs.read("data/guest/m") == b"" and xs.read("data/guest/m/n") == b""
    xs.write("data/guest/v", "kept")
    xs.mkdir("data/guest/v")
    assert xs.read("data/guest/v") == b"kept"


def test_delete_removes_the_subtree_and_missing_nodes_are_fine(xs: Transport) -> None:
    """Deleting removes the node and all below it; deleting it again, or below a missing parent, is fine."""
    xs.write("data/guest/x/y/z", "v")
    xs.write("data/guest/keep", "v")
    xs.delete("data/guest/x")
    assert xs.read("data/guest/x/y/z") is None and not xs.exists("data/guest/x")
    assert xs.list("data/guest") == ["keep"]
    xs.delete("data/guest/x")
    xs.delete("data/guest/x/y/z")


def test_batched_calls_do_each_call_in_order(xs: Transport) -> None:
    """read_many, write_many and delete_many act as the single calls one after the other would: each item
    gets its own answer, a missing node reads as None and deletes without error."""
    paths = [f"data/host/r{i}" for i in range(50)]
    assert xs.write_many([(path, f"value {i}") for i, path in enumerate(paths)]) == [None] * 50
    assert xs.read_many([*paths[:3], "data/host/missing", paths[49]]) == [b"value 0", b"value 1", b"value 2", None,
                                                                         b"value 49"]
    assert xs.read_many([]) == [] and xs.write_many([]) == []
    xs.delete_many([*paths[:25], "data/host/missing"])
    assert sorted(xs.list("data/host")) == sorted(path.rsplit("/", 1)[1] for path in paths[25:])


def test_missing_node_lists_as_empty_and_does_not_exist(xs: Transport) -> None:
    """A missing node has no children and does not exist; an empty one exists."""
    assert xs.list("data/nothing") == [] and not xs.exists("data/nothing")
    assert xs.list("data/host") == [] and xs.exists("data/host")


def test_long_child_lists_are_read_whole(xs: Transport) -> None:
    """A child list far beyond the 4096-byte message payload (300 UUIDs) is listed whole."""
    names = {str(uuid.UUID(int=n)) for n in range(300)}
    for name in names:
        xs.write(f"{HOST_DIR}/{name}", "{}")
    assert set(xs.list(HOST_DIR)) == names and len(xs.list(HOST_DIR)) == 300
    assert xs.exists(HOST_DIR)


# -- what is refused ----------------------------------------------------------------------------------

BAD_VALUES = [
    pytest.param("", "invalid XenStore path or value", id="empty"),
    pytest.param("line\nbreak s3cret", "invalid XenStore path or value", id="control-character"),
    pytest.param("caf\u00e9 s3cret", "data/guest/bad: XenStore values are 7-bit ASCII here.*escape the text",
                 id="non-ascii"),
    pytest.param("s3cret" * 700, "invalid XenStore path or value", id="over-the-payload"),
]


@pytest.mark.parametrize("many", [False, True], ids=["write", "write_many"])
@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
def test_bad_values_are_refused_before_sending(xs: Transport, value: str, message: str, many: bool) -> None:
    """A value XenStore cannot carry is a XenStoreError without errno or the value's text; nothing is written."""
    with pytest.raises(XenStoreError, match=message) as error:
        if many:
            first_error(xs.write_many([("data/guest/good", "fine"), ("data/guest/bad", value)]))
        else:
            xs.write("data/guest/bad", value)
    assert error.value.code is None and not isinstance(error.value, XenStoreUnavailable)
    assert "s3cret" not in str(error.value) and error.value.__cause__ is None
    assert xs.read("data/guest/bad") is None


def test_a_value_may_fill_the_payload_to_4096_bytes(backend: Backend, xs: Transport) -> None:
    """Path, NUL and value fill the message payload to exactly 4096 bytes; one byte more is refused."""
    room = 4096 - len(f"{backend.home}/data/guest/big") - 1
    xs.write("data/guest/big", "x" * room)
    assert xs.read("data/guest/big") == b"x" * room
    with pytest.raises(XenStoreError, match="invalid XenStore path or value"):
        xs.write("data/guest/big", "x" * (room + 1))


def first_error(outcomes: list[XenStoreError | None]) -> None:
    """Raise the first error ``write_many`` gave, as ``write`` would have raised it."""
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


CALLS: dict[str, Callable[[Transport, str], object]] = {
    "read": lambda xs, path: xs.read(path),
    "write": lambda xs, path: xs.write(path, "v"),
    "delete": lambda xs, path: xs.delete(path),
    # The batched calls, with a good path before the bad one: each item meets its own fate.
    "read_many": lambda xs, path: xs.read_many(["data/fine", path]),
    "write_many": lambda xs, path: first_error(xs.write_many([("data/fine", "v"), (path, "v")])),
    "delete_many": lambda xs, path: xs.delete_many(["data/fine", path]),
    "list": lambda xs, path: xs.list(path),
    "exists": lambda xs, path: xs.exists(path),
    "mkdir": lambda xs, path: xs.mkdir(path),
    "watch": lambda xs, path: xs.watch(path, "t"),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("path", ["data/host/", "data//host", "data/host/a b", "data/host/a.b", "data/host/\u00e9"])
def test_bad_paths_are_refused_before_sending(xs: Transport, call: str, path: str) -> None:
    """A path with a character XenStore does not take, a trailing slash or a double one is a XenStoreError
    without errno, for every call."""
    with pytest.raises(XenStoreError, match="invalid XenStore path or value") as error:
        CALLS[call](xs, path)
    assert error.value.code is None and not isinstance(error.value, XenStoreUnavailable)


#: (domain_path, the start of the path); xenstored counts from the domain's home, or the whole path elsewhere.
LIMITED = [
    pytest.param(None, "data/guest/", id="below-the-domain-home"),
    pytest.param("", "relative/", id="relative-to-dom0s-home"),
    pytest.param("", "/tool/", id="outside-any-domain"),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(("domain_path", "start"), LIMITED)
def test_paths_longer_than_2048_bytes_are_einval(backend: Backend, call: str, domain_path: str | None,
                                                 start: str) -> None:
    """xenstored refuses a path over 2048 bytes below a domain's home (or in all, elsewhere) with EINVAL, the
    errno the daemon takes as "this reply can never be written"; 2048 bytes are fine."""
    xs = backend.connect(domain_path)
    fits = start + "a" * (2048 - len(start))
    xs.write(fits, "v")
    assert xs.read(fits) == b"v"
    with pytest.raises(XenStoreError) as error:
        CALLS[call](xs, fits + "a")
    assert error.value.code == errno.EINVAL and not isinstance(error.value, XenStoreUnavailable)


# -- watches ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [HOST_DIR, "data/not-yet"])
def test_a_watch_fires_once_at_first_with_its_own_path(xs: Transport, path: str) -> None:
    """A new watch fires at once with the watched path, whether the node exists or not."""
    xs.watch(path, "t")
    assert xs.next_event(timeout=10) == (path, "t")


def test_changes_at_or_below_the_watch_fire_and_others_do_not(xs: Transport) -> None:
    """Writes, mkdirs that make a node and deletes at or below the watched path fire with the changed path;
    changes above or beside it, an mkdir of an existing node and a delete of a missing one do not."""
    watched(xs, HOST_DIR)
    xs.write(f"{HOST_DIR}/a", "{}")
    xs.write(f"{HOST_DIR}/a", "{}")  # the same value again still fires
    xs.write(f"{HOST_DIR}/deep/below/b", "{}")
    xs.write(HOST_DIR, "self")
    xs.write("data", "above")
    xs.write("data/hostel", "beside")
    xs.mkdir(f"{HOST_DIR}/a")
    xs.mkdir(f"{HOST_DIR}/made")
    xs.delete(f"{HOST_DIR}/missing")
    xs.delete(f"{HOST_DIR}/a")
    xs.write(f"{HOST_DIR}/last", "{}")
    assert events(xs, 7) == [(f"{HOST_DIR}/a", "t"), (f"{HOST_DIR}/a", "t"), (f"{HOST_DIR}/deep/below/b", "t"),
                             (HOST_DIR, "t"), (f"{HOST_DIR}/made", "t"), (f"{HOST_DIR}/a", "t"),
                             (f"{HOST_DIR}/last", "t")]


def test_deleting_a_subtree_fires_its_top_and_watched_nodes_inside(xs: Transport) -> None:
    """Deleting a subtree fires a watch above it once, with the subtree's top, and each watch inside it with
    its own path, deepest first, before the top."""
    for path in ("x/a/deep", "x/b", "x/c/d"):
        xs.write(f"{HOST_DIR}/{path}", "1")
    watched(xs, HOST_DIR)
    for path in ("x/a/deep", "x/a", "x/c", "x"):
        watched(xs, f"{HOST_DIR}/{path}", path)
    xs.delete(f"{HOST_DIR}/x")
    assert events(xs, 5) == [(f"{HOST_DIR}/x/a/deep", "x/a/deep"), (f"{HOST_DIR}/x/a", "x/a"),
                             (f"{HOST_DIR}/x/c", "x/c"), (f"{HOST_DIR}/x", "t"), (f"{HOST_DIR}/x", "x")]
    xs.delete("data")
    assert events(xs, 1) == [(HOST_DIR, "t")]


def test_a_change_fires_each_token_once(xs: Transport) -> None:
    """Watches sharing a token send a change below both once; different tokens each get it."""
    watched(xs, "data")
    watched(xs, HOST_DIR)
    watched(xs, HOST_DIR, "u")
    xs.write(f"{HOST_DIR}/a", "{}")
    xs.write("data/b", "{}")
    assert events(xs, 3) == [(f"{HOST_DIR}/a", "t"), (f"{HOST_DIR}/a", "u"), ("data/b", "t")]


def test_watching_the_same_path_and_token_twice_is_eexist(xs: Transport) -> None:
    """A second identical watch is refused with EEXIST, not taken for a lost connection; the first goes on."""
    watched(xs, HOST_DIR)
    with pytest.raises(XenStoreError) as error:
        xs.watch(HOST_DIR, "t")
    assert error.value.code == errno.EEXIST and not isinstance(error.value, XenStoreUnavailable)
    xs.write(f"{HOST_DIR}/a", "{}")
    xs.write(f"{HOST_DIR}/b", "{}")
    assert events(xs, 2) == [(f"{HOST_DIR}/a", "t"), (f"{HOST_DIR}/b", "t")]


def test_events_of_another_connection_arrive_in_order(xs: Transport, other: Transport) -> None:
    """What the host writes and deletes reaches the agent's watch, in the order it happened."""
    watched(xs, HOST_DIR)
    for n in range(20):
        other.write(f"{HOST_DIR}/r{n}", "{}")
    other.delete(f"{HOST_DIR}/r0")
    assert events(xs, 21) == [(f"{HOST_DIR}/r{n}", "t") for n in range(20)] + [(f"{HOST_DIR}/r0", "t")]


def test_event_pending(xs: Transport, other: Transport) -> None:
    """An event of the connection's own change is pending when the call returns; another connection's, and a
    watch's first, once a later call of this connection has returned; neither once taken."""
    xs.watch(HOST_DIR, "t")
    xs.read("name")
    assert xs.event_pending(HOST_DIR)
    assert xs.next_event(timeout=10) == (HOST_DIR, "t") and not xs.event_pending(HOST_DIR)
    xs.write(f"{HOST_DIR}/own", "{}")
    assert xs.event_pending(f"{HOST_DIR}/own") and not xs.event_pending(f"{HOST_DIR}/else")
    other.write(f"{HOST_DIR}/host", "{}")
    xs.read("name")
    assert xs.event_pending(f"{HOST_DIR}/host")
    assert events(xs, 2) == [(f"{HOST_DIR}/own", "t"), (f"{HOST_DIR}/host", "t")]
    assert not xs.event_pending(f"{HOST_DIR}/own") and not xs.event_pending(f"{HOST_DIR}/host")


def test_relative_paths_of_a_dom0_connection(backend: Backend) -> None:
    """Without a domain path, relative paths are dom0's (under /local/domain/0) and so are watch events."""
    xs = backend.connect("")
    xs.write("relative/node", "1")
    assert xs.read("/local/domain/0/relative/node") == b"1"
    watched(xs, "relative")
    xs.write("/local/domain/0/relative/other", "2")
    assert xs.next_event(timeout=10) == ("relative/other", "t")


# -- waking, breaking, reconnecting -------------------------------------------------------------------


def test_wake_from_another_thread_returns_none(xs: Transport) -> None:
    """wake() from another thread makes a next_event blocked without a timeout return None."""
    watched(xs, HOST_DIR)
    returned: list[object] = []
    waiter = threading.Thread(target=lambda: returned.append(xs.next_event(timeout=None)), daemon=True)
    waiter.start()
    xs.wake()
    waiter.join(20)
    assert not waiter.is_alive() and returned == [None]


def test_a_wake_comes_after_the_events_queued_before_it(xs: Transport) -> None:
    """A wake() before waiting is kept: events queued earlier come first, then None."""
    watched(xs, HOST_DIR)
    xs.write(f"{HOST_DIR}/a", "{}")
    xs.wake()
    assert events(xs, 2) == [(f"{HOST_DIR}/a", "t"), None]


def test_outage_then_restart(backend: Backend, xs: Transport) -> None:
    """When xenstored stops, a blocked next_event and every call raise XenStoreUnavailable, as does connecting;
    once it is back (empty), connecting works and a new watch fires first."""
    watched(xs, HOST_DIR)
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            xs.next_event(timeout=None)
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    backend.stop()
    waiter.join(20)
    assert not waiter.is_alive() and len(raised) == 1 and isinstance(raised[0], XenStoreUnavailable)
    assert not xs.connected
    for call in CALLS.values():
        with pytest.raises(XenStoreUnavailable):
            call(xs, f"{HOST_DIR}/x")
    with pytest.raises(XenStoreUnavailable):
        xs.next_event(timeout=30)
    with pytest.raises(XenStoreUnavailable):
        xs.connect()
    backend.start()
    xs.connect()
    assert xs.connected and xs.list(HOST_DIR) == []
    watched(xs, HOST_DIR)
    xs.write(f"{HOST_DIR}/after", "{}")
    assert xs.next_event(timeout=10) == (f"{HOST_DIR}/after", "t")


def test_broken_connection_then_reconnect(backend: Backend, xs: Transport, other: Transport) -> None:
    """A broken connection raises XenStoreUnavailable on every call until connect; the store and the other
    connections go on, and the new connection starts without the old one's watches and events."""
    watched(xs, HOST_DIR)
    xs.write(f"{HOST_DIR}/before", "{}")
    backend.break_connection(xs)
    assert not xs.connected
    with pytest.raises(XenStoreUnavailable):
        xs.read(f"{HOST_DIR}/before")
    assert other.read(f"{HOST_DIR}/before") == b"{}"
    xs.connect()
    assert xs.connected and xs.read(f"{HOST_DIR}/before") == b"{}"
    other.write(f"{HOST_DIR}/unwatched", "{}")
    watched(xs, HOST_DIR, "again")
    other.write(f"{HOST_DIR}/watched", "{}")
    assert xs.next_event(timeout=10) == (f"{HOST_DIR}/watched", "again")


def test_a_closed_connection_raises_until_connected(xs: Transport) -> None:
    """After close, next_event raises at once every time (a wake still returns None), as do calls."""
    xs.close()
    xs.close()
    for _ in range(2):
        with pytest.raises(XenStoreUnavailable):
            xs.next_event(timeout=30)
    xs.wake()
    assert xs.next_event(timeout=30) is None
    with pytest.raises(XenStoreUnavailable):
        xs.write("data/guest/x", "v")
    xs.connect()
    xs.write("data/guest/x", "v")


# -- the memory store alone ---------------------------------------------------------------------------


def test_memory_guest_connection_uses_its_domains_home(memory_store: MemoryStore,
                                                      memory_guest: MemoryXenStore) -> None:
    """A memory connection made as guest 5 (no domain path) reads and watches relative to /local/domain/5."""
    guest = memory_store.connection(domid=DOMID)
    assert guest.read("name") == b"sandbox-5"
    watched(guest, HOST_DIR)
    memory_guest.write(f"{HOST_DIR}/r", "{}")
    assert guest.next_event(timeout=10) == (f"{HOST_DIR}/r", "t")


def test_memory_event_of_another_connection_is_not_known_before_a_call(memory_store: MemoryStore,
                                                                       memory_guest: MemoryXenStore) -> None:
    """The memory store holds another connection's event, and a watch's first, back from event_pending until
    this connection makes a call: the least xenstored promises, so code relying on more fails here every time."""
    agent = memory_store.connection(memory_guest.domain_path)
    agent.watch(HOST_DIR, "t")
    assert not agent.event_pending(HOST_DIR)
    memory_guest.write(f"{HOST_DIR}/r", "{}")
    assert not agent.event_pending(f"{HOST_DIR}/r")
    agent.list(HOST_DIR)
    assert agent.event_pending(HOST_DIR) and agent.event_pending(f"{HOST_DIR}/r")


def test_memory_special_watches_are_refused(memory_store: MemoryStore) -> None:
    """The special watches are not modelled: refused with a XenStoreError saying so."""
    with pytest.raises(XenStoreError, match="does not model the special watch @releaseDomain"):
        memory_store.connection().watch("@releaseDomain", "t")


def test_memory_store_serves_a_host_and_an_agent(memory_store: MemoryStore, memory_guest: MemoryXenStore) -> None:
    """Host and agent on two connections of one store: a request written by the host is answered by a thread
    that watches data/host as the agent does, and the host reads the reply."""
    agent = memory_store.connection(memory_guest.domain_path)
    watched(agent, HOST_DIR)

    def answer() -> None:
        while (event := agent.next_event(timeout=None)) is not None:
            if event[0] != HOST_DIR and agent.read(event[0]) is not None:
                request_id = event[0].removeprefix(f"{HOST_DIR}/")
                agent.write(f"{GUEST_DIR}/{request_id}", '{"returncode": "0", "message": "1.0"}')
                agent.delete(event[0])

    responder = threading.Thread(target=answer, daemon=True)
    responder.start()
    reply = Host(memory_guest, poll_interval=0.01).call("version", timeout=20)
    agent.wake()
    responder.join(20)
    assert reply == {"returncode": "0", "message": "1.0"} and not responder.is_alive()
