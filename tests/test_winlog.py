"""The Windows log: the event log handler against the fake event log, the source's registration, and the
rotating log file that ``agent.logs`` sets up on Windows."""

from __future__ import annotations

import logging
import logging.handlers
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config as agent_config
from agent import logs, winlog
from agent.daemon import Agent
from agent.errors import ConfigError, PlatformError
from agent.host import Host
from agent.memstore import MemoryStore
from agent.platform.linux import Linux
from agent.runtime import Standalone
from agent.winacl import StateDirAcl
from tests.conftest import DOMID, STATE_DIR
from tests.fakes.win32service import (
    EVENTLOG_ERROR_TYPE,
    EVENTLOG_INFORMATION_TYPE,
    EVENTLOG_WARNING_TYPE,
    WIN32SERVICE_PYD,
    FakeSCM,
    FakeSecurity,
    PySID,
)

HOME = f"/local/domain/{DOMID}"
SECRET = "Secret-Pass-1"  # the password that must reach no log


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger's handlers and level back after a test that sets the log up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize(("level", "event_type"), [
    (logging.DEBUG, EVENTLOG_INFORMATION_TYPE), (logging.INFO, EVENTLOG_INFORMATION_TYPE),
    (logging.WARNING, EVENTLOG_WARNING_TYPE), (logging.ERROR, EVENTLOG_ERROR_TYPE),
    (logging.CRITICAL, EVENTLOG_ERROR_TYPE)])
def test_each_record_is_one_event_of_its_level(level: int, event_type: int) -> None:
    """A record becomes one event of the OpenStackAgent source: id 1, category 0, its type from its level, and
    the logger's name and message as its one string."""
    scm = FakeSCM()
    handler = winlog.EventLogHandler(scm.win32().win32evtlogutil)
    handler.handle(logging.LogRecord("agent.daemon", level, __file__, 1, "request %s answered: %s",
                                     ("abc", "0"), None))
    assert scm.events == [("OpenStackAgent", 1, 0, event_type, ["agent.daemon: request abc answered: 0"])]


def test_the_daemons_lines_reach_the_event_log_without_a_secret(restore_logging: None, tmp_path: Path,
                                                               memory_store: MemoryStore,
                                                               system_root: Path) -> None:
    """Set up the Windows way, a real agent setting a password logs to the file and the event log alike, and
    neither holds the password."""
    scm = FakeSCM()
    file = tmp_path / "Logs" / "OpenStackAgent.log"
    logs.setup("debug", str(file), windows=True, event_log=winlog.EventLogHandler(scm.win32().win32evtlogutil))
    config = agent_config.from_overrides(root=str(system_root), state_dir=STATE_DIR, domain_path=HOME)
    ready = threading.Event()
    agent = Agent(config, on_ready=ready.set, transport=memory_store.connection(HOME),
                  accounts=Linux(str(system_root)), runtime=Standalone())
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        host = Host(memory_store.connection(HOME), poll_interval=0.002)
        assert host.set_password(SECRET, timeout=10) == {"returncode": "0", "message": ""}
    finally:
        agent.stop()
        thread.join(20)
    strings = [s for event in scm.events for s in event[4]]
    assert any(s.startswith("agent.daemon: request ") and s.endswith(" answered: 0") for s in strings)
    text = file.read_text(encoding="utf-8")
    assert " INFO agent.daemon: openstack-agent stopped\n" in text
    assert SECRET not in text and not any(SECRET in s for s in strings)


