"""A stand-in for the Xen PV drivers' WMI interface (xeniface) as pywin32 shows it, over a real xenstored.

``FakeXeniface`` plays the driver and the WMI service; ``client``, ``pythoncom`` and ``pywintypes`` are what
``agent.xenstore_wmi`` imports of pywin32. Every session has its own connection to the test's xenstored
(``agent.xenstore.XenStore``), so values, limits, parents, subtree deletes and when watches fire are
xenstored's own. What the fake adds is the interface's recorded behaviour (xeniface's MOF and WMI provider,
pywin32 and the WMI scripting API):

- ``win32com.client.Dispatch("WbemScripting.SWbemLocator").ConnectServer(".", "root\\wmi")`` gives the
  services object; ``ExecQuery(wql)`` the instances, ``ExecNotificationQuery(wql)`` an event source.
- COM objects belong to the thread that made them: used from another thread they raise RPC_E_WRONG_THREAD;
  a thread that did not call ``pythoncom.CoInitialize()`` gets CO_E_NOTINITIALIZED from ``Dispatch``.
- Methods run as ``obj.ExecMethod_(name, params)`` with ``params`` spawned from
  ``obj.Methods_(name).InParameters.SpawnInstance_()``; a method without in-parameters has ``InParameters``
  None. Out-parameters are read as ``out.Properties_.Item(name).Value``; an unknown name raises.
- ``<PREFIX>XenStoreBase.AddSession(Id)`` -> ``SessionId``, numbered as the driver does: 0 when there is no
  session (so again after a reload), else the newest one's number + 1 (skipping numbers in use). The session's
  ``InstanceName`` is ``Session_<Id>_<n>`` with the first ``n`` not in use, and its methods find the session
  by that name (an object of an ended session never reaches a later one). Sessions are found by
  ``SELECT * FROM <PREFIX>XenStoreSession`` with ``WHERE SessionId=N`` or ``WHERE Id='...'``.
- ``GetValue`` -> ``value`` (the value up to its first NUL); ``SetValue`` writes the value up to its first
  NUL (the driver formats it with "%s"), parents made by xenstored; ``RemoveValue`` removes the subtree (a
  missing node under an existing parent is fine, a missing parent fails); ``GetChildren`` -> ``children`` with
  ``NoOfChildNodes`` and ``ChildNodes``, each the path as given + "/" + name, and fails for a missing node
  and for a list xenstored refuses as one XS_DIRECTORY answer (E2BIG, past 4096 bytes of names), as the
  driver sends it.
- ``SetWatch(path)`` adds a driver watch (63 at most per session), ``RemoveWatch(path)`` ends the first one on
  that path (none is not an error). Each xenstored event of a watch sets the watch's kernel event: events
  that arrive together are merged into one. A fired watch is an instance of ``<PREFIX>XenStoreWatchEvent``
  whose ``EventId`` is the watched path as given, sent to EVERY event source of the class.
- ``NextEvent(ms)`` with no event in time raises ``com_error`` DISP_E_EXCEPTION whose excepinfo scode is
  wbemErrTimedOut (0x80043001), as SWbemEventSource raises it.
- A method that fails raises DISP_E_EXCEPTION with scode WBEM_E_FAILED (xenstored's refusal, a missing
  node) or WBEM_E_NOT_FOUND (the session no longer exists or is suspended).
- ``reload()``: the driver goes and comes back: every session ends with its watches. ``suspend()`` /
  ``resume()``: while suspended, sessions' methods fail and queries do not find them, and their watches do not
  fire; on resume the watches are set again and xenstored fires each once.

- ``fault``: what goes wrong next in every event source: ``"NextEvent"`` (the next ``NextEvent`` raises
  WBEM_E_CRITICAL_ERROR, as when the WMI service restarts) or ``"EventId"`` (the next event has no readable
  ``EventId``); once.

Not modelled: transactions, ``Log``, ``GetFirstChild``/``GetNextSibling`` (they send the same XS_DIRECTORY
for the parent, so they list no more than ``GetChildren``), the unsuspend event.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import re
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from agent.errors import XenStoreError
from agent.xenstore import XenStore

DISP_E_EXCEPTION = -2147352567  # 0x80020009
RPC_E_WRONG_THREAD = 0x8001010E
CO_E_NOTINITIALIZED = 0x800401F0
WBEM_E_FAILED = 0x80041001
WBEM_E_NOT_FOUND = 0x80041002
WBEM_E_INVALID_NAMESPACE = 0x8004100E
WBEM_E_INVALID_CLASS = 0x80041010
WBEM_E_INVALID_QUERY = 0x80041017
WBEM_E_CRITICAL_ERROR = 0x8004100A
WBEM_E_TIMED_OUT = 0x80043001
MAX_WATCH_COUNT = 63  # MAXIMUM_WAIT_OBJECTS - 1: one wait slot stays for the session's own event
MAX_SESSIONS = 65536  # where session numbers wrap (the driver's own maximum is not modelled)


def signed(code: int) -> int:
    """An HRESULT as pywin32 gives it: a signed 32-bit number."""
    return code - (1 << 32) if code & 0x80000000 else code


class com_error(Exception):
    """``pywintypes.com_error(hresult, strerror, excepinfo, argerror)``, with those four as attributes."""

    def __init__(self, hresult: int, strerror: str, excepinfo: tuple[Any, ...] | None, argerror: int | None) -> None:
        super().__init__(hresult, strerror, excepinfo, argerror)
        self.hresult, self.strerror, self.excepinfo, self.argerror = hresult, strerror, excepinfo, argerror


def wmi_error(scode: int, description: str, source: str = "SWbemObjectEx") -> com_error:
    """What a failing WMI scripting call raises: DISP_E_EXCEPTION, the WMI status in excepinfo's scode."""
    return com_error(DISP_E_EXCEPTION, "Exception occurred.", (0, source, description, None, 0, signed(scode)), None)


