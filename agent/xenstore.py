"""XenStore access: the only module that imports pyxs.

pyxs 0.4.1 has gaps this module closes:

* A call waits on a condition variable with no timeout, and the router thread that would answer it can
  die (connection reset, unexpected packet): the caller then hangs forever. Here every call has a deadline,
  and a router that dies wakes every waiting call and the watch loop at once.
* ``Client.monitor()`` refuses XenBus connections; the Monitor is built directly instead.
* Values must be non-empty 7-bit ASCII; ``write`` takes text and callers send JSON with ASCII escapes.
* A directory whose child list exceeds the 4096-byte message payload (about a hundred UUID-named
  requests) fails with E2BIG; pyxs does not know XS_DIRECTORY_PART, which ``list`` falls back to.

Paths given to this module are relative to the domain home (``data/host/<id>``). In a guest the home is
implicit (relative XenStore paths); for dom0, the sandbox and tests it is a configured ``domain_path`` such
as ``/local/domain/5``.

Calls of a batch are pipelined (``read_many``, ``write_many``, ``delete_many``): every request is sent
before the answers are awaited, which xenstored gives in order, so a batch waits about one round trip instead
of one per call. Each packet goes out in one write, never two packets in one (the kernel's xenbus device takes
one message per write). In a guest, xenstored serves at most 20 outstanding requests of a domain at a time
(its ``quota_req_outstanding``) and the ring is 1 KiB: a larger batch is throttled there, never refused.
This relies on pyxs 0.4.1's packet layout and its 7-bit check (``Packet._struct``, ``_re_7bit_ascii``), which
is why pyproject pins pyxs.

``Transport`` is what the daemon and the host side use of a connection; ``XenStore`` implements it over pyxs,
``agent.memstore`` in memory for tests.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import errno
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

import pyxs
import pyxs.client
import pyxs.connection
import pyxs.exceptions
import pyxs.helpers
from pyxs._internal import NUL, Op, Packet, next_rq_id

from agent.errors import XenStoreError, XenStoreTimeout, XenStoreUnavailable

log = logging.getLogger(__name__)

XENBUS_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")

XS_DIRECTORY_PART = 22  # xs_wire.h: XS_RESET_WATCHES (21) + 1; xenstored >= 4.9, unknown to pyxs
_DEAD = object()  # set on waiting calls when the router thread exits
_WAKE = ("", "")  # queued by wake(): lets the main loop look at its flags


class Transport(Protocol):
    """What the daemon and the host side need from a XenStore connection; ``XenStore`` is the real one.

    Tests of daemon logic inject ``agent.memstore.MemoryXenStore`` instead; the contract tests run the same
    behaviours against both. The semantics are xenstored's as seen through ``XenStore``:

    * Paths are relative to the domain home (``data/host/<id>``); ``domain_path`` is that home
      (``/local/domain/5``), or "" when paths go to xenstored as given (a guest's relative paths).
    * Values are non-empty text of the characters space to DEL (0x20-0x7f) that fits, with its path, in
      the 4096-byte message payload; anything else is refused before it is sent, with a XenStoreError whose
      ``code`` is None and whose message never quotes the value. So is a path with a character outside
      ``[A-Za-z0-9_@/-]``, a trailing slash or a double one.
    * A path longer than 2048 bytes below ``/local/domain/<id>/`` (or in all, elsewhere) is refused by
      xenstored: XenStoreError with ``code`` EINVAL, for every call.
    * Errors are XenStoreError (``code``: xenstored's errno when it refused), XenStoreUnavailable when there
      is no connection or it dropped (every call raises it until ``connect`` succeeds again), and
      XenStoreTimeout (an XenStoreUnavailable) when a call got no answer in time.
    """

    @property
    def domain_path(self) -> str:
        """The domain home paths are relative to, or "" (see above)."""

    @property
    def connected(self) -> bool:
        """Whether the connection is open and healthy (a dropped one is not)."""

    def connect(self) -> None:
        """Open the connection; a no-op when it is open. XenStoreUnavailable when XenStore cannot be reached.

        A new connection has no watches and no queued events: watch again after reconnecting.
        """

    def close(self) -> None:
        """Close the connection (its watches go with it); safe to call at any time, also twice."""

    def read(self, path: str) -> bytes | None:
        """The node's value (b"" for a node made as a parent or by ``mkdir``), or None when it is missing."""

    def write(self, path: str, value: str) -> None:
        """Set the node's value, creating it and any missing parents (with empty values)."""

    def delete(self, path: str) -> None:
        """Remove the node and everything below it; a missing node is not an error."""

    def read_many(self, paths: Sequence[str]) -> builtins.list[bytes | None]:
        """``read`` of each path, in order, asked all at once: xenstored answers a connection's requests in
        order, so a batch waits for about one round trip instead of one per path. Errors raise as ``read``'s."""

    def write_many(self, items: Sequence[tuple[str, str]]) -> builtins.list[XenStoreError | None]:
        """``write`` of each (path, value), all at once: for each, None or the XenStoreError it met (refused
        before sending, or by xenstored). XenStoreUnavailable raises."""

    def delete_many(self, paths: Sequence[str]) -> None:
        """``delete`` of each path, all at once; after all were answered, the first error raises."""

    def list(self, path: str) -> builtins.list[str]:
        """Names of the node's children, however many; empty when the node is missing."""

    def exists(self, path: str) -> bool:
        """Whether the node exists (with any value, also an empty one)."""

    def mkdir(self, path: str) -> None:
        """Create the node and its missing parents with empty values; an existing node is left as it is."""

    def watch(self, path: str, token: str) -> None:
        """Watch ``path`` and everything below it, whether it exists or not.

        The watch fires once at once, with ``path`` itself (xenstored does that for every new watch), then on
        every write, mkdir that creates, and delete at or below ``path``, with the changed path; deleting a
        subtree fires once with its top (and a watch on a node inside it with that node). One change fires a
        token once on a connection, however many of its watches match. Watching the same path with the same
        token twice is refused (XenStoreError, ``code`` EEXIST).
        """

    def next_event(self, timeout: float | None = None) -> tuple[str, str] | None:
        """The next watch event of this connection, in the order xenstored sent them: (relative path, token).

        Blocks up to ``timeout`` seconds (None: no limit) and returns None when it passes, or when ``wake()``
        was called. Events queued before the connection dropped are returned first; then it raises
        XenStoreUnavailable, and at once when the connection is already down.
        """

    def event_pending(self, path: str) -> bool:
        """Whether an event for exactly ``path`` is queued, not yet taken by ``next_event``.

        An event caused by this connection's write, mkdir or delete is queued by the time the call returns.
        One caused by another connection, and a watch's first event (xenstored sends it after its answer to
        the watch), is queued by the time any later call of this connection returns: xenstored sends each
        connection its events and answers in order.
        """

    def wake(self) -> None:
        """Make a blocked ``next_event`` (or the next one) return None promptly; thread-safe, also when the
        connection is down, and safe from a thread relaying signals."""


class _BoundedRVar(pyxs.client.RVar):  # type: ignore[misc]
    """A reply slot whose ``get`` gives up at a deadline or when the router dies."""

    __slots__ = ["timeout"]

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def get(self) -> Any:
        with self.condition:
            if self.target is None:
                self.condition.wait_for(lambda: self.target is not None, self.timeout)
            target = self.target
        if target is None:
            raise XenStoreTimeout(f"XenStore did not answer within {self.timeout:g} s")
        if target is _DEAD:
            raise XenStoreUnavailable("the XenStore connection closed while waiting for an answer")
        return target


class _Router(pyxs.client.Router):  # type: ignore[misc]
    """pyxs's Router, made to report its own death instead of leaving callers hanging."""

    def __init__(self, connection: Any, timeout: float) -> None:
        super().__init__(connection)
        self.timeout = timeout
        self.alive = True

    def send(self, packet: Any) -> _BoundedRVar:
        return self.send_all([packet])[0]

    def send_all(self, packets: Sequence[Any]) -> builtins.list[_BoundedRVar]:
        """Send the packets one after the other without waiting for answers (xenstored answers them in order);
        their reply slots, in order."""
        if not self.alive:
            raise XenStoreUnavailable("the XenStore connection is closed")
        rvars: builtins.list[_BoundedRVar] = []
        with self.send_lock:
            for packet in packets:
                rvar = self.rvars[packet.rq_id] = _BoundedRVar(self.timeout)
                try:
                    self._write(packet)
                except (pyxs.exceptions.PyXSError, OSError) as exc:
                    for sent in (*packets[:len(rvars)], packet):
                        self.rvars.pop(sent.rq_id, None)
                    raise XenStoreUnavailable(f"cannot send to XenStore: {exc}") from exc
                rvars.append(rvar)
        return rvars

    def _write(self, packet: Any) -> None:
        """One packet in one write: pyxs writes the header and the payload apart, two system calls. Never two
        packets in one write either: the kernel's xenbus device takes one message per write."""
        transport = self.connection.transport
        if transport is None:
            raise pyxs.exceptions.ConnectionError("not connected")
        transport.send(Packet._struct.pack(packet.op, packet.rq_id, packet.tx_id, packet.size) + packet.payload)

    def __call__(self) -> None:
        try:
            super().__call__()
        except Exception as exc:  # the thread's end is reported below, not as a traceback
            log.debug("xenstore router stopped: %s", type(exc).__name__)
        finally:
            self.alive = False
            for rvar in list(self.rvars.values()):
                rvar.set(_DEAD)
            for monitors in list(self.monitors.values()):
                for monitor in monitors:
                    monitor.events.put(_DEAD)


def _packet(op: int, rq_id: int, tx_id: int, payload: bytes) -> Any:
    # Packet's constructor only admits pyxs's own operations; the wire format is the same for all.
    return tuple.__new__(Packet, (op, rq_id, tx_id, len(payload), payload))


class _AnyOperation:
    """Receives packets of any operation: pyxs's ``recv`` kills its router on XS_DIRECTORY_PART replies."""

    transport: Any

    def recv(self) -> Any:
        if self.transport is None:
            raise pyxs.exceptions.ConnectionError("not connected")
        try:
            header = self.transport.recv(Packet._struct.size)
            op, rq_id, tx_id, size = Packet._struct.unpack(header)
            # XenBus blocks on a zero-length read, so the size is checked first (as pyxs does).
            payload = self.transport.recv(size) if size else b""
        except OSError as exc:
            self.transport = None
            raise pyxs.exceptions.ConnectionError(f"error while reading from XenStore: {exc}") from exc
        return _packet(op, rq_id, tx_id, payload)


class _UnixConnection(_AnyOperation, pyxs.connection.UnixSocketConnection):  # type: ignore[misc]
    pass


class _XenBusConnection(_AnyOperation, pyxs.connection.XenBusConnection):  # type: ignore[misc]
    pass


def _connection(address: str) -> Any:
    kind, _, path = address.partition(":")
    if kind == "unix":
        return _UnixConnection(path or None)
    if kind == "xenbus":
        if not path:
            path = next((p for p in XENBUS_PATHS if os.path.exists(p)), XENBUS_PATHS[0])
        return _XenBusConnection(path)
    raise XenStoreError(f"unknown XenStore address {address!r}; use 'unix:PATH', 'xenbus[:PATH]' or 'wmi'")


def unreachable(address: str, path: str, cause: BaseException | None, root: str = "/") -> str:
    """Why XenStore at ``address`` (``path`` being its socket or XenBus device) could not be reached, and what
    to check: one message, as specific as the error and this machine allow. ``root`` is where ``/proc`` and
    ``/sys`` are looked for (the tests' throw-away roots)."""
    code = cause.errno if isinstance(cause, OSError) else None
    head = f"cannot connect to XenStore at {address}"
    if code in (errno.EACCES, errno.EPERM):
        return (f"{head}: permission denied on {path}; the agent needs read and write access to it: run it as "
                "root")
    if address.startswith("unix"):
        if code == errno.ENOENT:
            return (f"{head}: no xenstored socket at {path}; start xenstored, or point --xenstore at its socket "
                    "('unix:PATH'; XENSTORED_PATH sets the default)")
        if code == errno.ECONNREFUSED:
            return (f"{head}: nothing answers on {path} (a socket a stopped xenstored left behind?); start "
                    "xenstored, or point --xenstore at a running one's socket ('unix:PATH')")
    elif code == errno.ENOENT:
        if not _xen_guest(root):
            return (f"{head}: {path} does not exist, and this does not look like a Xen guest (no /proc/xen, and "
                    "/sys/hypervisor/type does not say xen); run the agent in a Xen guest, or point --xenstore "
                    "at a xenstored socket ('unix:PATH')")
        return (f"{head}: {path} does not exist though this is a Xen guest; load the Xen modules that provide it "
                "('modprobe xenfs xen-evtchn', then 'mount -t xenfs xenfs /proc/xen' if /proc/xen is empty), or "
                "point --xenstore at a xenstored socket ('unix:PATH')")
    reason = os.strerror(code) if code else str(cause or "unknown error")
    return (f"{head}: {path}: {reason}; check --xenstore ('unix:PATH' for a xenstored socket, 'xenbus[:PATH]' "
            "in a guest)")


def _xen_guest(root: str) -> bool:
    """Whether this system shows the signs of running on Xen: /proc/xen, or /sys/hypervisor/type saying xen."""
    if os.path.isdir(os.path.join(root, "proc/xen")):
        return True
    try:
        with open(os.path.join(root, "sys/hypervisor/type"), encoding="ascii", errors="replace") as kind:
            return kind.read().strip() == "xen"
    except OSError:
        return False


def ascii_value(full_path: str, value: str) -> bytes:
    """The value as XenStore takes it here: 7-bit ASCII, or a XenStoreError naming the path.

    The text of the UnicodeEncodeError is left out (``from None``), as for pyxs's own refusals: it quotes
    the value, which may be a secret.
    """
    try:
        return value.encode("ascii")
    except UnicodeEncodeError as exc:
        raise XenStoreError(f"cannot write {full_path}: XenStore values are 7-bit ASCII here and this one is not "
                            f"(first non-ASCII character at offset {exc.start}); escape the text first, as JSON "
                            "with ASCII escapes does") from None


def _failure(outcome: Any) -> XenStoreError | None:
    """A pipelined write's outcome as ``write_many`` gives it: its XenStoreError, or None."""
    if isinstance(outcome, FileNotFoundError):
        return XenStoreError(f"XenStore refused write: {outcome}", errno.ENOENT)
    return outcome if isinstance(outcome, XenStoreError) else None


def invalid(op: str, full_path: str) -> XenStoreError:
    """The error for a call refused before it is sent: a path or value XenStore's wire format cannot carry."""
    return XenStoreError(f"invalid XenStore path or value for {op} {full_path!r} (values are limited to "
                         "non-empty 7-bit ASCII within 4096 bytes)")


def refused(op: str, full_path: str, code: int) -> XenStoreError:
    """The error for a call xenstored answered with an error number (ENOENT aside: a missing node)."""
    return XenStoreError(f"XenStore refused {op} {full_path}: {os.strerror(code) if code else 'unknown error'}",
                         code or None)


class Connection:
    """What every connection shares: the domain home its paths are relative to, and ``with`` connecting it."""

    domain_path: str

    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def absolute(self, path: str) -> str:
        """The path as sent to xenstored: under the domain home, or relative in a guest."""
        return f"{self.domain_path}/{path}" if self.domain_path else path

    def relative(self, path: str) -> str:
        """The inverse of ``absolute``, for watch event paths."""
        prefix = self.domain_path + "/"
        if self.domain_path and path.startswith(prefix):
            return path[len(prefix):]
        return path


class Unpipelined(Connection):
    """The batch calls of a transport that has no pipelining (the memory store, WMI): each item in turn through
    the single call, with the batch calls' error contract."""

    def read(self, path: str) -> bytes | None:
        raise NotImplementedError

    def write(self, path: str, value: str) -> None:
        raise NotImplementedError

    def delete(self, path: str) -> None:
        raise NotImplementedError

    def read_many(self, paths: Sequence[str]) -> builtins.list[bytes | None]:
        """``read`` of each path, in order; errors raise as ``read``'s."""
        return [self.read(path) for path in paths]

    def write_many(self, items: Sequence[tuple[str, str]]) -> builtins.list[XenStoreError | None]:
        """``write`` of each (path, value): per item, None or its XenStoreError; XenStoreUnavailable raises."""
        outcomes: builtins.list[XenStoreError | None] = []
        for path, value in items:
            try:
                self.write(path, value)
            except XenStoreUnavailable:
                raise
            except XenStoreError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def delete_many(self, paths: Sequence[str]) -> None:
        """``delete`` of each path; the first error raises once all were tried (XenStoreUnavailable at once)."""
        first: XenStoreError | None = None
        for path in paths:
            try:
                self.delete(path)
            except XenStoreUnavailable:
                raise
            except XenStoreError as exc:
                first = first or exc
        if first is not None:
            raise first


class _EventQueue(queue.Queue[Any]):
    """The watch events, counted by path as they come and go, so that ``event_pending`` costs the same with
    thousands of events queued (a flood) as with none. The hooks run under the queue's own lock."""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.paths: collections.Counter[bytes] = collections.Counter()

    def _put(self, item: Any) -> None:
        super()._put(item)
        if isinstance(item, tuple):
            self.paths[item[0]] += 1

    def _get(self) -> Any:
        item = super()._get()
        if isinstance(item, tuple):
            self.paths[item[0]] -= 1
            if not self.paths[item[0]]:
                del self.paths[item[0]]
        return item


class XenStore(Connection):
    """A XenStore connection rooted at a domain home, with timeouts and one watch queue."""

    def __init__(self, address: str, domain_path: str = "", timeout: float = 10.0) -> None:
        self.address = address
        self.domain_path = domain_path.rstrip("/")
        self.timeout = timeout
        self._client: Any = None
        self._monitor: Any = None
        self._events = _EventQueue()
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection (a no-op when it is already open and healthy)."""
        if self.connected:
            return
        self.close()
        connection = _connection(self.address)
        router = _Router(connection, self.timeout)
        client = pyxs.Client(router=router)
        try:
            client.connect()
        except (pyxs.exceptions.PyXSError, OSError) as exc:
            # pyxs raises its own error inside the handler of the OSError that says what actually failed.
            cause = exc if isinstance(exc, OSError) else exc.__context__
            raise XenStoreUnavailable(unreachable(self.address, connection.path, cause)) from exc
        # pyxs refuses monitor() over XenBus; the Monitor itself works on any connection.
        monitor = pyxs.client.Monitor(client)
        monitor.events = self._events = _EventQueue()
        self._client, self._monitor = client, monitor
        log.debug("connected to XenStore at %s", self.address)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.router.alive

    def close(self) -> None:
        """Close the connection; safe to call at any time."""
        client, self._client, self._monitor = self._client, None, None
        if client is None:
            return
        router = client.router
        router.alive = False
        # A router that already died with its connection has nothing left to terminate.
        with contextlib.suppress(pyxs.exceptions.PyXSError, OSError, AttributeError):
            router.terminate()

    # -- operations -----------------------------------------------------------------------------------

    def _connected_client(self) -> Any:
        client = self._client
        if client is None or not client.router.alive:
            raise XenStoreUnavailable("not connected to XenStore")
        return client

    def _call(self, op: str, path: str, *args: bytes) -> Any:
        client = self._connected_client()
        full = self.absolute(path)
        with self._translated(op, full):
            return getattr(client, op)(full.encode("ascii"), *args)

    @staticmethod
    @contextlib.contextmanager
    def _translated(op: str, full: str) -> Iterator[None]:
        """pyxs's errors as the agent's: a lost connection, a refusal before sending, xenstored's refusal."""
        try:
            yield
        except XenStoreError:
            raise
        except pyxs.exceptions.ConnectionError as exc:
            raise XenStoreUnavailable(f"XenStore connection lost during {op} {full}") from exc
        except (UnicodeEncodeError, ValueError):
            # pyxs's InvalidPayload/InvalidPath texts quote the whole value, which may be a secret.
            raise invalid(op, full) from None
        except pyxs.exceptions.PyXSError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            if code == errno.ENOENT:
                raise FileNotFoundError(full) from exc
            raise refused(op, full, code) from exc

    def read(self, path: str) -> bytes | None:
        """The node's value, or None when the node does not exist."""
        try:
            value: bytes = self._call("read", path)
        except FileNotFoundError:
            return None
        return value

    def write(self, path: str, value: str) -> None:
        """Write a non-empty ASCII value (callers pass JSON built with ``ensure_ascii``)."""
        self._call("write", path, ascii_value(self.absolute(path), value))

    def delete(self, path: str) -> None:
        """Remove the node and its children; a missing node is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", path)

    def _pipelined(self, op_name: str, op: int, items: Sequence[tuple[str, bytes]]) -> builtins.list[Any]:
        """Send one ``op`` per (path, value) at once; per item, its answer's payload or the XenStoreError it met
        (FileNotFoundError for a missing node), checked as pyxs checks a single call."""
        client = self._connected_client()
        outcomes: builtins.list[Any] = [None] * len(items)
        packets: builtins.list[Any] = []
        slots: builtins.list[int] = []
        for index, (path, value) in enumerate(items):
            full = self.absolute(path)
            try:
                with self._translated(op_name, full):
                    encoded = full.encode("ascii") + NUL
                    pyxs.helpers.check_path(encoded[:-1])
                    if op == Op.WRITE and not pyxs.client._re_7bit_ascii.match(value):
                        raise ValueError(op_name)
                    packets.append(Packet(op, encoded + value, rq_id=next_rq_id(), tx_id=client.tx_id))
                    slots.append(index)
            except (XenStoreError, FileNotFoundError) as exc:
                outcomes[index] = exc
        rvars = client.router.send_all(packets)
        for index, rvar in zip(slots, rvars, strict=True):
            full = self.absolute(items[index][0])
            try:
                with self._translated(op_name, full):
                    reply = rvar.get()
                    if reply.op == Op.ERROR:
                        raise pyxs.helpers.error(reply.payload[:-1])
                    if reply.op != op:
                        raise pyxs.exceptions.UnexpectedPacket(reply)
                    outcomes[index] = reply.payload
            except XenStoreUnavailable:
                raise
            except (XenStoreError, FileNotFoundError) as exc:
                outcomes[index] = exc
        return outcomes

    def read_many(self, paths: Sequence[str]) -> builtins.list[bytes | None]:
        values: builtins.list[bytes | None] = []
        for outcome in self._pipelined("read", Op.READ, [(path, b"") for path in paths]):
            if isinstance(outcome, FileNotFoundError):
                values.append(None)
            elif isinstance(outcome, Exception):
                raise outcome
            else:
                values.append(outcome.rstrip(NUL))  # as pyxs's read gives it
        return values

    def write_many(self, items: Sequence[tuple[str, str]]) -> builtins.list[XenStoreError | None]:
        sent: builtins.list[tuple[str, bytes]] = []
        refusals: dict[int, XenStoreError] = {}
        for index, (path, value) in enumerate(items):
            try:
                sent.append((path, ascii_value(self.absolute(path), value)))
            except XenStoreError as exc:
                refusals[index] = exc
        answers = iter(self._pipelined("write", Op.WRITE, sent))
        return [refusals[index] if index in refusals else _failure(next(answers)) for index in range(len(items))]

    def delete_many(self, paths: Sequence[str]) -> None:
        for outcome in self._pipelined("delete", Op.RM, [(path, b"") for path in paths]):
            if isinstance(outcome, XenStoreError):
                raise outcome

    def list(self, path: str) -> list[str]:
        """Names of the node's children; empty when the node does not exist."""
        try:
            try:
                names: list[bytes] = self._call("list", path)
            except XenStoreError as exc:
                if exc.code != errno.E2BIG:
                    raise
                names = self._list_in_parts(path)
        except FileNotFoundError:
            return []
        return [n.decode("ascii", "replace") for n in names]

    def _list_in_parts(self, path: str) -> builtins.list[bytes]:
        """XS_DIRECTORY_PART: the child list in chunks by byte offset, restarted if the node changes."""
        full = self.absolute(path).encode("ascii")
        while True:
            names: builtins.list[bytes] = []
            offset = 0
            generation: bytes | None = None
            while True:
                payload = self._raw(XS_DIRECTORY_PART, full + NUL + str(offset).encode() + NUL, path)
                gen, _, chunk = payload.partition(NUL)
                if generation is not None and gen != generation:
                    break  # the directory changed between chunks: read it again from the start
                generation = gen
                last = chunk.endswith(NUL + NUL) or chunk == NUL
                body = chunk[:-1] if last else chunk
                names.extend(n for n in body.split(NUL) if n)
                offset += len(body)
                if last:
                    return names

    def _raw(self, op: int, payload: bytes, path: str) -> bytes:
        """Send an operation pyxs does not know; the reply payload is returned untouched."""
        client = self._connected_client()
        reply = client.router.send(_packet(op, next_rq_id(), client.tx_id, payload)).get()
        if reply.op == Op.ERROR:
            name = reply.payload.rstrip(NUL).decode("ascii", "replace")
            if name == "ENOENT":
                raise FileNotFoundError(path)
            code = getattr(errno, name, None)
            raise XenStoreError(f"XenStore refused operation {op} on {self.absolute(path)}: {name}", code)
        payload_out: bytes = reply.payload
        return payload_out

    def exists(self, path: str) -> bool:
        # A read, not a list: a node's value fits one message, while the names of thousands of children do not
        # (xenstored refuses that list with E2BIG).
        try:
            self._call("read", path)
        except FileNotFoundError:
            return False
        return True

    def mkdir(self, path: str) -> None:
        self._call("mkdir", path)

    # -- watches --------------------------------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """Watch ``path``; xenstored fires the watch once right away, then on every change at or below it.

        pyxs's ``Monitor.watch`` subscribes the monitor to the token before asking (the first event can
        arrive before the answer) and again for every watch, keeping the subscription when xenstored refuses:
        each further subscription delivers every event of that token once more. Here a token is subscribed
        once, and a refused watch leaves no subscription of its own behind.
        """
        client, monitor = self._connected_client(), self._monitor
        full = self.absolute(path)
        with self._translated("watch", full):
            wpath, wtoken = full.encode("ascii"), token.encode("ascii")
            pyxs.helpers.check_watch_path(wpath)
            subscribers = client.router.monitors[wtoken]
            subscribed = monitor in subscribers
            if not subscribed:
                subscribers.append(monitor)
            try:
                client.ack(Op.WATCH, wpath + NUL, wtoken + NUL)
            except BaseException:
                if not subscribed:
                    with contextlib.suppress(ValueError):
                        subscribers.remove(monitor)
                raise

    def next_event(self, timeout: float | None = None) -> tuple[str, str] | None:
        """Block until a watch fires: (relative path, token). None after ``timeout`` or ``wake()``.

        Events that arrived before the connection dropped are still returned, in order; then it raises
        XenStoreUnavailable, at once when the connection is already down (closed, or lost) and when it drops
        while waiting. A ``wake()`` is returned as None either way.
        """
        try:
            event = self._events.get_nowait()
        except queue.Empty:
            if not self.connected:
                raise XenStoreUnavailable("not connected to XenStore") from None
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                return None
        if event is _DEAD:
            raise XenStoreUnavailable("the XenStore connection dropped")
        if event == _WAKE:
            return None
        path, token = event
        return self.relative(path.decode("ascii", "replace")), token.decode("ascii", "replace")

    def event_pending(self, path: str) -> bool:
        """Whether a watch event for ``path`` has arrived and is waiting to be taken by ``next_event``."""
        wanted = self.absolute(path).encode("ascii")
        with self._events.mutex:
            return wanted in self._events.paths

    def wake(self) -> None:
        """Make a blocked ``next_event`` return None (used by signal handlers)."""
        self._events.put(_WAKE)


def open_transport(address: str, domain_path: str = "", timeout: float = 10.0) -> Transport:
    """The connection for a ``--xenstore`` address: ``wmi`` is the Windows PV drivers' WMI interface
    (``agent.xenstore_wmi``), anything else goes through pyxs."""
    if address == "wmi":
        from agent.xenstore_wmi import WmiXenStore  # imports this module: loaded only when asked for

        return WmiXenStore(domain_path, timeout)
    return XenStore(address, domain_path, timeout)


if TYPE_CHECKING:
    # mypy proves here that the real connection implements the protocol.
    _conforms: type[Transport] = XenStore
