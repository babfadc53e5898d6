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
    HeldFiles,
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


def _write(handler: logging.Handler, numbers: range) -> None:
    for n in numbers:
        handler.handle(logging.LogRecord("agent", logging.INFO, __file__, 1, f"line {n:03d} " + "x" * 40, (), None))


def _lines(path: Path, *suffixes: str) -> list[str]:
    """The lines of the agent's records in the files ``path`` + each suffix, in that order."""
    return [line for suffix in suffixes for line in path.with_name(path.name + suffix).read_text().splitlines()
            if line.startswith("line ")]


def _in_order(path: Path) -> list[str]:
    """The agent's records in every file of the log, oldest first: the backups from the highest number down,
    then a file waiting aside for its rotation, then the file being written."""
    backups = sorted((int(p.suffix[1:]) for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
                     reverse=True)
    aside = path.with_name(path.name + winlog.PENDING)
    return _lines(path, *(f".{n}" for n in backups), *([winlog.PENDING] * (aside.is_file() and not aside.is_symlink())),
                  "")


def _numbered(numbers: range) -> list[str]:
    return [f"line {n:03d} " + "x" * 40 for n in numbers]


def test_a_refused_rotation_loses_no_line_and_is_reported_once(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """While another process holds the file open, no backup moves, every line is still written, the refusal is one
    warning in the file (nothing on stderr), and the rename is tried again each tenth of the limit, not each
    line; once it is let go, the next try rotates and says after how many refusals."""
    held = HeldFiles()
    path = tmp_path / "OpenStackAgent.log"
    path.with_name("OpenStackAgent.log.1").write_text("line older\n")
    handler = winlog.rotating_file(str(path), max_bytes=1000, backups=2, rename=held.replace)
    handler.setFormatter(logging.Formatter("%(message)s"))
    held.hold(path)
    _write(handler, range(40))  # 48 bytes a line: about twice the limit
    size = path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OpenStackAgent.log", "OpenStackAgent.log.1"]
    assert _lines(path, "") == _numbered(range(40))
    warnings = [line for line in path.read_text().splitlines() if "cannot be rotated" in line]
    assert len(warnings) == 1 and HeldFiles.SHARING_VIOLATION in warnings[0]
    assert capsys.readouterr().err == ""
    assert set(held.attempts) == {(str(path), str(path) + winlog.PENDING)}
    assert 1 < len(held.attempts) <= 1 + (size - 1000) // 100
    refused = len(held.attempts)
    held.release(path)
    _write(handler, range(40, 45))
    handler.close()
    assert _lines(path, ".2", ".1", "") == ["line older", *_numbered(range(45))]
    assert path.read_text().splitlines()[0] == f"the log file rotated after {refused} refused attempts"


def _backups(path: Path, count: int) -> None:
    """Old files .1 to .``count``, each one line naming its number."""
    for number in range(1, count + 1):
        path.with_name(f"{path.name}.{number}").write_text(f"line backup {number}\n")


@pytest.mark.parametrize("held", [".1", ".3"])
def test_a_rotation_refused_by_a_held_backup_moves_nothing_and_its_retries_drop_no_backup(tmp_path: Path,
                                                                                          held: str) -> None:
    """A viewer on an old file refuses the shift: what moved is put back, so however often it is tried again only
    the oldest file (the one the rotation drops anyway) is gone; once it is let go, the rotations go on in order
    and no line is lost."""
    files = HeldFiles()
    path = tmp_path / "OpenStackAgent.log"
    _backups(path, 5)
    handler = winlog.rotating_file(str(path), max_bytes=500, backups=5, rename=files.replace)
    handler.setFormatter(logging.Formatter("%(message)s"))
    files.hold(path.with_name(path.name + held))
    _write(handler, range(60))  # about six times the limit: dozens of tries
    assert len(files.attempts) > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OpenStackAgent.log", *(f"OpenStackAgent.log.{n}"
                                                                                  for n in range(1, 5))]
    assert _in_order(path) == [*(f"line backup {n}" for n in range(4, 0, -1)), *_numbered(range(60))]
    files.release(path.with_name(path.name + held))
    _write(handler, range(60, 65))  # one rotation, the file that waited past its limit made .1
    handler.close()
    assert _in_order(path) == [*(f"line backup {n}" for n in range(4, 0, -1)), *_numbered(range(65))]
    assert path.with_name("OpenStackAgent.log.5").exists() and path.stat().st_size <= 500