class _Apartments:
    """``pythoncom``'s CoInitialize/CoUninitialize, counted per thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def CoInitialize(self) -> None:
        self._local.count = getattr(self._local, "count", 0) + 1

    def CoUninitialize(self) -> None:
        self._local.count = max(0, getattr(self._local, "count", 0) - 1)

    def initialized(self) -> bool:
        return getattr(self._local, "count", 0) > 0


class _Com:
    """A COM object of the apartment that made it."""

    def __init__(self) -> None:
        self._owner = threading.get_ident()

    def _check(self) -> None:
        if threading.get_ident() != self._owner:
            raise com_error(signed(RPC_E_WRONG_THREAD), "The application called an interface that was marshalled "
                            "for a different thread.", None, None)


class _Property:
    def __init__(self, value: Any = None) -> None:
        self.Value = value


class _Properties(_Com):
    def __init__(self, names: tuple[str, ...], values: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._items = {name: _Property((values or {}).get(name)) for name in names}

    def Item(self, name: str) -> _Property:
        self._check()
        if name not in self._items:
            raise wmi_error(WBEM_E_NOT_FOUND, "Not found ", "SWbemPropertySet")
        return self._items[name]


class _Instance(_Com):
    """An SWbemObject: properties, and the methods of its class."""

    #: method name -> (in-parameter names or None, out-parameter names)
    METHODS: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]] = {}

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__()
        self.Properties_ = _Properties(tuple(values), values)

    def Methods_(self, name: str) -> Any:
        self._check()
        if name not in self.METHODS:
            raise wmi_error(WBEM_E_NOT_FOUND, "Not found ", "SWbemMethodSet")
        parameters = self.METHODS[name][0]
        definition = None if parameters is None else _InParameters(parameters)
        return types.SimpleNamespace(Name=name, InParameters=definition)

    def ExecMethod_(self, name: str, parameters: Any = None) -> Any:
        self._check()
        if name not in self.METHODS:
            raise wmi_error(WBEM_E_NOT_FOUND, "Not found ", "SWbemObjectEx")
        wanted, out = self.METHODS[name]
        given = {key: item.Value for key, item in parameters.Properties_._items.items()} if parameters else {}
        if wanted and set(given) != set(wanted):
            raise wmi_error(0x80041008, "Invalid parameter ")  # WBEM_E_INVALID_PARAMETER
        values = self._run(name, given)
        return _Instance({key: values.get(key) for key in out})

    def _run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class _InParameters(_Com):
    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self._names = names

    def SpawnInstance_(self) -> Any:
        self._check()
        return types.SimpleNamespace(Properties_=_Properties(self._names))


class _Watch:
    def __init__(self, path: str, token: str) -> None:
        self.path, self.token, self.finished = path, token, False


class _Session:
    """The driver's side of one session: its xenstored connection and watches, and the thread that fires them."""

    def __init__(self, driver: FakeXeniface, session_id: int, name: str, instance: str) -> None:
        self.driver, self.id, self.name, self.instance = driver, session_id, name, instance
        self.xs = XenStore(driver.address, "")
        self.xs.connect()
        self.watches: list[_Watch] = []
        self.suspended = driver.suspended
        self._tokens = itertools.count()
        self._thread = threading.Thread(target=self._fire, daemon=True)
        self._thread.start()

    def add_watch(self, path: str) -> None:
        if len([w for w in self.watches if not w.finished]) >= MAX_WATCH_COUNT:
            raise wmi_error(WBEM_E_FAILED, "Generic failure ")
        watch = _Watch(path, f"w{next(self._tokens)}")
        self.watches.append(watch)
        self.xs.watch(self.driver.full(path), watch.token)

    def end(self) -> None:
        for watch in self.watches:
            watch.finished = True
        self.xs.close()

    def _fire(self) -> None:
        """Each xenstored event sets its watch's event; those that arrived together fire once each."""
        with contextlib.suppress(XenStoreError):
            while (event := self.xs.next_event(None)) is not None:
                tokens = [event[1]]
                while (more := self.xs.next_event(0)) is not None:
                    tokens.append(more[1])
                for watch in [w for w in self.watches if w.token in dict.fromkeys(tokens)]:
                    if not watch.finished and not self.suspended:
                        self.driver.fire(watch.path)


