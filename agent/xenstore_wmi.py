"""XenStore on Windows: the ``Transport`` over the Xen PV drivers' WMI interface (xeniface).

A Windows guest has no xenbus device a program may open; the PV drivers' ``xeniface`` publishes XenStore as
WMI classes instead, used here through pywin32's COM client (imported lazily, so that the module imports and
is tested where pywin32 is not installed; the modules can be injected, as in ``agent.platform.windows``).

Facts about the interface this module relies on (xeniface's MOF and WMI provider, its documentation, and
the guest tools written against it):

* Namespace ``root\\wmi``. The singleton ``<PREFIX>XenStoreBase`` has ``AddSession(Id)`` -> ``SessionId``
  (uint32); the session is a ``<PREFIX>XenStoreSession`` instance (properties ``InstanceName``, ``SessionId``,
  ``Id``), found by a WQL query. The prefix is a build option of the drivers: ``Citrix`` in the
  Citrix-branded ones, ``XenProject`` in others; both are tried, in that order.
* Neither number nor instance name is unique over time: the driver numbers a session 0 when it has none
  (after a reload, say) and the newest one's number + 1 otherwise, and names it ``Session_<Id>_<n>`` with the
  first ``n`` not in use; its methods find the session by that instance name. So every connection here gives
  an ``Id`` of its own (the name, the process id, a count), finds its session and later asks whether it
  still exists by that ``Id``, and can never take another client's session, or a later one, for its own.
* Session methods: ``GetValue(Pathname)`` -> ``value``; ``SetValue(Pathname, value)``;
  ``RemoveValue(Pathname)`` (the node and all below it); ``GetChildren(Pathname)`` -> ``children``, an
  embedded ``<PREFIX>XenStoreNodes`` with ``NoOfChildNodes`` and ``ChildNodes``, each child's FULL path
  (the path as given, "/", the name); ``SetWatch``/``RemoveWatch(Pathname)``; ``EndSession()``; transaction
  methods (unused here). There is no mkdir: ``mkdir`` here writes an empty value to a missing node.
* Paths are passed to xenstored as given: relative ones are the guest's own (``data/host/<id>``).
* Values cross WMI as UTF-16 strings; the driver writes them with ``"%s"``, so a value stops at its first
  NUL: values with a NUL are refused here before sending (``XenStore`` would carry them).
* A method that fails raises ``pywintypes.com_error``, and the interface says nothing more about why: a
  missing node, a refusal by xenstored and a session that no longer exists look alike. After a failure this
  module asks WMI whether its session still exists: if not, the session is lost (XenStoreUnavailable); if it
  does, the failure is the node's (a missing node for reads, lists and deletes, as xenstored's ENOENT; a
  XenStoreError without errno for writes and watches).
* Sessions end with the driver: a driver reload removes every session; while the guest is suspended a
  session's methods fail and it is not found. Watches are the session's and go with it.
* A watch event is an instance of ``<PREFIX>XenStoreWatchEvent`` whose ``EventId`` is the WATCHED path as
  given to ``SetWatch`` (not the path that changed), sent to every WMI consumer of the class, whichever
  session set the watch. Changes that follow each other closely may be merged into one event (the driver
  signals a kernel event per watch). Events arrive asynchronously, not ordered with method answers.
  xenstored fires every new watch once; the driver passes that on as the watch's first event.
* Events are read with ``ExecNotificationQuery("SELECT * FROM <PREFIX>XenStoreWatchEvent")`` and
  ``NextEvent(timeout_ms)`` on the returned source, which raises ``com_error`` with scode
  ``wbemErrTimedOut`` (0x80043001) in its ``excepinfo`` when no event came in time.
* ``GetChildren`` is one XS_DIRECTORY request, which xenstored refuses (E2BIG) when the names pass one
  message (4096 bytes); ``GetFirstChild`` and ``GetNextSibling`` send the same request for the parent, so the
  interface cannot list such a node at all (see ``list`` below).
* pywin32's COM objects belong to the apartment (thread) that made them: the thread that receives events
  calls ``pythoncom.CoInitialize()`` and opens its own WMI connection; the calls stay on the thread that
  connected, except ``close``, which from any other thread finds the session again through a WMI connection
  of that thread's own to end it.
* A session that is not ended stays in the driver with its watches (the driver has a maximum of sessions):
  it is ended whenever it may still exist (closed, lost, or a connect that failed after ``AddSession``); one
  made while the guest was suspended cannot be found until the resume, so what could not be ended is tried
  again after the next connect.

What this means for the ``Transport`` contract, and how the daemon still gets what it relies on:

* ``next_event`` gives (watched path, token): the daemon, watching ``data/host``, scans the directory on
  each event, which is what it does for the watch's first event anyway. One change may give one event per
  matching watch, and a burst may give fewer events than changes.
* ``event_pending`` is always True: no event is known to have arrived by the time a call returns, so the
  daemon reads a request node before deleting it instead of trusting that no event is queued for it.
* A lost session is noticed by the next call, or by the event thread, which asks every ``check_interval``
  seconds whether the session still exists (a WMI query of the session object; XenStore itself is not
  polled): a daemon idle in ``next_event`` wakes with XenStoreUnavailable and reconnects.
* WMI calls have no timeout of their own: XenStoreTimeout is never raised here.
* A node whose children's names pass 4096 bytes cannot be listed: ``list`` raises XenStoreError (WMI gives
  no reason) instead of giving part of the list or none. For ``data/host`` that is some 110 requests waiting
  at once (UUID names).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import importlib
import itertools
import logging
import os
import queue
import re
import threading
from typing import TYPE_CHECKING, Any

from agent.errors import XenStoreError, XenStoreUnavailable
from agent.xenstore import Transport, Unpipelined, ascii_value, invalid, refused

log = logging.getLogger(__name__)

NAMESPACE = "root\\wmi"
PREFIXES = ("Citrix", "XenProject")
WBEM_E_TIMED_OUT = 0x80043001
SESSION_NAME = "openstack-agent"
#: What XenStore's wire format carries here: path characters; value characters (space to DEL, no NUL).
_PATH = re.compile(r"[A-Za-z0-9/_@-]+")
_VALUE = re.compile(r"[\x20-\x7f]+")
MAX_PAYLOAD = 4096
MAX_PATH = 3072
MAX_RELATIVE_PATH = 2048  # xenstored's limit below /local/domain/<id>/, or in all elsewhere (EINVAL)
_DOMAIN_HOME = re.compile(r"/local/domain/\d{1,5}/")
_DEAD = object()  # queued when the session is found lost
_WAKE = object()  # queued by wake()
_SERIAL = itertools.count(1)  # makes each connection's session Id unique in this process
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a session name that is safe inside a quoted WQL string


class _Refused(Exception):
    """A session method failed while the session still exists: the node's failure, not the connection's."""


def _scode(exc: BaseException) -> int | None:
    """The WMI status of a com_error, as an unsigned 32-bit number: the excepinfo's scode, else the hresult."""
    excepinfo = getattr(exc, "excepinfo", None)
    code = excepinfo[5] if isinstance(excepinfo, tuple) and len(excepinfo) > 5 and excepinfo[5] else None
    if code is None:
        code = getattr(exc, "hresult", None)
    return code & 0xFFFFFFFF if isinstance(code, int) else None


