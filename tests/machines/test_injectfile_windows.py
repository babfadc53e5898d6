"""injectfile and file_inject with drive paths, through the Windows files port under a throw-away root (drive
``C:`` is ``<root>/C``): written, resumed after an interruption without a second write, and refused inside the
agent's own directories by name (ignoring case, as Windows does) and by identity."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import from_overrides
from agent.journal import Journal
from agent.machines import REGISTRY
from agent.machines.base import Command, Context, stored_value
from agent.machines.injectfile import FileInject, InjectFile
from agent.platform.windows_files import WindowsFiles, lstat_attributes, under
from agent.ports import Ports
from agent.protocol import Request
from tests.machines import stopping_at
from tests.machines.test_injectfile import MARKER, NOON, CountingWrites, value_for

KEYS = r"C:\Users\Administrator\.ssh\authorized_keys"
MACHINES = [InjectFile, FileInject]


class CountingWindowsFiles(CountingWrites, WindowsFiles):
    """The Windows files port, counting its writes."""


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path / "state")


@pytest.fixture
def drives(tmp_path: Path) -> Path:
    (tmp_path / "drives/C/Users/Administrator").mkdir(parents=True)
    return tmp_path / "drives"


def port(drives: Path) -> CountingWindowsFiles:
    return CountingWindowsFiles(drives=under(drives), attributes=lstat_attributes, clock=lambda: NOON)


def command(journal: Journal, machine: type[Command], value: Any, files: WindowsFiles, **config: Any) -> Command:
    record = journal.find_request("r")
    if record is None:
        record = journal.receive("r", "", machine.NAME, machine.NAME, "0" * 64, stored_value(machine, value))
    ctx = Context(journal=journal, config=from_overrides(**config), ports=Ports(files=files),
                  request=Request("r", machine.NAME, value, "0" * 64))
    return machine(record, ctx)


@pytest.mark.parametrize("machine", MACHINES)
def test_a_drive_path_is_written(journal: Journal, drives: Path, machine: type[Command]) -> None:
    """The command writes the file at its drive path and journals the normalised path."""
    files = port(drives)
    cmd = command(journal, machine, value_for(machine, "c:/Users/Administrator/.ssh/authorized_keys", MARKER), files)
    cmd.run()
    assert (cmd.state, cmd.record.reply_code) == ("done", "0")
    assert cmd.data.path == KEYS and cmd.data.created is True
    assert (drives / "C/Users/Administrator/.ssh/authorized_keys").read_bytes() == MARKER


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("written", [False, True], ids=["not-yet", "already"])
def test_an_interrupted_write_resumes_once(journal: Journal, drives: Path, machine: type[Command],
                                           written: bool) -> None:
    """Stopped in writing: the resume writes the file, or finds it in place and does not write it again."""
    files = port(drives)
    value = value_for(machine, KEYS, MARKER)
    cmd = command(journal, stopping_at(machine, "writing"), value, files)
    cmd.run()
    if written:
        files.write(KEYS, MARKER)
    resumed = command(journal, REGISTRY[machine.NAME], value, files)
    resumed.run(recovery=True)
    assert (resumed.state, resumed.record.reply_code, files.writes) == ("done", "0", 1)
    assert (drives / "C/Users/Administrator/.ssh/authorized_keys").read_bytes() == MARKER


def test_the_agents_own_directory_is_refused_by_name(journal: Journal, drives: Path) -> None:
    """A path inside the state directory is refused whatever the case of its letters."""
    files = port(drives)
    path = r"c:\programdata\openstackagent\journal.sqlite"
    cmd = command(journal, InjectFile, value_for(InjectFile, path, MARKER), files,
                  state_dir=r"C:\ProgramData\OpenStackAgent")
    cmd.run()
    normalised = "C" + path[1:]
    assert cmd.record.reply_message == (f"Refused to write {normalised!r}: it is inside the agent's own state "
                                        r"directory C:\ProgramData\OpenStackAgent")
    assert not (drives / "C/programdata").exists() and files.writes == 0


def test_the_agents_own_directory_is_refused_by_identity(journal: Journal, drives: Path) -> None:
    """A drive path that leads to the state directory (found where the port puts it) is refused."""
    files = port(drives)
    state = drives / "C/var/lib/openstack-agent"
    state.mkdir(parents=True)
    cmd = command(journal, InjectFile, value_for(InjectFile, r"C:\var\lib\openstack-agent\x.txt", MARKER), files,
                  root=str(drives / "C"))
    cmd.run()
    assert cmd.record.reply_code == "500"
    assert "it is inside the agent's own state directory /var/lib/openstack-agent" in (cmd.record.reply_message or "")
    assert os.listdir(state) == [] and files.writes == 0


@pytest.mark.parametrize("path", [r"C:\Program Files\OpenStack\Agent\_internal\python311.dll",
                                  r"c:/program files/openstack/agent/openstack-agent.exe"])
def test_the_frozen_builds_own_folder_is_refused(journal: Journal, drives: Path, monkeypatch: pytest.MonkeyPatch,
                                                 path: str) -> None:
    """The folder the running frozen build was installed in (the MSI's, outside install_root) is refused,
    whatever the case of its letters."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", r"C:\Program Files\OpenStack\Agent\openstack-agent.exe")
    files = port(drives)
    cmd = command(journal, InjectFile, value_for(InjectFile, path, MARKER), files,
                  state_dir=r"C:\ProgramData\OpenStackAgent")
    cmd.run()
    assert cmd.record.reply_code == "500"
    assert (cmd.record.reply_message or "").endswith(
        r"it is inside the agent's own program directory C:\Program Files\OpenStack\Agent")
    assert not (drives / "C/Program Files").exists() and files.writes == 0