class _SessionObject(_Instance):
    """A ``<PREFIX>XenStoreSession`` instance as a query returns it."""

    METHODS = {
        "GetValue": (("Pathname",), ("value",)),
        "SetValue": (("Pathname", "value"), ()),
        "RemoveValue": (("Pathname",), ()),
        "GetChildren": (("Pathname",), ("children",)),
        "SetWatch": (("Pathname",), ()),
        "RemoveWatch": (("Pathname",), ()),
        "EndSession": (None, ()),
    }

    def __init__(self, driver: FakeXeniface, session: _Session) -> None:
        super().__init__({"InstanceName": session.instance, "SessionId": session.id, "Id": session.name,
                          "Active": True})
        self._driver, self._instance = driver, session.instance

    def _run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        driver = self._driver
        if driver.before_call is not None:
            driver.before_call(name, str(arguments.get("Pathname", "")))
        with driver.lock:
            session = driver.by_instance(self._instance)
            if session is None or session.suspended:
                raise wmi_error(WBEM_E_NOT_FOUND, "Not found ")
            driver.calls.append((name, str(arguments.get("Pathname", ""))))
        try:
            return driver.run(session, name, arguments)
        except XenStoreError as exc:  # xenstored refused, or cannot be reached: the method failed
            raise wmi_error(WBEM_E_FAILED, "Generic failure ") from exc


class _BaseObject(_Instance):
    METHODS = {"AddSession": (("Id",), ("SessionId",))}

    def __init__(self, driver: FakeXeniface) -> None:
        super().__init__({"InstanceName": "Xen Interface", "XenTime": 0, "Active": True})
        self._driver = driver

    def _run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"SessionId": self._driver.add_session(str(arguments["Id"]))}


class _EventSource(_Com):
    """An SWbemEventSource: every watch the driver fires, in order."""

    def __init__(self, driver: FakeXeniface) -> None:
        super().__init__()
        self._driver = driver
        self.events: queue.Queue[str] = queue.Queue()

    def NextEvent(self, timeout_ms: int = -1) -> Any:
        self._check()
        if self._driver.take_fault("NextEvent"):
            raise wmi_error(WBEM_E_CRITICAL_ERROR, "Critical error ", "SWbemEventSource")
        try:
            path = self.events.get(timeout=None if timeout_ms < 0 else timeout_ms / 1000)
        except queue.Empty:
            raise wmi_error(WBEM_E_TIMED_OUT, "Timed out ", "SWbemEventSource") from None
        if self._driver.take_fault("EventId"):
            return _Instance({"InstanceName": "Xen Interface", "Active": True})
        return _Instance({"InstanceName": "Xen Interface", "EventId": path, "Active": True})


