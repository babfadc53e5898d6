"""``openstack-agent service install|remove|start|stop``: on Linux, the message saying what to use instead; with
the fake SCM and pywin32 (``tests/fakes/win32service.py``) injected, each command's exact output."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent import winservice
from agent.cli import service as service_cli
from tests.cli.conftest import run
from tests.fakes.win32service import PYTHONSERVICE, FakeSCM
from tests.test_winservice import Hosted, hosted  # noqa: F401 - the fixture, shared with the service's tests

NOT_WINDOWS = ("Error: the 'service' commands manage the Windows service and work only on Windows; on this system "
               "the agent runs under systemd: 'openstack-agent install --service BUNDLE' installs and enables its "
               "unit (openstack-agent.service), then 'systemctl start openstack-agent' or 'systemctl stop "
               "openstack-agent'\n")


@pytest.mark.parametrize("argv", [["service"], ["service", "install"], ["service", "remove"],
                                  ["service", "start"], ["service", "stop", "--wait", "5"], ["service", "run"]])
def test_elsewhere_the_service_commands_say_what_to_use(argv: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """On Linux every service command fails with exit 9 and names the systemd unit and its commands."""
    assert run(*argv) == (9, "")
    assert capsys.readouterr().err == NOT_WINDOWS


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeSCM], None]:
    """``windows(scm)``: the service commands act as on Windows, on ``scm``'s pywin32."""
    def use(scm: FakeSCM) -> None:
        monkeypatch.setattr(service_cli, "WINDOWS", True)
        monkeypatch.setattr(winservice.Win32, "load", classmethod(lambda cls: scm.win32()))

    return use


def test_install_and_remove(windows: Callable[[FakeSCM], None]) -> None:
    """install prints what it set up; remove on the stopped service deletes it and its event source."""
    scm = FakeSCM()
    windows(scm)
    assert run("service", "install") == (0, (
        "service     OpenStackAgent installed\n"
        f'runs        "{PYTHONSERVICE}"\n'
        "start       automatic\n"
        "on failure  restart after 5 s, 5 s, 60 s\n"
        "event log   source OpenStackAgent in the Application log\n"))
    assert run("service", "remove") == (0, (
        "service    OpenStackAgent removed\n"
        "was        not running\n"
        "event log  source OpenStackAgent removed (its past events stay in the log)\n"))
    assert scm.services == {} and scm.sources == {}


def test_start_and_stop(windows: Callable[[FakeSCM], None], hosted: Callable[..., Hosted]) -> None:  # noqa: F811
    """start waits until the agent serves, stop until it has stopped, each saying where the service is."""
    service = hosted()
    windows(service.scm)
    assert run("service", "start") == (0, "service  OpenStackAgent\nstate    running\n")
    assert run("service", "stop") == (0, "service  OpenStackAgent\nstate    stopped\n")
    assert run("service", "stop") == (0, "service  OpenStackAgent\nstate    not running\n")


@pytest.mark.parametrize("action", ["start", "stop", "remove"])
def test_a_service_not_installed(windows: Callable[[FakeSCM], None], capsys: pytest.CaptureFixture[str],
                                 action: str) -> None:
    """Before install, start, stop and remove say it is not installed and how to install it."""
    windows(FakeSCM())
    assert run("service", action) == (9, "")
    assert capsys.readouterr().err == ("Error: the OpenStackAgent service is not installed; install it with "
                                       "'openstack-agent service install'\n")


def test_install_without_administrator_rights(windows: Callable[[FakeSCM], None],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without rights, install says which call Windows refused and why."""
    windows(FakeSCM(elevated=False))
    assert run("service", "install") == (9, "")
    assert capsys.readouterr().err == ("Error: cannot install the OpenStackAgent service: OpenSCManager failed "
                                       "with error 5: Access is denied.\n")


def test_the_group_alone_shows_its_usage(windows: Callable[[FakeSCM], None]) -> None:
    """'service' without an action prints how to use it, exit 2."""
    windows(FakeSCM())
    assert run("service") == (2, "usage: openstack-agent service {install,remove,start,stop} (see "
                                 "'openstack-agent service -h')\n")


def test_service_run_by_hand_says_what_to_use(windows: Callable[[FakeSCM], None],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """'service run' outside the SCM (StartServiceCtrlDispatcher refused) names the commands to use instead."""
    scm = FakeSCM()
    windows(scm)
    assert run("service", "run") == (9, "")
    assert capsys.readouterr().err == ("Error: 'service run' is what the Service Control Manager starts; start "
                                       "the service with 'openstack-agent service start', or run the agent here "
                                       "with 'openstack-agent run'\n")
    assert scm.prepared is not None and scm.prepared.__name__ == "AgentService"
