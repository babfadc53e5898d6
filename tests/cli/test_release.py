"""release build: a start-up fault gets into the test releases that ask for one, and into no other."""

from __future__ import annotations

import io
import platform
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent import faults, release
from agent.cli import main
from agent.errors import ReleaseError
from tests.cli.conftest import run
from tests.layouts import frozen_build
from tests.releases import ROOT


def own_wheel(bundle: Path, directory: Path) -> Path:
    """The agent's own wheel from ``bundle``, extracted into ``directory``."""
    with tarfile.open(bundle, "r:gz") as archive:
        [member] = [m for m in archive.getmembers() if Path(m.name).name.startswith("openstack_agent-")]
        wheel = archive.extractfile(member)
        assert wheel is not None
        target = directory / Path(member.name).name
        target.write_bytes(wheel.read())
    return target


def test_the_checkout_holds_no_marker() -> None:
    """The source releases are built from never carries a start-up fault marker."""
    assert not (ROOT / "agent" / faults.STARTUP_FAULT).exists()


def test_only_the_faulty_test_releases_carry_a_marker(bundles, tmp_path: Path) -> None:
    """The checkout's bundle and its 0.2.0 have no marker; the crash and hang test releases have theirs."""
    assert [release.shipped_fault(own_wheel(b, tmp_path))
            for b in (bundles.base, bundles.good, bundles.crash, bundles.hang)] == [None, None, "crash", "hang"]


def test_build_leaves_an_earlier_build_out(tmp_path: Path) -> None:
    """What an earlier build left in the checkout's build/ (a module since removed, a marker since deleted)
    does not get into the bundle: it is built from a clean copy."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                "__pycache__", ".*_cache", ".hypothesis"))
    stale = source / "build" / "lib" / "agent"
    stale.mkdir(parents=True)
    (stale / faults.STARTUP_FAULT).write_text("crash\n")
    (stale / "removed.py").write_text("")
    wheel = own_wheel(release.build(tmp_path / "out", source, "0.6.0"), tmp_path)
    assert release.shipped_fault(wheel) is None
    assert "agent/removed.py" not in zipfile.ZipFile(wheel).namelist()


def test_build_refuses_a_source_with_a_marker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A marker left in a source stops 'release build' (exit 10) before anything is built."""
    source = tmp_path / "source"
    (source / "agent").mkdir(parents=True)
    (source / "pyproject.toml").write_text("")
    (source / "agent" / faults.STARTUP_FAULT).write_text("crash\n")
    assert main(["release", "build", "--out", str(tmp_path / "out"), "--source", str(source)],
                io.StringIO()) == 10
    assert capsys.readouterr().err == (f"Error: {source}/agent/STARTUP_FAULT is a start-up fault marker, which "
                                       "makes a release crash or hang at start; remove it\n")
    assert not (tmp_path / "out").exists()


def test_build_refuses_an_unknown_fault(tmp_path: Path) -> None:
    """Only the faults the agent knows can be built in."""
    with pytest.raises(ReleaseError, match="no start-up fault 'explode'; choose one of crash, hang"):
        release.build(tmp_path, ROOT, "0.5.0", startup_fault="explode")


@pytest.mark.parametrize(("action", "flags", "name"), [
    ("deb", ["--maintainer", "Release Engineering <release@example.org>"], "openstack-agent_{v}_{deb}.deb"),
    ("rpm", [], "openstack-agent-{v}-1.{rpm}.rpm"),
])
def test_package_prints_its_path(bundles, tmp_path: Path, action: str, flags: list[str], name: str) -> None:
    """'release deb' and 'release rpm' print the one path of the package they built, in --out."""
    from agent import __version__
    from agent.packages import DEB_ARCHITECTURES, RPM_ARCHITECTURES

    machine = platform.machine()
    expected = tmp_path / name.format(v=__version__, deb=DEB_ARCHITECTURES[machine], rpm=RPM_ARCHITECTURES[machine])
    assert run("release", action, str(bundles.base), "--out", str(tmp_path), "--source", str(ROOT), *flags) == (
        0, f"{expected}\n")
    assert sorted(tmp_path.iterdir()) == [expected]


