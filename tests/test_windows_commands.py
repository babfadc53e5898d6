"""The Windows commands end to end: a real daemon on the WMI transport (the fake xeniface over the real
xenstored), given the ports a Windows agent has (the licensing port running a fake cscript that answers as
slmgr does, and the Windows files port with drive ``C:`` under a throw-away root), answering a host that uses
xenstored directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.host import Host
from agent.platform.windows_files import WindowsFiles, under
from agent.platform.windows_kms import Licensing
from agent.sandbox import Xenstored
from agent.xenstore_wmi import WmiXenStore
from tests.cli.conftest import run
from tests.conftest import ThreadAgent, open_journal
from tests.fakes.reparse import FakeAttributes
from tests.fakes.slmgr import NO_KMS_QUITS, NO_KMS_TEXT, FakeCscript, FakeLicensingWmi
from tests.fakes.xeniface import FakeXeniface

SERVER = "[2001:db8::5]:1688"
KEY = b"ssh-rsa AAAAB3-Windows-EndToEnd operator@example\r\n"


@pytest.fixture
def cscript(tmp_path: Path) -> FakeCscript:
    return FakeCscript(tmp_path / "cscript")


@pytest.fixture
def drives(tmp_path: Path) -> Path:
    (tmp_path / "drives/C/Users/Administrator").mkdir(parents=True)
    return tmp_path / "drives"


@pytest.fixture
def windows_agent(run_agent: Any, xenstored: Xenstored, domain: str, cscript: FakeCscript,
                  drives: Path) -> Callable[..., ThreadAgent]:
    """Start agents in threads on WMI with the Windows ports (``windows=False``: without them, as on Linux)."""

    def start(windows: bool = True, **overrides: Any) -> ThreadAgent:
        transport = WmiXenStore("", timeout=10, check_interval=0.2,
                                **FakeXeniface(xenstored.address, domain).modules())
        # What the daemon builds on Windows: drive paths (C: under a throw-away directory) and licensing.
        ports = {"files": WindowsFiles(drives=under(drives), attributes=FakeAttributes()),
                 "licensing": Licensing(cscript=str(cscript.path), slmgr=r"C:\Windows\System32\slmgr.vbs",
                                        modules=FakeLicensingWmi().modules())} if windows else {}
        return run_agent(transport=transport, ports=ports, domain_path="", **overrides)

    return start


@pytest.mark.parametrize(("windows", "listed"), [(True, True), (False, False)], ids=["windows", "linux"])
def test_features_list_kmsactivate_only_with_the_licensing_port(windows_agent: Any, host: Host, windows: bool,
                                                                listed: bool) -> None:
    """features offers kmsactivate where the agent has the licensing port, and nowhere else."""
    windows_agent(windows=windows)
    reply = host.call("features", "", timeout=20)
    assert reply["returncode"] == "0"
    assert ("kmsactivate" in reply["message"].split(",")) is listed


def test_kmsactivate_sets_the_server_and_activates(windows_agent: Any, host: Host, cscript: FakeCscript,
                                                   state_dir: Path) -> None:
    """The host's kmsactivate runs /skms then /ato once each and gets "0"; the journal has each step."""
    windows_agent()
    assert host.call("kmsactivate", SERVER, timeout=20) == {
        "returncode": "0", "message": f"KMS server set to {SERVER}; Windows activated (Product activated "
                                      "successfully.)"}
    assert cscript.options() == [f"/skms {SERVER}", "/ato"]
    command, = open_journal(state_dir).commands(name="kmsactivate")
    assert command.state == "done"


def test_an_unreachable_kms_server_is_a_500(windows_agent: Any, host: Host, cscript: FakeCscript) -> None:
    """slmgr's error reaches the host, saying the server was set but activation failed."""
    cscript.answer("/ato", NO_KMS_QUITS)
    windows_agent()
    reply = host.call("kmsactivate", SERVER, timeout=20)
    assert reply["returncode"] == "500"
    assert reply["message"].startswith(f"The KMS server was set to {SERVER}, but activation failed: slmgr /ato "
                                       f"failed with exit status 116: {NO_KMS_TEXT[:80]}")


def test_a_bad_value_is_refused_before_slmgr_runs(windows_agent: Any, host: Host, cscript: FakeCscript) -> None:
    """A value with a shell character never reaches a command line."""
    windows_agent()
    reply = host.call("kmsactivate", "kms.example.com:1688&calc", timeout=20)
    assert reply["returncode"] == "500" and reply["message"].startswith("Invalid kmsactivate value: ")
    assert cscript.options() == []


def test_a_linux_agent_does_not_run_kmsactivate(windows_agent: Any, host: Host) -> None:
    """Without the licensing port the command fails clearly."""
    windows_agent(windows=False)
    assert host.call("kmsactivate", SERVER, timeout=20) == {"returncode": "500",
                                                            "message": "this agent has no licensing backend"}


@pytest.mark.parametrize("format", ["new", "legacy"])
def test_injectfile_with_a_drive_path(windows_agent: Any, host: Host, drives: Path, format: Any) -> None:
    """injectfile and file_inject write a drive path through the Windows files port."""
    windows_agent()
    reply = host.inject_file("C:/Users/Administrator/.ssh/authorized_keys", KEY, format=format, timeout=20)
    assert reply == {"returncode": "0", "message": ""}
    assert (drives / "C/Users/Administrator/.ssh/authorized_keys").read_bytes() == KEY


def test_a_symbolic_link_on_the_way_is_refused(windows_agent: Any, host: Host, drives: Path, tmp_path: Path) -> None:
    """A symbolic link in a drive path is refused end to end; nothing is written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (drives / "C/Users/Administrator/.ssh").symlink_to(outside)
    windows_agent()
    reply = host.inject_file(r"C:\Users\Administrator\.ssh\authorized_keys", KEY, timeout=20)
    assert reply["returncode"] == "500" and "is a symbolic link, and the agent follows none" in reply["message"]
    assert list(outside.iterdir()) == []


def test_host_cli_sends_kmsactivate(windows_agent: Any, xenstored: Xenstored, domain: str,
                                    cscript: FakeCscript) -> None:
    """'host kmsactivate HOST:PORT' sends the call and prints the agent's reply."""
    windows_agent()
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "--json", "kmsactivate",
                    "kms.example.com:1688")
    assert (code, json.loads(out)["returncode"]) == (0, "0")
    assert cscript.options() == ["/skms kms.example.com:1688", "/ato"]
