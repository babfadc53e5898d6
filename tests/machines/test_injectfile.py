"""injectfile and file_inject machines, replayed step by step on a real journal and the files port in a
throw-away root: each state, illegal events, every interruption resumed, refusals, and no contents kept."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from transitions import MachineError

import agent
from agent.config import from_overrides
from agent.errors import CommandFailed, PlatformError
from agent.journal import Journal
from agent.machines import REGISTRY
from agent.machines.base import Command, Context, stored_value
from agent.machines.injectfile import BAD_BASE64, FileInject, InjectFile, program_directories
from agent.platform.files import Files, temp_name
from agent.ports import Ports
from agent.protocol import Request
from tests.machines import stopping_at

MARKER = b"ssh-ed25519 AAAAC3-InjectFile-Marker-7Qx9 operator@example\n"
NOON = datetime(2026, 11, 24, 5, 15, tzinfo=UTC)
MACHINES = [InjectFile, FileInject]
WITHDRAWN = CommandFailed("500", "Request was withdrawn by the host before the agent could finish it")


#: The agent package's directory: the running agent's own code.
PACKAGE = str(Path(agent.__file__).resolve().parent)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def value_for(machine: type[Command], path: str, contents: bytes) -> Any:
    """The request's value as nova's plugin builds it for this command."""
    if machine is InjectFile:
        return b64(path.encode() + b"," + contents)
    return {"b64_path": b64(path.encode()), "b64_file": b64(contents)}


class CountingWrites:
    """Mixed into a files port (before it): counts its writes."""

    writes = 0

    def write(self, path: str, contents: bytes) -> Any:
        self.writes += 1
        return super().write(path, contents)  # type: ignore[misc]


class CountingFiles(CountingWrites, Files):
    """The real files port, counting its writes."""


class FullDisk(Files):
    """A files port whose writes fail as a full disk does (the real one is in tests/platform and end to end)."""

    def write(self, path: str, contents: bytes) -> Any:
        raise PlatformError(f"cannot write {path!r}: the disk is full (ENOSPC: no space left on device); "
                            "nothing was changed")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path / "state")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A throw-away guest root with an /etc/motd of mode 0644 owned by 1001:1002."""
    top = tmp_path / "root"
    (top / "etc").mkdir(parents=True)
    (top / "etc/motd").write_bytes(b"old motd\n")
    os.chown(top / "etc/motd", 1001, 1002)
    (top / "etc/motd").chmod(0o644)
    return top


def files_port(root: Path, cls: type[Files] = CountingFiles, **kwargs: Any) -> Files:
    return cls(root, selinux=False, clock=lambda: NOON, **kwargs)


def command(journal: Journal, machine: type[Command], value: Any, files: Files | None,
            rejection: CommandFailed | None = None, request_id: str = "r") -> Command:
    """A journaled command of ``machine`` (which may be a subclass that stops early), as the daemon makes it."""
    record = journal.find_request(request_id)
    if record is None:
        record = journal.receive(request_id, "", machine.NAME, machine.NAME, "0" * 64, stored_value(machine, value))
    ctx = Context(journal=journal, config=from_overrides(), ports=Ports(files=files),
                  request=Request(request_id, machine.NAME, value, "0" * 64, rejection))
    return machine(record, ctx)


def resume(journal: Journal, cmd: Command, machine: type[Command] | None = None, files: Files | None = None,
           rejection: CommandFailed | None = None) -> Command:
    """The next process: the command as journaled, run in recovery by ``machine`` (the real one by default)."""
    machine = machine or REGISTRY[cmd.NAME]
    resumed = command(journal, machine, cmd.ctx.request.value, files or cmd.ctx.ports.files, rejection)
    resumed.run(recovery=True)
    return resumed


def details(journal: Journal, cmd: Command) -> list[dict[str, Any]]:
    return [json.loads(t.detail) for t in journal.transitions(cmd.record.id)]


def backups(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{name}.bak."))


def snapshot(top: Path) -> dict[str, Any]:
    """Every entry under ``top``, with its kind, mode, owner and contents; no link followed."""
    found: dict[str, Any] = {}
    for entry in [top, *top.rglob("*")]:
        info = entry.lstat()
        body = entry.read_bytes() if stat.S_ISREG(info.st_mode) else os.readlink(entry) if entry.is_symlink() else None
        found[str(entry.relative_to(top))] = (info.st_mode, info.st_uid, info.st_gid, body)
    return found


# -- the steps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(("path", "existing"), [("/etc/motd", True), ("/root/.ssh/authorized_keys", False)],
                         ids=["replace", "new"])
