"""run: its start-up fault point comes first, and does nothing in a release built without a fault; install
--service and uninstall, in throw-away roots."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from agent import __version__, faults
from agent.cli import main
from agent.lock import StateLock
from tests.cli.conftest import run
from tests.releases import ROOT


class Slept(Exception):
    """Raised by the stand-in for time.sleep, so that a hang ends."""


def fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str) -> Path:
    """A marker holding ``content``, where the agent looks for its own."""
    marker = tmp_path / faults.STARTUP_FAULT
    marker.write_text(content)
    monkeypatch.setattr(faults, "MARKER", marker)
    return marker


def test_this_checkout_has_no_startup_fault() -> None:
    """The agent runs: the code it runs carries no marker."""
    assert not faults.MARKER.exists()
    faults.startup_fault()


@pytest.mark.parametrize("content", ["crash\n", "unknown\n"])
def test_crash_exits_3_before_anything_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], content: str) -> None:
    """With a 'crash' marker (or any marker but 'hang'), run exits 3 before it reads its configuration."""
    marker = fault(tmp_path, monkeypatch, content)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--config", str(tmp_path / "missing.toml")], io.StringIO())
    assert exited.value.code == 3
    assert capsys.readouterr().err == (f"fault injection: this release was built to {content.strip()} at start "
                                       f"({marker})\n")


def test_hang_never_gets_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 'hang' marker, run sleeps on and on, before it reads its configuration."""
    fault(tmp_path, monkeypatch, "hang\n")
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise Slept

    monkeypatch.setattr(faults.time, "sleep", sleep)
    with pytest.raises(Slept):
        main(["run", "--config", str(tmp_path / "missing.toml")], io.StringIO())
    assert naps == [3600, 3600, 3600]


# -- install --service and uninstall, in a throw-away root ----------------------------------------------

def service_paths(root: Path) -> dict[str, Path]:
    return {"unit": root / "etc/systemd/system/openstack-agent.service",
            "wants": root / "etc/systemd/system/multi-user.target.wants/openstack-agent.service",
            "config": root / "etc/openstack-agent/agent.toml", "doc": root / "usr/share/doc/openstack-agent",
            "install": root / "opt/openstack-agent", "state": root / "var/lib/openstack-agent"}


