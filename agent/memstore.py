"""XenStore in memory: the ``Transport`` for tests of daemon logic, in milliseconds and without xenstored.

``MemoryStore`` plays xenstored: one tree of nodes, its connections and their watches. ``MemoryXenStore`` is
one connection to it, used as the daemon uses ``XenStore``. Several connections share a store, so a test can
play the host on one and run the agent on another::

    store = MemoryStore()
    home = store.create_domain(5)            # name, domid, data/host, data/guest, as the toolstack makes them
    agent_side = store.connection(home)      # connected; or MemoryXenStore(store, home) and connect()
    host_side = store.connection(home)
    agent_side.drop()                        # this connection breaks: calls raise XenStoreUnavailable
    store.stop(); store.start()              # xenstored restarts: every connection breaks, the tree is new

What it does is what the daemon relies on of xenstored as seen through ``XenStore``, and
``tests/test_memstore.py`` runs the same tests against both: values and their limits (the same errors, with
the same errno where xenstored gives one), parents made on write, subtree deletes, watches with their first
event, events per connection in order (one per token for a change), when an event is known to be queued
(``event_pending``), wake-ups, and lost connections.

Not modelled: permissions and a guest's quotas (every connection is dom0's, as over xenstored's socket),
transactions, the special watches ``@introduceDomain`` and ``@releaseDomain`` (refused), and timeouts (the
store always answers).
"""

from __future__ import annotations

import builtins
import errno
import queue
import re
import threading
from typing import TYPE_CHECKING

from agent.errors import XenStoreError, XenStoreUnavailable
from agent.xenstore import Transport, Unpipelined, ascii_value, invalid, refused

#: What pyxs lets through before sending: path characters, value characters, sizes.
_PATH = re.compile(r"[a-zA-Z0-9/_@-]+")
_ARGUMENT = re.compile(rb"[\x00\x20-\x7f]+")  # a value, or a token with its NUL
MAX_PAYLOAD = 4096
MAX_PATH = 3072
#: xenstored refuses (EINVAL) a path longer than this below ``/local/domain/<id>/``, or in all if elsewhere.
MAX_RELATIVE_PATH = 2048
_DOMAIN_HOME = re.compile(r"/local/domain/\d{1,5}/")
SPECIAL_WATCHES = ("@introduceDomain", "@releaseDomain")


class _Node:
    __slots__ = ("children", "value")

    def __init__(self, value: bytes = b"") -> None:
        self.value = value
        self.children: dict[str, _Node] = {}  # in creation order, as xenstored lists them


class _Watch:
    __slots__ = ("path", "relative", "token")

    def __init__(self, path: str, token: str, relative: bool) -> None:
        self.path, self.token, self.relative = path, token, relative


class _Event:
    """A queued watch event. ``arrived``: known to be queued (see ``Transport.event_pending``)."""

    __slots__ = ("arrived", "path", "token")

    def __init__(self, path: str, token: str, arrived: bool) -> None:
        self.path, self.token, self.arrived = path, token, arrived


_DEAD = object()  # queued when the connection breaks
_WAKE = object()  # queued by wake()


def _fresh_tree() -> _Node:
    """What a freshly started xenstored holds."""
    root = _Node()
    root.children["tool"] = _Node()
    root.children["tool"].children["xenstored"] = _Node()
    return root