def test_a_rotation_cut_short_by_a_crash_is_finished_by_the_next_without_losing_a_backup(tmp_path: Path) -> None:
    """A crash mid-shift leaves the full file aside and a gap among the old ones: the next rotation puts the file in
    place moving only the files below the gap, then rotates, so the order holds and the count is kept."""
    path = tmp_path / "OpenStackAgent.log"
    _backups(path, 5)  # the crash: the file moved aside, .4 to .5 (dropping the oldest) and .3 to .4 done
    path.with_name("OpenStackAgent.log.5").replace(path.with_name("OpenStackAgent.log.5.dropped"))
    for number in (4, 3):
        path.with_name(f"OpenStackAgent.log.{number}").replace(path.with_name(f"OpenStackAgent.log.{number + 1}"))
    path.with_name("OpenStackAgent.log.5.dropped").unlink()
    path.with_name(path.name + winlog.PENDING).write_text("line aside\n")
    handler = winlog.rotating_file(str(path), max_bytes=500, backups=5)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _write(handler, range(11))  # one rotation
    handler.close()
    assert not path.with_name(path.name + winlog.PENDING).exists()
    assert _in_order(path) == ["line backup 3", "line backup 2", "line backup 1", "line aside", *_numbered(range(11))]


@pytest.mark.parametrize("planted", ["directory", "link to a directory", "link to a file", "dangling link"])
def test_a_rotating_leftover_that_is_not_a_file_is_left_alone_and_rotated_around(tmp_path: Path, planted: str,
                                                                                 capsys: pytest.CaptureFixture[str]
                                                                                 ) -> None:
    """A .rotating the agent did not leave (a directory, a link) is not moved or followed: one line says what it is
    and to remove it, and the rotations go on without it, the file bounded and its lines in order."""
    logs_dir, elsewhere = tmp_path / "Logs", tmp_path / "elsewhere"
    logs_dir.mkdir()
    elsewhere.mkdir()
    (elsewhere / "file").write_text("not a log\n")
    path, pending = logs_dir / "OpenStackAgent.log", logs_dir / ("OpenStackAgent.log" + winlog.PENDING)
    if planted == "directory":
        pending.mkdir()
    else:
        pending.symlink_to({"link to a directory": elsewhere, "link to a file": elsewhere / "file",
                            "dangling link": elsewhere / "missing"}[planted])
    handler = winlog.rotating_file(str(path), max_bytes=500, backups=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _write(handler, range(40))  # about four rotations
    handler.close()
    assert sorted(p.name for p in logs_dir.iterdir()) == sorted([path.name, pending.name, *(
        f"OpenStackAgent.log.{n}" for n in (1, 2, 3))])
    assert pending.is_symlink() == (planted != "directory") and (elsewhere / "file").read_text() == "not a log\n"
    kept = _lines(path, ".3", ".2", ".1", "")
    assert kept == _numbered(range(40 - len(kept), 40)) and len(kept) > 20 and path.stat().st_size <= 500
    notes = [line for n in (".3", ".2", ".1", "") for line in path.with_name(path.name + n).read_text().splitlines()
             if not line.startswith("line ")]
    kind = "a directory" if planted == "directory" else "a link"
    assert notes == [f"{pending} is {kind}, not a file the agent left; the agent leaves it alone and rotates without "
                     "it (the full file moves straight to .1). Remove it"]
    assert capsys.readouterr().err == ""


def test_a_rotation_refused_by_something_else_than_a_held_file_says_so(tmp_path: Path) -> None:
    """A refusal that is no sharing violation (a directory where an old file goes) is reported with its error and
    what to do, not blamed on another process holding the file."""
    path = tmp_path / "OpenStackAgent.log"
    path.with_name("OpenStackAgent.log.1").write_text("line backup 1\n")
    (tmp_path / "OpenStackAgent.log.2").mkdir()
    (tmp_path / "OpenStackAgent.log.2" / "x").write_text("")
    handler = winlog.rotating_file(str(path), max_bytes=500, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _write(handler, range(20))
    handler.close()
    warnings = [line for line in path.read_text().splitlines() if "cannot be rotated" in line]
    assert len(warnings) == 1 and "OpenStackAgent.log.2" in warnings[0]
    assert warnings[0].endswith("Remove or fix what the error names") and "holds" not in warnings[0]
    assert _lines(path, ".1", "") == ["line backup 1", *_numbered(range(20))]


@pytest.mark.parametrize(("agent_log", "service_log"), [
    (r"C:\Windows\Logs\OpenStackAgent.log", r"C:\Windows\Logs\OpenStackAgent-service.log"),
    ("/var/log/agent", "/var/log/agent-service"),
    ("", "")])
def test_the_service_log_is_beside_the_agents(agent_log: str, service_log: str) -> None:
    """The service process's file is the agent's name with -service before its extension; none without one."""
    assert winlog.service_log_file(agent_log) == service_log


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