def test_each_step(journal: Journal, root: Path, machine: type[Command], path: str, existing: bool) -> None:
    """Each step, run by its own process, journals the next state; only ``writing`` touches the file."""
    files = files_port(root)
    target = root / path.lstrip("/")
    cmd = command(journal, stopping_at(machine, "writing"), value_for(machine, path, MARKER), files)
    assert cmd.state == "received"
    cmd.run()
    assert cmd.state == "writing"
    assert cmd.data.path == path and cmd.data.size == len(MARKER)
    assert cmd.data.sha256 == hashlib.sha256(MARKER).hexdigest()
    assert target.exists() is existing and (not existing or target.read_bytes() == b"old motd\n")

    cmd = resume(journal, cmd, stopping_at(machine, "written"))
    assert cmd.state == "written"
    assert target.read_bytes() == MARKER
    mode = stat.S_IMODE(target.stat().st_mode)
    if existing:
        assert (mode, target.stat().st_uid, target.stat().st_gid) == (0o644, 1001, 1002)
        assert backups(target.parent, "motd") == ["motd.bak.20261124T051500Z"]
        assert (target.parent / "motd.bak.20261124T051500Z").read_bytes() == b"old motd\n"
        assert (cmd.data.backup, cmd.data.created, cmd.data.mode) == ("/etc/motd.bak.20261124T051500Z", False, "0644")
    else:
        assert mode == 0o600 and stat.S_IMODE(target.parent.stat().st_mode) == 0o700
        assert (cmd.data.backup, cmd.data.created, cmd.data.mode) == (None, True, "0600")

    cmd = resume(journal, cmd)
    assert (cmd.state, cmd.record.reply_code, cmd.record.reply_message) == ("done", "0", "")
    assert [t.trigger for t in journal.transitions(cmd.record.id)] == ["receive", "write", "wrote", "answer"]
    assert files.writes == 1  # type: ignore[attr-defined]
    assert journal.verify().ok


ILLEGAL = [("received", "wrote"), ("received", "answer"), ("writing", "write"), ("writing", "answer"),
           ("written", "write"), ("written", "wrote")]


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_an_illegal_event_changes_nothing(journal: Journal, root: Path, machine: type[Command], state: str,
                                          trigger: str) -> None:
    """An event the state does not take raises MachineError; the state and the journal stay as they were."""
    cmd = command(journal, stopping_at(machine, state), value_for(machine, "/etc/motd", MARKER), files_port(root))
    if state != "received":
        cmd.run()
    assert cmd.state == state
    before = journal.transitions(cmd.record.id)
    with pytest.raises(MachineError):
        cmd.advance(trigger)
    assert cmd.state == state
    assert journal.transitions(cmd.record.id) == before


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("state", ["writing", "written"])
def test_an_interruption_anywhere_gives_one_whole_write(journal: Journal, root: Path, machine: type[Command],
                                                        state: str) -> None:
    """Stopped on entering any working state and resumed: the new file whole, one backup, one write, "0"."""
    files = files_port(root)
    cmd = command(journal, stopping_at(machine, state), value_for(machine, "/etc/motd", MARKER), files)
    cmd.run()
    assert cmd.state == state
    cmd = resume(journal, cmd)
    assert (cmd.state, cmd.record.reply_code) == ("done", "0")
    assert (root / "etc/motd").read_bytes() == MARKER
    assert backups(root / "etc", "motd") == ["motd.bak.20261124T051500Z"]
    assert files.writes == 1  # type: ignore[attr-defined]