class MemoryStore:
    """The shared tree and its connections: what xenstored is to ``XenStore``. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._root = _fresh_tree()
        self._connections: list[MemoryXenStore] = []
        self.running = True

    def connection(self, domain_path: str = "", *, domid: int = 0) -> MemoryXenStore:
        """A connected ``MemoryXenStore`` rooted at ``domain_path`` (see there for ``domid``)."""
        connection = MemoryXenStore(self, domain_path, domid=domid)
        connection.connect()
        return connection

    def create_domain(self, domid: int, name: str | None = None) -> str:
        """Create the nodes the toolstack gives a guest (name, domid, data/) and return its home path."""
        home = f"/local/domain/{domid}"
        with MemoryXenStore(self, home) as xs:
            xs.write("name", name or f"sandbox-{domid}")
            xs.write("domid", str(domid))
            xs.mkdir("data/host")
            xs.mkdir("data/guest")
        return home

    def destroy_domain(self, domid: int) -> None:
        """Remove a domain's tree, as the toolstack does when the guest shuts down or reboots."""
        with MemoryXenStore(self) as xs:
            xs.delete(f"/local/domain/{domid}")

    def stop(self) -> None:
        """xenstored goes away: every connection breaks, and connecting fails until ``start``."""
        with self._lock:
            self.running = False
            for connection in list(self._connections):
                connection.drop()

    def start(self) -> None:
        """xenstored is back, with a new tree (the old one went with the process): domains must be made again."""
        with self._lock:
            self._root = _fresh_tree()
            self.running = True

    # -- what xenstored does; ``path`` is canonical (absolute), checked by the connection ---------------

    def _attach(self, connection: MemoryXenStore) -> None:
        with self._lock:
            if not self.running:
                raise XenStoreUnavailable("cannot connect to XenStore at memory: the store is stopped")
            self._connections.append(connection)

    def _detach(self, connection: MemoryXenStore) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def _node(self, path: str) -> _Node | None:
        node: _Node | None = self._root
        for name in _names(path):
            node = node.children.get(name) if node is not None else None
        return node

    def _make(self, path: str) -> tuple[_Node, bool]:
        """The node, made with any missing parents (empty values); and whether it was made."""
        node, made = self._root, False
        for name in _names(path):
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Node()
                made = True
            node = child
        return node, made

    def _read(self, path: str) -> bytes | None:
        node = self._node(path)
        return None if node is None else node.value

    def _write(self, path: str, value: bytes, actor: MemoryXenStore) -> None:
        self._make(path)[0].value = value
        self._fire(path, actor, exact=False)

    def _mkdir(self, path: str, actor: MemoryXenStore) -> None:
        if self._make(path)[1]:
            self._fire(path, actor, exact=False)

    def _delete(self, path: str, shown: str, actor: MemoryXenStore) -> None:
        if path == "/":
            raise refused("delete", shown, errno.EINVAL)
        parent_path, _, name = path.rpartition("/")
        parent = self._node(parent_path or "/")
        node = None if parent is None else parent.children.get(name)
        if parent is None or node is None:
            return  # xenstored: fine when the parent exists, else ENOENT, which XenStore.delete takes as fine
        # Watches on nodes inside the subtree fire with their own path (deepest first), then the subtree's top.
        self._fire_below(path, node, actor)
        del parent.children[name]
        self._fire(path, actor, exact=False)

    def _fire_below(self, path: str, node: _Node, actor: MemoryXenStore) -> None:
        for name, child in node.children.items():
            child_path = f"{path}/{name}"
            self._fire_below(child_path, child, actor)
            self._fire(child_path, actor, exact=True)

    def _list(self, path: str) -> builtins.list[str] | None:
        node = self._node(path)
        return None if node is None else builtins.list(node.children)

    def _fire(self, path: str, actor: MemoryXenStore, exact: bool) -> None:
        """Queue ``path``'s event on every connection with a watch on exactly ``path`` or (unless ``exact``) on
        a node above it. The acting connection has its events before its answer; the others', in flight."""
        for connection in self._connections:
            connection._deliver(path, [w for w in connection._watches
                                       if w.path == path or (not exact and _at_or_below(path, w.path))],
                                arrived=connection is actor)