@pytest.mark.parametrize(("flags", "env", "message"), [
    ([], {}, "a Debian package needs a maintainer: pass --maintainer 'Name <email>', or set DEBFULLNAME and "
             "DEBEMAIL"),
    (["--maintainer", "nobody"], {}, "the maintainer 'nobody' is not 'Name <email>', as Debian's control file "
                                     "needs it"),
    ([], {"DEBFULLNAME": "Ann", "DEBEMAIL": "ann"}, "the maintainer 'Ann <ann>' is not 'Name <email>', as "
                                                   "Debian's control file needs it"),
])
def test_deb_needs_a_maintainer(bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], flags: list[str], env: dict[str, str],
                                message: str) -> None:
    """Without a 'Name <email>' maintainer, from the flag or Debian's variables, 'release deb' builds nothing."""
    for variable in ("DEBFULLNAME", "DEBEMAIL"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert run("release", "deb", str(bundles.base), "--out", str(tmp_path / "out"), *flags) == (10, "")
    assert capsys.readouterr().err == f"Error: {message}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["deb", "rpm"])
def test_package_needs_a_checkout(bundles, tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str) -> None:
    """Outside a checkout, 'release deb' and 'release rpm' say where the templates are looked for."""
    flags = ["--maintainer", "A <a@example.org>"] if action == "deb" else []
    code, _ = run("release", action, str(bundles.base), "--out", str(tmp_path / "out"), "--source", str(tmp_path),
                  *flags)
    missing = ("cannot read the packaging template {p}/packaging/debian/setup: No such file or directory"
               if action == "deb" else "{p}/packaging/rpm/openstack-agent.spec does not exist")
    assert code == 10
    assert capsys.readouterr().err == (f"Error: {missing.format(p=tmp_path)}; pass --source with an "
                                       "openstack-agent checkout\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["deb", "rpm"])
def test_package_of_a_file_not_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str) -> None:
    """A file that is not a bundle is refused before any package is built."""
    bundle = tmp_path / "openstack-agent-1.0.0.tar.gz"
    bundle.write_text("not a bundle\n")
    flags = ["--maintainer", "A <a@example.org>"] if action == "deb" else []
    assert run("release", action, str(bundle), "--out", str(tmp_path / "out"), *flags) == (10, "")
    assert capsys.readouterr().err.startswith("Error: openstack-agent-1.0.0.tar.gz is not a readable release bundle: ")
    assert not (tmp_path / "out").exists()


def test_build_frozen_prints_its_bundle(tmp_path: Path) -> None:
    """'release build --frozen DIR --version V' prints the one bundle it wrote: of the kind frozen, for this
    system, holding the build's files under frozen/ and checked by verify."""
    build = frozen_build(tmp_path / "dist" / "openstack-agent", "2.1.0")
    expected = tmp_path / "out" / "openstack-agent-2.1.0.tar.gz"
    assert run("release", "build", "--frozen", str(build), "--version", "2.1.0", "--out", str(tmp_path / "out")) == (
        0, f"{expected}\n")
    assert sorted((tmp_path / "out").iterdir()) == [expected]
    bundle = release.open_bundle(expected)
    assert (bundle.manifest.kind, bundle.manifest.platform) == (release.FROZEN, release.platform_tag())
    assert sorted(bundle.manifest.files) == ["frozen/_internal/base_library.zip", "frozen/openstack-agent.exe"]


@pytest.mark.parametrize(("version", "contents", "message"), [
    (None, True, "--frozen needs --version: the version of the agent that build was made from"),
    ("2.1.0", False, "{build} is not a frozen build: it has no openstack-agent.exe"),
    ("2.x", True, "invalid release version '2.x': use dotted numbers such as 1.2.3"),
])
def test_build_frozen_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str | None,
                               contents: bool, message: str) -> None:
    """Without a version, of a folder that is no frozen build, or under a version that is no release's, 'release
    build --frozen' writes nothing and says why (exit 10)."""
    build = tmp_path / "build"
    if contents:
        frozen_build(build, "2.1.0")
    else:
        build.mkdir()
    flags = ["--version", version] if version else []
    assert run("release", "build", "--frozen", str(build), *flags, "--out", str(tmp_path / "out")) == (10, "")
    assert capsys.readouterr().err == f"Error: {message.format(build=build)}\n"
    assert not (tmp_path / "out").exists()