# -- resuming ``writing`` ---------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("keep_backups", [True, False])
def test_resumed_writing_with_the_file_in_place_does_not_write_again(journal: Journal, root: Path,
                                                                     machine: type[Command],
                                                                     keep_backups: bool) -> None:
    """A write done but not journaled is seen by its digest: no second write, no second backup."""
    first = files_port(root, keep_backups=keep_backups)
    cmd = command(journal, stopping_at(machine, "writing"), value_for(machine, "/etc/motd", MARKER), first)
    cmd.run()
    first.write("/etc/motd", MARKER)  # the dying process's write
    inode = (root / "etc/motd").stat().st_ino
    made = backups(root / "etc", "motd")
    assert len(made) == (1 if keep_backups else 0)

    files = files_port(root, keep_backups=keep_backups)
    cmd = resume(journal, cmd, files=files)
    assert (cmd.state, cmd.record.reply_code, cmd.record.reply_message) == ("done", "0", "")
    assert files.writes == 0  # type: ignore[attr-defined]
    assert (root / "etc/motd").stat().st_ino == inode, "the file was written again"
    assert backups(root / "etc", "motd") == made, "a second backup was made"
    assert details(journal, cmd)[2] == {"already_in_place": True, "temp_removed": False}


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("path", ["/etc/motd", "/etc/new-file"])
def test_resumed_writing_removes_a_leftover_and_writes(journal: Journal, root: Path, machine: type[Command],
                                                       path: str) -> None:
    """An interrupted write's temporary file is removed, never finished, and the file written whole."""
    cmd = command(journal, stopping_at(machine, "writing"), value_for(machine, path, MARKER), files_port(root))
    cmd.run()
    name = path.rsplit("/", 1)[1]
    leftover = root / "etc" / temp_name(name)
    leftover.write_bytes(MARKER[:7])  # cut short by the crash
    files = files_port(root)
    cmd = resume(journal, cmd, files=files)
    assert (cmd.state, cmd.record.reply_code) == ("done", "0")
    assert not leftover.exists()
    assert (root / path.lstrip("/")).read_bytes() == MARKER
    assert files.writes == 1  # type: ignore[attr-defined]
    assert details(journal, cmd)[2]["temp_removed"] is True
    assert sorted(p.name for p in (root / "etc").iterdir() if p.name.startswith(f".{name}")) == []


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("in_place", [True, False], ids=["written-before", "not-written"])
def test_withdrawn_request_in_writing(journal: Journal, root: Path, machine: type[Command], in_place: bool) -> None:
    """A request withdrawn during a crash: "0" if the file is in place, else the withdrawal; no leftover."""
    files = files_port(root)
    cmd = command(journal, stopping_at(machine, "writing"), value_for(machine, "/etc/motd", MARKER), files)
    cmd.run()
    if in_place:
        files.write("/etc/motd", MARKER)
    (root / "etc" / temp_name("motd")).write_bytes(b"partial")
    cmd = resume(journal, cmd, rejection=WITHDRAWN)
    expected = ("0", "") if in_place else (WITHDRAWN.returncode, WITHDRAWN.message)
    assert (cmd.record.reply_code, cmd.record.reply_message) == expected
    assert (root / "etc/motd").read_bytes() == (MARKER if in_place else b"old motd\n")
    assert not (root / "etc" / temp_name("motd")).exists()


# -- what the journal keeps -----------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
def test_the_journal_holds_path_size_digest_and_backup_never_the_contents(journal: Journal, root: Path,
                                                                         tmp_path: Path,
                                                                         machine: type[Command]) -> None:
    """The journal keeps path, size, SHA-256, backup and mode, never the contents or the value."""
    value = value_for(machine, "/etc/motd", MARKER)
    cmd = command(journal, machine, value, files_port(root))
    cmd.run()
    assert cmd.record.value is None, "the request's value was stored"
    write, wrote = details(journal, cmd)[1:3]
    digest = hashlib.sha256(MARKER).hexdigest()
    assert write == {"path": "/etc/motd", "size": len(MARKER), "sha256": digest}
    assert wrote == {"backup": "/etc/motd.bak.20261124T051500Z", "created": False, "mode": "0644", "uid": 1001,
                     "gid": 1002, "temp_removed": False}
    assert json.loads(cmd.record.data or "") == {"path": "/etc/motd", "size": len(MARKER), "sha256": digest,
                                                 "backup": "/etc/motd.bak.20261124T051500Z", "created": False,
                                                 "mode": "0644"}
    encoded = json.dumps(value).encode()
    for path in (tmp_path / "state").iterdir():
        data = path.read_bytes()
        assert MARKER.strip() not in data and encoded not in data, f"{path.name} holds the contents"
        assert b"AAAAC3-InjectFile-Marker" not in data, f"{path.name} holds the contents"


# -- refusals ---------------------------------------------------------------------------------------------

NO_COMMA = ('Invalid injectfile value: expected base64 of "<path>,<contents>"; the decoded value has no comma '
            "between the path and the contents")
NEW_USAGE = 'expected a JSON object {"b64_path": <base64 path>, "b64_file": <base64 contents>}'