def test_a_failing_event_log_does_not_stop_the_agent(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """ReportEvent failing is logging's own error report on stderr, not an exception in the caller."""
    scm = FakeSCM()
    win32 = scm.win32()

    def broken(*args: object, **kwargs: object) -> None:
        raise win32.pywintypes.error(1502, "ReportEvent", "The event log file is full.")

    monkeypatch.setattr(win32.win32evtlogutil, "ReportEvent", broken)
    handler = winlog.EventLogHandler(win32.win32evtlogutil)
    handler.handle(logging.LogRecord("agent", logging.ERROR, __file__, 1, "lost", (), None))
    assert "The event log file is full." in capsys.readouterr().err


def test_register_and_remove_the_source() -> None:
    """The source is registered in the Application log with win32service.pyd as its message file and the
    three event types, and removed again; removing a missing one is no error."""
    scm = FakeSCM()
    win32 = scm.win32()
    winlog.register_source(win32.win32evtlogutil, win32.win32service, win32.pywintypes)
    assert scm.sources == {("Application", "OpenStackAgent"): {"EventMessageFile": WIN32SERVICE_PYD,
                                                               "TypesSupported": 7}}
    winlog.remove_source(win32.win32evtlogutil, win32.pywintypes)
    winlog.remove_source(win32.win32evtlogutil, win32.pywintypes)
    assert scm.sources == {}


def test_registering_without_rights_says_why() -> None:
    """Access denied to the registry is a PlatformError naming the function and Windows' words."""
    win32 = FakeSCM(elevated=False).win32()
    with pytest.raises(PlatformError) as raised:
        winlog.register_source(win32.win32evtlogutil, win32.win32service, win32.pywintypes)
    assert str(raised.value) == ("cannot register the event log source OpenStackAgent: RegCreateKey failed with "
                                 "error 5: Access is denied.")


def test_the_file_rotates_by_size(tmp_path: Path) -> None:
    """Past its size the file becomes .1, older ones shift to .2, the oldest beyond the count is dropped, and
    every line lands whole in one file."""
    path = tmp_path / "OpenStackAgent.log"
    handler = winlog.rotating_file(str(path), max_bytes=100, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for n in range(8):
        handler.handle(logging.LogRecord("agent", logging.INFO, __file__, 1, f"line {n} " + "x" * 40, (), None))
    handler.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OpenStackAgent.log", "OpenStackAgent.log.1",
                                                          "OpenStackAgent.log.2"]
    kept = [path.with_name(f"OpenStackAgent.log{suffix}").read_text() for suffix in (".2", ".1", "")]
    lines = "".join(kept).splitlines()
    assert lines == [f"line {n} " + "x" * 40 for n in range(2, 8)]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())


def test_each_new_log_file_is_created_for_system_and_administrators(tmp_path: Path) -> None:
    """The first file and each one a rotation starts are made by winacl's create_file (Administrators the owner,
    SYSTEM and Administrators alone in a protected DACL) before the handler opens them, and written after."""
    fake = FakeSecurity()
    path = tmp_path / "OpenStackAgent.log"
    handler = winlog.rotating_file(str(path), max_bytes=100, backups=2, create=StateDirAcl(*fake.modules()).create_file)
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert len(fake.handles) == 1
    for n in range(3):
        handler.handle(logging.LogRecord("agent", logging.INFO, __file__, 1, f"line {n} " + "x" * 60, (), None))
    handler.close()
    assert len(fake.handles) == 3, "one creation per file: the first and two rotations"
    made = fake.descriptors[str(path)]
    assert made.owner == PySID(26) and made.dacl is not None
    assert [(ace[2], ace[4]) for ace in made.dacl.aces] == [(0, PySID(22)), (0, PySID(26))]
    assert path.read_text() == "line 2 " + "x" * 60 + "\n"


def test_a_log_file_that_cannot_be_made_private_is_a_configuration_error(tmp_path: Path) -> None:
    """A refused creation names the call and the setting to fix."""
    fake = FakeSecurity(refuse=5)
    with pytest.raises(ConfigError) as raised:
        winlog.rotating_file(str(tmp_path / "OpenStackAgent.log"), create=StateDirAcl(*fake.modules()).create_file)
    assert str(raised.value) == (
        "fix daemon.log_file (--log-file) or its directory's permissions: cannot create "
        f"{tmp_path / 'OpenStackAgent.log'} for SYSTEM and Administrators: CreateFile failed with error 5: Access "
        "is denied.")


def test_an_unwritable_log_directory_is_a_configuration_error(tmp_path: Path) -> None:
    """A log file that cannot be made is a ConfigError naming the setting to fix."""
    blocker = tmp_path / "Logs"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(ConfigError, match=r"fix daemon\.log_file"):
        winlog.rotating_file(str(blocker / "OpenStackAgent.log"))


def test_elsewhere_the_log_is_unchanged(restore_logging: None, tmp_path: Path) -> None:
    """Not on Windows, setup keeps one handler: the private file, not rotated by the agent."""
    logs.setup("info", str(tmp_path / "agent.log"), windows=False)
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1 and not isinstance(handlers[0], logging.handlers.RotatingFileHandler)