def checked(op: str, full: str, value: str | None = None) -> None:
    """Refuse what the interface cannot carry, before sending, with the errors ``XenStore`` gives: a bad path
    or value (no errno), then a path xenstored would refuse as too long (EINVAL)."""
    if (not _PATH.fullmatch(full) or "//" in full or (len(full) > 1 and full.endswith("/")) or len(full) > MAX_PATH
            or (value is not None and (not _VALUE.fullmatch(value) or len(full) + 1 + len(value) > MAX_PAYLOAD))):
        raise invalid(op, full)
    home = _DOMAIN_HOME.match(full)
    if len(full) - (home.end() if home else 0) > MAX_RELATIVE_PATH:
        raise refused(op, full, errno.EINVAL)


class WmiXenStore(Unpipelined):
    """A XenStore session through xeniface's WMI classes, with one event thread and one watch queue."""

    def __init__(self, domain_path: str = "", timeout: float = 10.0, *, client: Any = None, pythoncom: Any = None,
                 pywintypes: Any = None, check_interval: float = 10.0, name: str = SESSION_NAME) -> None:
        self.address = "wmi"
        self.domain_path = domain_path.rstrip("/")
        #: How long ``connect`` waits for the event thread to subscribe (WMI calls have no timeout of their own).
        self.timeout = timeout
        self.check_interval = check_interval
        if not _NAME.fullmatch(name):
            raise ValueError(f"a WMI XenStore session name is 1 to 64 letters, digits, '_' or '-', not {name!r}")
        self.name = name
        given = {"win32com.client": client, "pythoncom": pythoncom, "pywintypes": pywintypes}
        self._loaded: dict[str, Any] = {key: module for key, module in given.items() if module is not None}
        self._prefix = PREFIXES[0]
        self._session: Any = None
        #: The session's Id (unique to this connection), the WMI connection and thread that made its objects.
        self._ident: str | None = None
        self._wmi: Any = None
        self._owner: int | None = None
        #: Ids of sessions that may still exist but could not be ended; tried again after the next connect.
        self._unended: builtins.list[str] = []
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        #: Watched full path -> its tokens, in the order watched; read by the event thread under the lock.
        self._watches: dict[str, builtins.list[str]] = {}
        self._lock = threading.Lock()

    def _module(self, name: str) -> Any:
        if name not in self._loaded:
            try:
                self._loaded[name] = importlib.import_module(name)
            except ImportError:
                raise XenStoreUnavailable("pywin32 is not installed; the WMI XenStore needs it (install the agent "
                                          "with its Windows dependencies: pip install pywin32)") from None
        return self._loaded[name]

    @property
    def _com_error(self) -> type[BaseException]:
        error: type[BaseException] = self._module("pywintypes").com_error
        return error

    # -- connection -----------------------------------------------------------------------------------

    def _services(self) -> Any:
        """A WMI connection to ``root\\wmi`` for the calling thread (COM initialised there first)."""
        self._module("pythoncom").CoInitialize()
        locator = self._module("win32com.client").Dispatch("WbemScripting.SWbemLocator")
        return locator.ConnectServer(".", NAMESPACE)

    def connect(self) -> None:
        """Open a session (a no-op when one is open and not lost) and start receiving its watch events."""
        if self.connected:
            return
        self.close()
        com_error = self._com_error
        ident = f"{self.name}-{os.getpid()}-{next(_SERIAL)}"
        try:
            services = self._services()
            base, self._prefix = self._base(services)
            _call(base, "AddSession", Id=ident)
        except com_error as exc:
            raise XenStoreUnavailable(f"cannot open a XenStore session through WMI ({NAMESPACE}): {exc}") from exc
        try:  # from here the session may exist: a failure leaves it to be ended
            found = list(services.ExecQuery(self._session_query(ident)))
        except com_error as exc:
            self._unended.append(ident)
            raise XenStoreUnavailable(f"cannot find the XenStore session {ident} made through WMI: {exc}") from exc
        if not found:
            self._unended.append(ident)  # made while the guest is suspended, it appears on the resume
            raise XenStoreUnavailable(f"the XenStore session {ident} made through WMI cannot be found")
        self._session, self._ident, self._wmi, self._owner = found[0], ident, services, threading.get_ident()
        self._lost, self._stop, self._events = threading.Event(), threading.Event(), queue.Queue()
        self._watches = {}
        subscribed = threading.Event()
        failure: list[BaseException] = []
        self._pump = threading.Thread(target=self._receive, name="xenstore-wmi-events", daemon=True,
                                      args=(ident, self._stop, self._lost, self._events, subscribed, failure))
        self._pump.start()
        if not subscribed.wait(self.timeout) or failure:
            self.close()
            cause = failure[0] if failure else None
            raise XenStoreUnavailable(f"cannot receive XenStore watch events through WMI: {cause or 'no answer'}") \
                from cause
        self._end_unended(services)
        log.debug("connected to XenStore through WMI, session %s", ident)

    def _base(self, services: Any) -> tuple[Any, str]:
        """The XenStoreBase singleton and the class prefix of this build of the drivers."""
        for prefix in PREFIXES:
            with contextlib.suppress(self._com_error):  # an unknown class is an error, not an empty answer
                found = list(services.ExecQuery(f"SELECT * FROM {prefix}XenStoreBase"))  # noqa: S608 - WQL of constants
                if found:
                    return found[0], prefix
        raise XenStoreUnavailable(f"no XenStoreBase object in WMI {NAMESPACE} (tried the prefixes "
                                  f"{', '.join(PREFIXES)}): are the Xen PV drivers, with xeniface, installed and "
                                  "loaded?")

    def _session_query(self, ident: str) -> str:
        return f"SELECT * FROM {self._prefix}XenStoreSession WHERE Id='{ident}'"  # noqa: S608 - _NAME, digits

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._lost.is_set()

    def close(self) -> None:
        """End the session (its watches go with it) and the event thread; safe to call at any time, from any
        thread (the daemon closes from a thread of its own when it stops)."""
        session, ident, owner = self._session, self._ident, self._owner
        self._session = self._ident = self._wmi = self._owner = None
        self._stop.set()
        self._lost.set()
        self._events.put(_DEAD)  # a next_event blocked on this connection returns
        if ident is None:
            return
        if owner == threading.get_ident():
            # Lost or not: a session the event thread gave up on, or the driver still holds, is ended too.
            try:
                _call(session, "EndSession")
            except self._com_error as exc:
                log.debug("EndSession of %s failed (%s): tried again after the next connect", ident, exc)
                self._unended.append(ident)
        else:
            self._end_elsewhere(ident)

    def _end_elsewhere(self, ident: str) -> None:
        """End the session with Id ``ident`` from a thread that did not make its objects: found again
        through a WMI connection of this thread's own, in a COM apartment opened and closed here."""
        pythoncom = self._module("pythoncom")
        try:
            self._end_found(self._services(), ident)
        except self._com_error as exc:
            log.debug("EndSession of %s failed (%s): tried again after the next connect", ident, exc)
            self._unended.append(ident)
        finally:
            with contextlib.suppress(self._com_error):
                pythoncom.CoUninitialize()

    def _end_found(self, services: Any, ident: str) -> None:
        """EndSession on the session with Id ``ident`` if WMI lists it (com_error when a call fails)."""
        for session in list(services.ExecQuery(self._session_query(ident))):
            _call(session, "EndSession")

    def _end_unended(self, services: Any) -> None:
        """After a connect: end the sessions that could not be ended before. A session this connect found
        means the guest is not suspended, so one of them not listed now is gone for good."""
        unended, self._unended = self._unended, []
        for ident in unended:
            try:
                self._end_found(services, ident)
            except self._com_error as exc:
                log.warning("cannot end the earlier XenStore session %s through WMI: %s", ident, exc)

    # -- calls ----------------------------------------------------------------------------------------

    def _method(self, op: str, full: str, method: str, **arguments: str) -> Any:
        """Call a session method; a failure is XenStoreUnavailable when the session is gone, else _Refused."""
        if not self.connected:
            raise XenStoreUnavailable("not connected to XenStore")
        com_error = self._com_error
        try:
            return _call(self._session, method, **arguments)
        except com_error as exc:
            if not self._session_exists(self._session_query(self._ident or ""), self._wmi):
                self._lose()
                raise XenStoreUnavailable(f"the XenStore session ended (driver reloaded, or the guest suspended) "
                                          f"during {op} {full}") from exc
            raise _Refused(f"{method} failed ({_scode(exc) or 0:#010x})") from exc

    def _session_exists(self, query: str, services: Any = None) -> bool:
        """Whether WMI still lists this session; a WMI that does not answer counts as no."""
        try:
            services = services if services is not None else self._services()
            return bool(list(services.ExecQuery(query)))
        except self._com_error:
            return False

    def _lose(self) -> None:
        if not self._lost.is_set():
            self._lost.set()
            self._events.put(_DEAD)

    def read(self, path: str) -> bytes | None:
        return self._value("read", self.absolute(path))

    def _value(self, op: str, full: str) -> bytes | None:
        """The value of the node at the full path ``full``, or None when the node is missing."""
        checked(op, full)
        try:
            value = self._method(op, full, "GetValue", Pathname=full).Properties_.Item("value").Value
        except _Refused:
            return None
        return str(value or "").encode("utf-8")

    def write(self, path: str, value: str) -> None:
        full = self.absolute(path)
        ascii_value(full, value)
        checked("write", full, value)
        try:
            self._method("write", full, "SetValue", Pathname=full, value=value)
        except _Refused as exc:
            raise XenStoreError(f"XenStore refused write {full} (WMI gives no reason: {exc})") from exc

    def delete(self, path: str) -> None:
        full = self.absolute(path)
        checked("delete", full)
        with contextlib.suppress(_Refused):  # a missing node, as xenstored's ENOENT: not an error here
            self._method("delete", full, "RemoveValue", Pathname=full)

    def _children(self, op: str, full: str) -> builtins.list[str] | None:
        """The children's names, or None when the node is missing. A node that exists but whose children the
        driver would not list (WMI gives no reason) is a XenStoreError: an empty list would hide requests."""
        checked(op, full)
        try:
            children = self._method(op, full, "GetChildren", Pathname=full).Properties_.Item("children").Value
        except _Refused as exc:
            if self._value(op, full) is None:
                return None
            raise XenStoreError(f"XenStore refused {op} {full} (WMI gives no reason: {exc})") from exc
        paths = children.Properties_.Item("ChildNodes").Value if children is not None else None
        prefix = "/" if full == "/" else full + "/"
        return [str(child).removeprefix(prefix) for child in paths or ()]

    def list(self, path: str) -> builtins.list[str]:
        return self._children("list", self.absolute(path)) or []

    def exists(self, path: str) -> bool:
        # A read, as XenStore.exists does: a node's value fits one message, its children's names may not.
        return self.read(path) is not None

    def mkdir(self, path: str) -> None:
        """There is no mkdir in the interface: a missing node is written with an empty value (its missing
        parents come with it, as for any write)."""
        full = self.absolute(path)
        if self._children("mkdir", full) is None:
            try:
                self._method("mkdir", full, "SetValue", Pathname=full, value="")
            except _Refused as exc:
                raise XenStoreError(f"XenStore refused mkdir {full} (WMI gives no reason: {exc})") from exc

    # -- watches --------------------------------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """Watch ``path`` for ``token``: one driver watch per path, however many tokens share it."""
        full = self.absolute(path)
        checked("watch", full)
        with self._lock:
            tokens = self._watches.get(full, [])
            if token in tokens:
                raise refused("watch", full, errno.EEXIST)
            first = not tokens
            self._watches[full] = [*tokens, token]
        if not first:
            # The driver's watch exists: xenstored would still fire the new token once, so it is queued here.
            self._events.put((path, token))
            return
        try:
            self._method("watch", full, "SetWatch", Pathname=full)
        except BaseException as exc:
            with self._lock:
                self._watches.pop(full, None)
            if isinstance(exc, _Refused):
                raise XenStoreError(f"XenStore refused watch {full} (WMI gives no reason: {exc})") from exc
            raise

    def _receive(self, ident: str, stop: threading.Event, lost: threading.Event, events: queue.Queue[Any],
                 subscribed: threading.Event, failure: builtins.list[BaseException]) -> None:
        """The event thread: its own COM apartment and WMI connection, one event source, and every
        ``check_interval`` seconds a look whether the session still exists. However it ends, unless a stop
        was asked for, the session counts as lost and a waiting ``next_event`` wakes: the daemon reconnects
        (and the connect ends this session if it still exists)."""
        com_error = self._com_error
        pythoncom = self._module("pythoncom")
        try:
            try:
                services = self._services()
                wql = f"SELECT * FROM {self._prefix}XenStoreWatchEvent"  # noqa: S608 - WQL of constants
                source = services.ExecNotificationQuery(wql)
            except com_error as exc:
                failure.append(exc)
                return
            finally:
                subscribed.set()
            self._pump_events(source, services, self._session_query(ident), stop, events)
        except Exception:
            log.warning("the WMI XenStore event thread failed; the session counts as lost", exc_info=True)
        finally:
            if not stop.is_set():
                lost.set()
                events.put(_DEAD)
            with contextlib.suppress(com_error):
                pythoncom.CoUninitialize()

    def _pump_events(self, source: Any, services: Any, query: str, stop: threading.Event,
                     events: queue.Queue[Any]) -> None:
        """Deliver events until a stop is asked for, the source fails, or the session is no longer listed."""
        com_error = self._com_error
        waited = 0.0
        step = min(1.0, self.check_interval)
        while not stop.is_set():
            try:
                event = source.NextEvent(int(step * 1000))
            except com_error as exc:
                if _scode(exc) != WBEM_E_TIMED_OUT:
                    log.info("the WMI event source failed (%s): the XenStore session counts as lost", exc)
                    return
                waited += step
                if waited >= self.check_interval and not stop.is_set():
                    waited = 0.0
                    if not self._session_exists(query, services):
                        return
                continue
            self._deliver(str(event.Properties_.Item("EventId").Value), events)

    def _deliver(self, watched: str, events: queue.Queue[Any]) -> None:
        """Queue an event for each token of a watched path; events of other sessions' watches are not ours."""
        with self._lock:
            tokens = builtins.list(self._watches.get(watched, ()))
        for token in tokens:
            events.put((self.relative(watched), token))

    def next_event(self, timeout: float | None = None) -> tuple[str, str] | None:
        """The next watch event (watched path, token); None after ``timeout`` or ``wake()``. Events queued
        before the session was lost come first; then XenStoreUnavailable, at once when already lost."""
        events = self._events
        try:
            event = events.get_nowait()
        except queue.Empty:
            if not self.connected:
                raise XenStoreUnavailable("not connected to XenStore") from None
            try:
                event = events.get(timeout=timeout)
            except queue.Empty:
                return None
        if event is _WAKE:
            return None
        if event is _DEAD:
            raise XenStoreUnavailable("the XenStore session through WMI was lost")
        path, token = event
        return str(path), str(token)

    def event_pending(self, path: str) -> bool:
        """Always True: WMI events are not ordered with method answers, so none is known to have arrived."""
        return True

    def wake(self) -> None:
        self._events.put(_WAKE)


def _call(target: Any, method: str, **arguments: str) -> Any:
    """Run a WMI method through the scripting API: in-parameters spawned from the method's definition, the
    out-parameters object returned. A method without in-parameters has none to spawn."""
    if not arguments:
        return target.ExecMethod_(method)
    parameters = target.Methods_(method).InParameters.SpawnInstance_()
    for name, value in arguments.items():
        parameters.Properties_.Item(name).Value = value
    return target.ExecMethod_(method, parameters)


if TYPE_CHECKING:
    _conforms: type[Transport] = WmiXenStore