@pytest.mark.parametrize(("machine", "value", "message"), [
    (InjectFile, "%%% not base64 %%%", BAD_BASE64),
    (InjectFile, "QUJ", BAD_BASE64),
    (InjectFile, 42, f'{BAD_BASE64}: expected base64 of "<path>,<contents>", got int'),
    (InjectFile, b64(b"/etc/motd but no comma " + MARKER), NO_COMMA),
    (InjectFile, b64(b"\xff\xfe/etc/motd,x"), "Invalid injectfile value: the path is not UTF-8 text"),
    (FileInject, "/etc/motd", f"Invalid file_inject value: {NEW_USAGE}, got str"),
    (FileInject, ["/etc/motd"], f"Invalid file_inject value: {NEW_USAGE}, got list"),
    (FileInject, {"b64_file": b64(MARKER)}, f"Invalid file_inject value: 'b64_path' is missing; {NEW_USAGE}"),
    (FileInject, {"b64_path": b64(b"/etc/motd")}, f"Invalid file_inject value: 'b64_file' is missing; {NEW_USAGE}"),
    (FileInject, {"b64_path": 7, "b64_file": b64(MARKER)},
     "Invalid file_inject value: 'b64_path' must be a base64 string, got int"),
    (FileInject, {"b64_path": b64(b"/etc/motd"), "b64_file": None},
     "Invalid file_inject value: 'b64_file' must be a base64 string, got NoneType"),
    (FileInject, {"b64_path": "/etc/motd", "b64_file": b64(MARKER)}, f"{BAD_BASE64}: 'b64_path' is not base64"),
    (FileInject, {"b64_path": b64(b"/etc/motd"), "b64_file": "not*base64"}, f"{BAD_BASE64}: 'b64_file' is not base64"),
    (FileInject, {"b64_path": b64(b"\xff/etc/motd"), "b64_file": ""},
     "Invalid file_inject value: the path is not UTF-8 text"),
])
def test_malformed_values_are_refused_before_any_effect(journal: Journal, root: Path, machine: type[Command],
                                                        value: Any, message: str) -> None:
    """An undecodable value fails from ``received`` with "500" saying what is wrong; nothing written."""
    before = snapshot(root)
    cmd = command(journal, machine, value, files_port(root))
    cmd.run()
    assert (cmd.state, cmd.record.reply_code, cmd.record.reply_message) == ("failed", "500", message)
    assert [t.source for t in journal.transitions(cmd.record.id)][-1] == "received"
    assert snapshot(root) == before
    assert "Marker" not in message


def link_out(root: Path, outside: Path) -> str:
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to(outside / "victim")
    return "/etc/motd"


def parent_link(root: Path, outside: Path) -> str:
    (root / "root").symlink_to(outside)
    return "/root/.ssh/authorized_keys"


def directory(root: Path, outside: Path) -> str:
    return "/etc"


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(("case", "options", "reason"), [
    ("relative", {}, "the path is relative"),
    ("dotdot", {}, "the path has a '..' component"),
    ("nul", {}, "the path contains a NUL character"),
    ("trailing-slash", {}, "the path names a directory, not a file"),
    ("windows", {}, "it is a Windows path"),
    ("policy", {"allowed_paths": ("/root/.ssh/*",)}, "the policy does not allow this path"),
    ("size", {"max_size": 8}, f"{len(MARKER)} bytes is more than the 8 bytes inject.max_size allows"),
    ("link_out", {}, "it is a symbolic link, and the agent follows none"),
    ("parent_link", {}, "'/root' is a symbolic link, and the agent follows none"),
    ("directory", {}, "the path names a directory, not a file"),
])
def test_refused_paths(journal: Journal, root: Path, tmp_path: Path, machine: type[Command], case: str,
                       options: dict[str, Any], reason: str) -> None:
    """A refusal is "500" naming the path and reason; nothing written inside or outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    paths = {"relative": "etc/motd", "dotdot": "/etc/../etc/motd", "nul": "/etc/mo\0td",
             "trailing-slash": "/etc/motd/", "windows": "C:\\Windows\\motd", "policy": "/etc/motd",
             "size": "/etc/motd"}
    setups = {"link_out": link_out, "parent_link": parent_link, "directory": directory}
    path = setups[case](root, outside) if case in setups else paths[case]
    before, there = snapshot(root), snapshot(outside)
    cmd = command(journal, machine, value_for(machine, path, MARKER), files_port(root, **options))
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("failed", "500")
    message = cmd.record.reply_message or ""
    if case == "relative" and machine is InjectFile:  # legacy: never quoted, it may be no path at all
        assert message.endswith("the text before the first comma is not an absolute path"), message
    else:
        assert message.startswith(f"Refused to write {path!r}: ") and reason in message, message
    assert snapshot(root) == before and snapshot(outside) == there
    assert "Marker" not in message
    checked_early = case not in setups  # the rest needs the disk: the write itself refuses
    assert ("writing" in [t.dest for t in journal.transitions(cmd.record.id)]) is not checked_early


@pytest.mark.parametrize("machine", MACHINES)
def test_a_failed_write_is_the_reply(journal: Journal, root: Path, machine: type[Command]) -> None:
    """The system failing the write (a full disk) fails the command from ``writing`` with the port's reason."""
    cmd = command(journal, machine, value_for(machine, "/etc/motd", MARKER), files_port(root, FullDisk))
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("failed", "500")
    assert cmd.record.reply_message == ("Cannot write '/etc/motd': the disk is full (ENOSPC: no space left on "
                                        "device); nothing was changed")
    assert [t.dest for t in journal.transitions(cmd.record.id)] == ["received", "writing", "failed"]