class _Services(_Com):
    """SWbemServices for ``root\\wmi``."""

    def __init__(self, driver: FakeXeniface) -> None:
        super().__init__()
        self._driver = driver

    def ExecQuery(self, wql: str) -> list[Any]:
        self._check()
        driver = self._driver
        match = re.fullmatch(r"SELECT \* FROM (\w+)(?: WHERE (?:SessionId\s*=\s*(\d+)|Id\s*=\s*'([^'\\]*)'))?",
                             wql.strip(), re.IGNORECASE)
        if match is None:
            raise wmi_error(WBEM_E_INVALID_QUERY, "Invalid query ", "SWbemServicesEx")
        kind, session_id, name = match.groups()
        with driver.lock:
            if kind == f"{driver.prefix}XenStoreBase" and session_id is None and name is None:
                return [_BaseObject(driver)] if driver.loaded else []
            if kind == f"{driver.prefix}XenStoreSession":
                return [_SessionObject(driver, s) for s in driver.sessions.values()
                        if not s.suspended and (session_id is None or s.id == int(session_id))
                        and (name is None or s.name == name)]
        raise wmi_error(WBEM_E_INVALID_CLASS, "Invalid class ", "SWbemServicesEx")

    def ExecNotificationQuery(self, wql: str) -> _EventSource:
        self._check()
        if wql.strip().lower() != f"select * from {self._driver.prefix}XenStoreWatchEvent".lower():
            raise wmi_error(WBEM_E_INVALID_CLASS, "Invalid class ", "SWbemServicesEx")
        source = _EventSource(self._driver)
        self._driver.sources.add(source)
        return source


class _Locator(_Com):
    def __init__(self, driver: FakeXeniface) -> None:
        super().__init__()
        self._driver = driver

    def ConnectServer(self, server: str = ".", namespace: str = "root\\cimv2") -> _Services:
        self._check()
        if namespace.lower() != "root\\wmi":
            raise wmi_error(WBEM_E_INVALID_NAMESPACE, "Invalid namespace ", "SWbemLocator")
        return _Services(self._driver)


def exists(xs: XenStore, full: str) -> bool:
    """Whether xenstored has the node (a read: XenStore.exists lists, which a long child list refuses)."""
    return xs.read(full) is not None