class MemoryXenStore(Unpipelined):
    """A connection to a ``MemoryStore``, rooted at a domain home: the in-memory ``XenStore``.

    ``domain_path`` is as for ``XenStore``. Relative paths without one are taken, as xenstored does, from the
    home of the connection's own domain, ``/local/domain/<domid>``: 0 for dom0 (as over xenstored's socket),
    or a guest's id to connect as the guest does through XenBus, with ``domain_path`` "".
    """

    def __init__(self, store: MemoryStore | None = None, domain_path: str = "", *, domid: int = 0) -> None:
        self.store = MemoryStore() if store is None else store
        self.address = "memory"
        self.domain_path = domain_path.rstrip("/")
        self.home = f"/local/domain/{domid}"
        self._connected = False
        self._watches: builtins.list[_Watch] = []
        self._events: queue.Queue[object] = queue.Queue()

    # -- connection -----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection (a no-op when it is open); XenStoreUnavailable while the store is stopped."""
        with self.store._lock:
            if self._connected:
                return
            self.store._attach(self)
            self._connected, self._watches, self._events = True, [], queue.Queue()

    @property
    def connected(self) -> bool:
        return self._connected

    def close(self) -> None:
        """Close the connection; safe to call at any time."""
        self.drop()

    def drop(self) -> None:
        """Break the connection, as a dead xenstored or a reset socket does: its watches are gone, a blocked
        ``next_event`` raises XenStoreUnavailable, and so does every call until ``connect``. The tree stays."""
        with self.store._lock:
            if not self._connected:
                return
            self._connected, self._watches = False, []
            self.store._detach(self)
            self._events.put(_DEAD)

    # -- paths ----------------------------------------------------------------------------------------

    def _request(self, op: str, sent: str, *args: bytes) -> str:
        """xenstored's own name for a path sent with ``args``, after the checks ``XenStore`` makes, in its order:
        the connection, pyxs's checks of path, arguments and message size, then xenstored's of the path.

        When xenstored reads a request, everything it sent this connection before (events of other
        connections' changes, a watch's first event) has arrived: it is known to be queued from now on.
        """
        if not self._connected:
            raise XenStoreUnavailable("not connected to XenStore")
        if (not _PATH.fullmatch(sent) or len(sent) > MAX_PATH or "//" in sent or (len(sent) > 1 and sent.endswith("/"))
                or not all(_ARGUMENT.fullmatch(a) for a in args) or len(sent) + 1 + sum(map(len, args)) > MAX_PAYLOAD):
            raise invalid(op, sent)
        with self._events.mutex:
            for event in self._events.queue:
                if isinstance(event, _Event):
                    event.arrived = True
        path = sent if sent.startswith("/") else f"{self.home}/{sent}"
        home = _DOMAIN_HOME.match(path)
        if len(path) - (home.end() if home else 0) > MAX_RELATIVE_PATH:
            raise refused(op, sent, errno.EINVAL)
        return path

    # -- operations -----------------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The node's value, or None when the node does not exist."""
        sent = self.absolute(path)
        with self.store._lock:
            value = self.store._read(self._request("read", sent))
        return None if value is None else value.rstrip(b"\0")  # as pyxs reads values

    def write(self, path: str, value: str) -> None:
        """Write a non-empty ASCII value; missing parents are made with empty values."""
        sent = self.absolute(path)
        data = ascii_value(sent, value)
        with self.store._lock:
            self.store._write(self._request("write", sent, data), data, self)

    def delete(self, path: str) -> None:
        """Remove the node and its children; a missing node is not an error."""
        sent = self.absolute(path)
        with self.store._lock:
            self.store._delete(self._request("delete", sent), sent, self)

    def list(self, path: str) -> builtins.list[str]:
        """Names of the node's children; empty when the node does not exist."""
        sent = self.absolute(path)
        with self.store._lock:
            names = self.store._list(self._request("list", sent))
        return [] if names is None else names

    def exists(self, path: str) -> bool:
        sent = self.absolute(path)
        with self.store._lock:
            return self.store._list(self._request("list", sent)) is not None

    def mkdir(self, path: str) -> None:
        sent = self.absolute(path)
        with self.store._lock:
            self.store._mkdir(self._request("mkdir", sent), self)

    # -- watches --------------------------------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """Watch ``path``; the watch fires once (its event arrives after this call), then on every change
        at or below it."""
        sent = self.absolute(path)
        with self.store._lock:
            if self._connected and sent in SPECIAL_WATCHES:
                raise XenStoreError(f"the memory store does not model the special watch {sent}")
            if self._connected and (sent.startswith("@") or not token.isascii()):
                raise invalid("watch", sent)  # pyxs takes no other @-path, and only ASCII
            canonical = self._request("watch", sent, token.encode("ascii") + b"\0")
            if any(w.path == canonical and w.token == token for w in self._watches):
                raise refused("watch", sent, errno.EEXIST)
            self._watches.append(_Watch(canonical, token, relative=not sent.startswith("/")))
            # xenstored answers the watch first and then sends its first event.
            self._events.put(_Event(sent, token, arrived=False))

    def _deliver(self, path: str, watches: builtins.list[_Watch], arrived: bool) -> None:
        """Queue the change's event, once per token (as xenstored sends it on a connection)."""
        tokens: set[str] = set()
        for watch in watches:
            if watch.token not in tokens:
                tokens.add(watch.token)
                shown = path[len(self.home) + 1:] if watch.relative else path
                self._events.put(_Event(shown, watch.token, arrived))

    def next_event(self, timeout: float | None = None) -> tuple[str, str] | None:
        """Block until a watch fires: (relative path, token). None after ``timeout`` or ``wake()``.

        Events queued before the connection broke come first; then XenStoreUnavailable, at once when the
        connection is already down.
        """
        try:
            event = self._events.get_nowait()
        except queue.Empty:
            if not self._connected:
                raise XenStoreUnavailable("not connected to XenStore") from None
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                return None
        if event is _DEAD:
            raise XenStoreUnavailable("the XenStore connection dropped")
        if not isinstance(event, _Event):
            return None  # a wake()
        return self.relative(event.path), event.token

    def event_pending(self, path: str) -> bool:
        """Whether a watch event for ``path`` is known to be queued (see ``Transport.event_pending``)."""
        wanted = self.absolute(path)
        with self._events.mutex:
            return any(isinstance(e, _Event) and e.arrived and e.path == wanted for e in self._events.queue)

    def wake(self) -> None:
        """Make a blocked ``next_event`` return None (thread-safe)."""
        self._events.put(_WAKE)


def _names(path: str) -> builtins.list[str]:
    return [name for name in path.split("/") if name]


def _at_or_below(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top + "/")


if TYPE_CHECKING:
    # mypy proves here that the memory connection implements the same protocol as XenStore.
    _conforms: type[Transport] = MemoryXenStore