def test_install_service_puts_everything_in_place_and_is_idempotent(bundles, tmp_path: Path) -> None:
    """install --service writes the bundle's unit, configuration and README and enables the service offline
    under --root; a second run reports everything unchanged."""
    root = tmp_path / "root"
    paths = service_paths(root)
    head = (f"openstack-agent {__version__} installed in {paths['install']}/releases/{__version__}; "
            f"current -> {__version__}\n")
    enabled = f"enabled    openstack-agent.service in {root} (not started: that system is not running)\n"
    assert run("install", str(bundles.base), "--service", "--root", str(root)) == (0, head + (
        f"installed  {paths['unit']}\n"
        f"installed  {paths['config']} (the annotated defaults)\n"
        f"installed  {paths['doc']}/README.md\n") + enabled)
    assert run("install", str(bundles.base), "--service", "--root", str(root)) == (0, head + (
        f"unchanged  {paths['unit']}\n"
        f"unchanged  {paths['config']}\n"
        f"unchanged  {paths['doc']}/README.md\n") + enabled)
    assert os.readlink(paths["wants"]) == "/etc/systemd/system/openstack-agent.service"
    assert paths["config"].read_bytes() == (ROOT / "packaging/agent.toml").read_bytes()
    assert paths["unit"].read_bytes() == (ROOT / "packaging/openstack-agent.service").read_bytes()
    assert (paths["doc"] / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()
    assert {p.stat().st_mode & 0o777 for p in (paths["unit"], paths["config"])} == {0o644}


def test_install_service_keeps_an_operator_configuration(bundles, tmp_path: Path) -> None:
    """An existing configuration is never replaced, and the output says so and where the shipped one is."""
    root = tmp_path / "root"
    paths = service_paths(root)
    paths["config"].parent.mkdir(parents=True)
    paths["config"].write_text('[policy]\ndeny = ["features"]\n')
    code, out = run("install", str(bundles.base), "--service", "--root", str(root))
    assert code == 0
    assert out.splitlines()[2] == (f"kept       {paths['config']} (an existing configuration is never replaced; "
                                   f"the shipped one is {paths['install']}/shipped-agent.toml)")
    assert paths["config"].read_text() == '[policy]\ndeny = ["features"]\n'


def test_install_service_updates_a_configuration_nobody_edited(bundles, tmp_path: Path) -> None:
    """A configuration still as the last install --service shipped it takes the new release's."""
    root = tmp_path / "root"
    paths = service_paths(root)
    for path in (paths["config"], paths["install"] / "shipped-agent.toml"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# the annotated configuration of an older release\n")
    code, out = run("install", str(bundles.base), "--service", "--root", str(root))
    assert code == 0
    assert out.splitlines()[2] == f"updated    {paths['config']} (unchanged since the last install)"
    assert paths["config"].read_bytes() == (ROOT / "packaging/agent.toml").read_bytes()


@pytest.mark.parametrize(("flags", "exec_start"), [
    (["--install-root", "/srv/agent"], "/srv/agent/current/bin/openstack-agent supervise --install-root=/srv/agent"),
    (["--install-root", "/srv/agent", "--state-dir", "/srv/state"],
     "/srv/agent/current/bin/openstack-agent supervise --install-root=/srv/agent --state-dir=/srv/state"),
    (["--state-dir", "/srv/state"],
     "/opt/openstack-agent/current/bin/openstack-agent supervise --state-dir=/srv/state"),
])
def test_install_service_names_the_configured_install_root(bundles, tmp_path: Path, flags: list[str],
                                                           exec_start: str) -> None:
    """The unit runs the release it installed, and on the journal it marked good: ExecStart names the install
    root and passes update.install_root and journal.state_dir when they are not the defaults."""
    root = tmp_path / "root"
    assert run("install", str(bundles.base), "--service", "--root", str(root), *flags)[0] == 0
    unit = service_paths(root)["unit"].read_text()
    assert f"\nExecStart={exec_start}\n" in unit
    install_root = flags[flags.index("--install-root") + 1] if "--install-root" in flags else "/opt/openstack-agent"
    assert (root / install_root.lstrip("/") / "current/bin/openstack-agent").exists()


def test_a_release_installed_under_root_names_the_paths_the_image_will_see(bundles, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An image built in a directory boots with it as /: the release's scripts and pyvenv.cfg name
    /opt/openstack-agent/..., never the directory it was built in; and a Python the image lacks is named."""
    root = tmp_path / "root"
    assert run("install", str(bundles.base), "--root", str(root))[0] == 0
    python = os.path.realpath(sys.executable)
    assert capsys.readouterr().err == (f"Warning: the release runs {python}, which {root} does not have; install "
                                       "from the Python the image has (its /usr/bin/python3), or the agent will "
                                       "not start there\n")
    release = root / "opt/openstack-agent/releases" / __version__
    shebang = (release / "bin/openstack-agent").read_text().splitlines()[0]
    assert shebang == f"#!/opt/openstack-agent/releases/{__version__}/bin/python"
    for path in [*(release / "bin").iterdir(), release / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            assert str(root).encode() not in path.read_bytes(), path


def test_install_service_refuses_an_install_root_systemd_would_misread(bundles, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An install root with a space cannot go into ExecStart= unquoted: refused before anything is installed."""
    root = tmp_path / "root"
    flags = ("--service", "--root", str(root), "--install-root", "/srv/my agent")
    assert run("install", str(bundles.base), *flags)[0] == 10
    assert capsys.readouterr().err == ("Error: the install root '/srv/my agent' cannot be written into the unit's "
                                       "ExecStart=; use a path of letters, digits and ._+-/ only\n")
    assert not root.exists()


def test_install_service_without_systemctl(bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Without systemctl on PATH, --service says what to do instead, before anything is installed."""
    root = tmp_path / "root"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert run("install", str(bundles.base), "--service", "--root", str(root))[0] == 10
    assert capsys.readouterr().err == (
        "Error: systemctl is not on PATH: --service sets up a systemd service; on a system without systemd, "
        "install without --service and start 'openstack-agent supervise' as it starts its services\n")
    assert not root.exists()


@pytest.mark.parametrize(("edit", "purge", "config_line", "state_line"), [
    (False, False, "removed   {config} (unchanged from the shipped one)",
     "kept      {state} (the journal; --purge removes it)"),
    (True, False, "kept      {config} (changed from the shipped one; --purge removes it)",
     "kept      {state} (the journal; --purge removes it)"),
    (True, True, "removed   {config} (--purge)", "removed   {state} (the journal: --purge)"),
])
def test_uninstall_removes_the_service_and_keeps_what_it_should(bundles, tmp_path: Path, edit: bool, purge: bool,
                                                                config_line: str, state_line: str) -> None:
    """uninstall disables and removes the unit, README, releases and links (and a temporary link a crash left);
    the configuration goes only when unchanged (or with --purge), the journal only with --purge."""
    root = tmp_path / "root"
    paths = service_paths(root)
    assert run("install", str(bundles.base), "--service", "--root", str(root))[0] == 0
    if edit:
        paths["config"].write_text("[daemon]\nlog_level = \"debug\"\n")
    (paths["install"] / ".current.0a1b2c.new").write_bytes(b"releases/")  # a writer's, crashed mid-switch
    assert run("uninstall", "--root", str(root), *(["--purge"] if purge else [])) == (0, "\n".join([
        f"disabled  openstack-agent.service in {root}",
        f"removed   {paths['unit']}",
        f"removed   {paths['doc'] / 'README.md'}",
        config_line.format(config=paths["config"]),
        f"removed   {paths['install']} (releases {__version__}, links current)",
        state_line.format(state=paths["state"])]) + "\n")
    assert not any(paths[k].exists() or paths[k].is_symlink() for k in ("unit", "wants", "doc", "install"))
    assert paths["config"].exists() == (edit and not purge)
    assert paths["state"].exists() == (not purge)
    assert run("uninstall", "--root", str(root), "--purge")[0] == 0


def test_uninstall_with_nothing_installed(tmp_path: Path) -> None:
    """uninstall where nothing is installed says so and succeeds."""
    assert run("uninstall", "--root", str(tmp_path)) == (0, "nothing  openstack-agent is not installed here\n")


def test_uninstall_refuses_while_a_supervisor_serves_the_install_root(bundles, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A supervisor holding the install root's lock (started by hand) stops uninstall before anything goes, and
    not install, which only takes the pointers' lock for its switch."""
    root = tmp_path / "root"
    paths = service_paths(root)
    assert run("install", str(bundles.base), "--service", "--root", str(root))[0] == 0
    capsys.readouterr()  # the install's own warnings
    lock = StateLock(paths["install"], "supervisor", what="install root")
    lock.acquire()
    try:
        assert run("uninstall", "--root", str(root))[0] == 11
        assert capsys.readouterr().err == (
            f"Error: another openstack-agent supervisor (pid {os.getpid()}) is using the install root "
            f"{paths['install']}; stop it first, or give this one another --install-root\n")
        # install is not refused: a package upgrade installs beside the running service's supervisor.
        assert run("install", str(bundles.base), "--root", str(root))[0] == 0
    finally:
        lock.release()
    assert paths["unit"].exists() and paths["install"].is_dir() and os.path.islink(paths["wants"])


@pytest.mark.parametrize("command", ["run", "supervise"])
def test_run_and_supervise_refuse_a_policy_naming_no_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             command: str) -> None:
    """run and supervise stop before anything starts when the configuration names a command that does not
    exist, saying which file and key, and exit 2 (which the unit does not restart on)."""
    file = tmp_path / "agent.toml"
    file.write_text('[policy]\nallow = ["verison"]\n')
    state = tmp_path / "state"
    code = main([command, "--config", str(file), "--state-dir", str(state)], io.StringIO())
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"Error: {file}: policy.allow: 'verison' is not a command of this agent (did you mean "
                            "'version'?)")
    assert not state.exists()


@pytest.mark.parametrize("state_dir", ["/", "/home"])
def test_purge_removes_only_the_agents_files_from_its_state_directory(bundles, tmp_path: Path,
                                                                      state_dir: str) -> None:
    """uninstall --purge with a state directory that holds other files (a mistaken /, a shared directory)
    removes the journal and the agent's own files and keeps everything else."""
    root = tmp_path / "root"
    assert run("install", str(bundles.base), "--root", str(root), "--state-dir", state_dir)[0] == 0
    state = root / state_dir.lstrip("/")
    (root / "home/user").mkdir(parents=True)
    (root / "home/user/data").write_text("the operator's\n")
    assert (state / "journal.sqlite3").exists()
    code, out = run("uninstall", "--root", str(root), "--state-dir", state_dir, "--purge")
    assert code == 0
    assert f"the journal and the agent's files in {state} (--purge)\n" in out
    assert (root / "home/user/data").read_text() == "the operator's\n"
    assert not list(state.glob("journal.sqlite3*"))