class FakeXeniface:
    """The driver and WMI service of one guest, whose home is ``home``, over the xenstored at ``address``."""

    def __init__(self, address: str, home: str, prefix: str = "Citrix") -> None:
        self.address, self.home, self.prefix = address, home.rstrip("/"), prefix
        self.loaded = True
        self.suspended = False
        self.sessions: dict[int, _Session] = {}
        self.sources: weakref.WeakSet[_EventSource] = weakref.WeakSet()
        self.lock = threading.RLock()
        #: (method, path) of every session method that ran, in order.
        self.calls: list[tuple[str, str]] = []
        #: Called with (method, path) before a session method runs: where a test reloads the driver mid-call.
        self.before_call: Callable[[str, str], None] | None = None
        #: What goes wrong next in an event source ("NextEvent" or "EventId"), once; None: nothing.
        self.fault: str | None = None
        self._apartments = _Apartments()
        self.pythoncom = types.SimpleNamespace(CoInitialize=self._apartments.CoInitialize,
                                               CoUninitialize=self._apartments.CoUninitialize)
        self.client = types.SimpleNamespace(Dispatch=self.Dispatch)
        self.pywintypes = types.SimpleNamespace(com_error=com_error)

    def modules(self) -> dict[str, Any]:
        """The keyword arguments that give ``WmiXenStore`` this fake instead of pywin32."""
        return {"client": self.client, "pythoncom": self.pythoncom, "pywintypes": self.pywintypes}

    def Dispatch(self, progid: str) -> _Locator:
        if not self._apartments.initialized():
            raise com_error(signed(CO_E_NOTINITIALIZED), "CoInitialize has not been called.", None, None)
        if progid != "WbemScripting.SWbemLocator":
            raise com_error(signed(0x800401F3), "Invalid class string", None, None)  # CO_E_CLASSSTRING
        return _Locator(self)

    # -- the driver -----------------------------------------------------------------------------------

    def full(self, path: str) -> str:
        """Where a path given to the driver is in xenstored: relative paths are the guest's."""
        return path if path.startswith("/") else f"{self.home}/{path}"

    def add_session(self, name: str) -> int:
        """A new session, numbered and named as the driver does (see the module's docstring)."""
        with self.lock:
            if not self.loaded:
                raise wmi_error(WBEM_E_NOT_FOUND, "Not found ")
            instances = {s.instance for s in self.sessions.values()}
            instance = next(i for n in itertools.count() if (i := f"Xen Interface\\Session_{name}_{n}")
                            not in instances)
            session_id = 0
            if self.sessions:
                session_id = (list(self.sessions)[-1] + 1) % MAX_SESSIONS  # the newest one's number + 1
                while session_id in self.sessions:
                    session_id = (session_id + 1) % MAX_SESSIONS
            try:
                self.sessions[session_id] = _Session(self, session_id, name, instance)
            except XenStoreError as exc:
                raise wmi_error(WBEM_E_FAILED, "Generic failure ") from exc
            return session_id

    def by_instance(self, instance: str) -> _Session | None:
        with self.lock:
            return next((s for s in self.sessions.values() if s.instance == instance), None)

    def take_fault(self, kind: str) -> bool:
        with self.lock:
            if self.fault != kind:
                return False
            self.fault = None
            return True

    def run(self, session: _Session, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        path = str(arguments.get("Pathname", ""))
        full, xs = self.full(path), session.xs
        if name == "GetValue":
            value = xs.read(full)
            if value is None:
                raise wmi_error(WBEM_E_FAILED, "Generic failure ")
            return {"value": value.split(b"\0")[0].decode("utf-8")}
        if name == "SetValue":
            value = str(arguments["value"]).split("\0")[0]
            if value:
                xs.write(full, value)
            elif not exists(xs, full):
                xs.mkdir(full)
            else:
                raise NotImplementedError("the fake cannot empty an existing node's value")
            return {}
        if name == "RemoveValue":
            if not exists(xs, full) and not exists(xs, full.rsplit("/", 1)[0] or "/"):
                raise wmi_error(WBEM_E_FAILED, "Generic failure ")
            xs.delete(full)
            return {}
        if name == "GetChildren":
            if not exists(xs, full):
                raise wmi_error(WBEM_E_FAILED, "Generic failure ")
            prefix = "/" if path == "/" else f"{path}/"
            names: list[bytes] = xs._call("list", full)  # one XS_DIRECTORY, as the driver sends: E2BIG past 4096
            children = tuple(prefix + child.decode("ascii") for child in names)
            return {"children": _Instance({"NoOfChildNodes": len(children), "ChildNodes": children or None})}
        if name == "SetWatch":
            session.add_watch(path)
            return {}
        if name == "RemoveWatch":
            for watch in session.watches:
                if watch.path == path and not watch.finished:
                    watch.finished = True
                    break
            return {}
        if name == "EndSession":
            with self.lock:
                self.sessions.pop(session.id, None)
            session.end()
            return {}
        raise NotImplementedError(name)

    def fire(self, path: str) -> None:
        """A watch fired: a ``XenStoreWatchEvent`` for every consumer of the class."""
        with self.lock:
            for source in list(self.sources):
                source.events.put(path)

    # -- what happens to the driver -------------------------------------------------------------------

    def end_session(self, name: str) -> None:
        """The session made with Id ``name`` ends (as another program's EndSession on it would): its watches
        go with it."""
        with self.lock:
            session_id, session = next((i, s) for i, s in self.sessions.items() if s.name == name)
            del self.sessions[session_id]
        session.end()

    def reload(self) -> None:
        """The driver is unloaded and loaded again (an update, a device reset): every session ends."""
        with self.lock:
            ended, self.sessions = list(self.sessions.values()), {}
        for session in ended:
            session.end()

    def unload(self) -> None:
        """The driver goes: every session ends, and there is no XenStoreBase until ``load``."""
        with self.lock:
            self.loaded = False
        self.reload()

    def load(self) -> None:
        with self.lock:
            self.loaded = True

    def suspend(self) -> None:
        with self.lock:
            self.suspended = True
            for session in self.sessions.values():
                session.suspended = True

    def resume(self) -> None:
        """Back from suspend: sessions work again and each watch is set again, which fires it once."""
        with self.lock:
            self.suspended = False
            sessions = list(self.sessions.values())
            for session in sessions:
                session.suspended = False
        for session in sessions:
            for watch in session.watches:
                if not watch.finished:
                    self.fire(watch.path)