def test_no_files_port_is_a_clear_failure(journal: Journal) -> None:
    """An agent without a files backend answers "500" saying so."""
    cmd = command(journal, FileInject, value_for(FileInject, "/etc/motd", MARKER), None)
    cmd.run()
    assert (cmd.record.reply_code, cmd.record.reply_message) == ("500", "this agent has no files backend")


def test_the_legacy_value_splits_at_the_first_comma(journal: Journal, root: Path) -> None:
    """Contents may hold commas; the path cannot (it ends at the first one)."""
    contents = b"a,b,,c\n" + MARKER
    cmd = command(journal, InjectFile, value_for(InjectFile, "/etc/csv", contents), files_port(root))
    cmd.run()
    assert cmd.record.reply_code == "0"
    assert (root / "etc/csv").read_bytes() == contents


def test_empty_contents_make_an_empty_file(journal: Journal, root: Path) -> None:
    """An empty file is a file: written, not refused."""
    cmd = command(journal, FileInject, value_for(FileInject, "/etc/empty", b""), files_port(root))
    cmd.run()
    assert cmd.record.reply_code == "0" and (root / "etc/empty").read_bytes() == b""


# -- giving up after a crash loop ---------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(("state", "in_place", "reply"), [
    ("received", False, "Agent command '{name}' was interrupted 2 times; not retrying it, to stop a crash loop"),
    ("writing", False, "Agent command '{name}' was interrupted 2 times; '/etc/motd' was not written (the file "
                       "there, if any, is as it was); not retrying it, to stop a crash loop"),
    ("writing", True, ""),
    ("written", True, ""),
])
def test_giving_up_tells_the_truth(journal: Journal, root: Path, machine: type[Command], state: str,
                                   in_place: bool, reply: str) -> None:
    """A crash-looping command says whether the file is in place, and leaves no temporary file."""
    files = files_port(root)
    cmd = command(journal, stopping_at(machine, state), value_for(machine, "/etc/motd", MARKER), files)
    if state != "received":
        cmd.run()
    if state == "writing":
        if in_place:
            files.write("/etc/motd", MARKER)
        (root / "etc" / temp_name("motd")).write_bytes(b"partial")
    stopped = command(journal, machine, cmd.ctx.request.value, files_port(root))
    stopped.give_up(3)
    expected = ("0", "") if in_place else ("500", reply.format(name=machine.NAME))
    assert (stopped.record.reply_code, stopped.record.reply_message) == expected
    assert (root / "etc/motd").read_bytes() == (MARKER if in_place else b"old motd\n")
    if state == "writing":
        assert not (root / "etc" / temp_name("motd")).exists()
    assert stopped.ctx.ports.files.writes == 0


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(("path", "what"), [
    ("/var/lib/openstack-agent/journal.sqlite3", "state directory /var/lib/openstack-agent"),
    ("/var/lib/openstack-agent", "state directory /var/lib/openstack-agent"),
    ("/opt/openstack-agent/current/bin/openstack-agent", "install directory /opt/openstack-agent"),
])
def test_the_agents_own_directories_are_refused(journal: Journal, root: Path, machine: type[Command], path: str,
                                                what: str) -> None:
    """The host cannot replace the agent's journal or a release, whatever inject.allowed_paths allows."""
    before = snapshot(root)
    cmd = command(journal, machine, value_for(machine, path, b"Marker"), files_port(root))
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("failed", "500")
    assert cmd.record.reply_message == f"Refused to write '{path}': it is inside the agent's own {what}"
    assert snapshot(root) == before


@pytest.mark.parametrize("machine", MACHINES)
def test_the_running_agents_own_code_is_refused(journal: Journal, root: Path, machine: type[Command]) -> None:
    """The package the agent runs from is refused by name, wherever it was installed."""
    package = Path(agent.__file__).resolve().parent
    cmd = command(journal, machine, value_for(machine, str(package / "daemon.py"), b"Marker"), files_port(root))
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("failed", "500")
    assert cmd.record.reply_message == (f"Refused to write '{package}/daemon.py': it is inside the agent's own "
                                        f"program directory {package}")


@pytest.mark.parametrize("machine", MACHINES)
def test_the_virtual_environment_the_agent_runs_from_is_refused(journal: Journal, root: Path, machine: type[Command],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtual environment outside install_root that the agent runs from, reached through the root, is refused
    by identity."""
    venv = root / "srv/venv"
    (venv / "bin").mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    before = snapshot(root)
    record = journal.receive("own", "", machine.NAME, machine.NAME, "0" * 64, None)
    ctx = Context(journal=journal, config=from_overrides(root=str(root)), ports=Ports(files=files_port(root)),
                  request=Request("own", machine.NAME, value_for(machine, "/srv/venv/bin/python3", MARKER), "0" * 64))
    cmd = machine(record, ctx)
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("failed", "500")
    assert f"it is inside the agent's own program directory {venv}" in (cmd.record.reply_message or "")
    assert snapshot(root) == before


@pytest.mark.parametrize(("frozen", "executable", "prefix", "expected"), [
    (True, r"C:\Program Files\OpenStack\Agent\openstack-agent.exe", None, [r"C:\Program Files\OpenStack\Agent"]),
    (True, "/opt/agent/openstack-agent", None, ["/opt/agent"]),
    (False, "/usr/bin/python3", "/srv/venv", [PACKAGE, "/srv/venv"]),
    (False, "/usr/bin/python3", None, [PACKAGE]),
], ids=["frozen-windows", "frozen-posix", "venv", "system-python"])
def test_program_directories(monkeypatch: pytest.MonkeyPatch, frozen: bool, executable: str, prefix: str | None,
                             expected: list[str]) -> None:
    """A frozen build's folder, else the package and the virtual environment it runs in (if it does)."""
    monkeypatch.setattr(sys, "frozen", frozen, raising=False)
    monkeypatch.setattr(sys, "executable", executable)
    monkeypatch.setattr(sys, "prefix", prefix or sys.base_prefix)
    assert program_directories() == expected


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("target", ["/srv/agentstate/journal.sqlite3", "/etc/openstack-agent/agent.toml"])
def test_the_agents_own_directories_are_refused_by_their_real_names(journal: Journal, root: Path,
                                                                     machine: type[Command], target: str) -> None:
    """A state directory reached through a link an operator made, and the configuration directory, are
    refused under their real names too: compared by device and inode, not by spelling."""
    (root / "srv/agentstate").mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/openstack-agent").symlink_to("../../srv/agentstate")
    (root / "etc/openstack-agent").mkdir(parents=True, exist_ok=True)
    before = snapshot(root)
    record = journal.receive("own", "", machine.NAME, machine.NAME, "0" * 64, None)
    ctx = Context(journal=journal, config=from_overrides(root=str(root)), ports=Ports(files=files_port(root)),
                  request=Request("own", machine.NAME, value_for(machine, target, MARKER), "0" * 64))
    cmd = machine(record, ctx)
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("failed", "500")
    assert "it is inside the agent's own" in (cmd.record.reply_message or "")
    assert snapshot(root) == before


def test_a_legacy_value_without_a_path_is_never_quoted(journal: Journal, root: Path) -> None:
    """A legacy value whose text before the comma is no absolute path (a secret holding a comma, say) is
    refused without repeating any of it."""
    cmd = command(journal, InjectFile, b64(b"Secret-Marker-Part,rest of it"), files_port(root))
    cmd.run()
    assert cmd.record.reply_code == "500" and "Secret-Marker" not in (cmd.record.reply_message or "")
