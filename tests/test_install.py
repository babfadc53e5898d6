"""The install layout: offline installation, atomic pointers of either kind (links, pointer files), previous,
pruning, the checks before staging, and a frozen release installed without pip."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from agent import __version__, install, pointers, release
from agent.cli import main
from agent.errors import ReleaseError
from agent.install import COMPLETE, Layout
from agent.journal import Journal
from agent.pointers import KINDS
from tests.conftest import verdict_of
from tests.layouts import frozen_build


@pytest.mark.parametrize("kind", KINDS)
def test_install_cli(bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """'install' puts the release in releases/<version>/, points current at it (a link, or a pointer file as
    on Windows), and marks it good."""
    monkeypatch.setattr(pointers, "DEFAULT_KIND", kind)
    root = tmp_path / "root"
    out = io.StringIO()
    assert main(["install", str(bundles.base), "--root", str(root)], out) == 0
    layout = Layout(root / "opt/openstack-agent")
    current = layout.root / "current"
    assert (os.readlink(current) if kind == pointers.SYMLINK else current.read_text()).strip() == \
        f"releases/{__version__}"
    assert out.getvalue() == (f"openstack-agent {__version__} installed in {layout.release_dir(__version__)}; "
                              f"current -> {__version__}\n")
    # The scripts name the paths the root will have once it is the system's /; from here, the venv's Python.
    python = layout.program(__version__).parent / "python"
    version = subprocess.run([str(python), "-m", "agent", "--version"], capture_output=True, text=True,
                             check=True, env={"PATH": "/usr/bin:/bin"})
    assert version.stdout.strip() == f"openstack-agent {__version__}"
    assert verdict_of(Journal.open(root / "var/lib/openstack-agent"), __version__) == (
        "good", "installed by 'openstack-agent install'")


@pytest.mark.parametrize("kind", KINDS)
def test_activate_keeps_previous_and_is_idempotent(bundles, tmp_path: Path, kind: str) -> None:
    """Activating a new release makes the old one previous; activating it again changes nothing."""
    layout = Layout(tmp_path, kind)
    for bundle in (bundles.base, bundles.good):
        layout.stage(release.open_bundle(bundle))
    layout.activate(__version__)
    layout.activate("0.2.0")
    layout.activate("0.2.0")
    assert (layout.current, layout.previous) == ("0.2.0", __version__)
    assert not list(tmp_path.glob(".*.new")), "a temporary pointer was left behind"
    assert Layout(tmp_path).pointers.kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_interrupted_staging_is_redone(bundles, tmp_path: Path, kind: str) -> None:
    """A release directory without its .complete marker (staging cut short) is installed again."""
    layout = Layout(tmp_path, kind)
    bundle = release.open_bundle(bundles.good)
    layout.stage(bundle)
    (layout.release_dir("0.2.0") / COMPLETE).unlink()
    (layout.release_dir("0.2.0") / "bin" / "openstack-agent").unlink()
    assert not layout.installed("0.2.0")
    with pytest.raises(ReleaseError, match="not installed"):
        layout.switch("current", "0.2.0")
    layout.stage(bundle)
    assert layout.installed("0.2.0") and (layout.release_dir("0.2.0") / "bin" / "openstack-agent").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_prune_never_removes_current_or_previous(bundles, tmp_path: Path, kind: str) -> None:
    """Beyond the number kept, the oldest releases go; current and previous stay whatever their age."""
    layout = Layout(tmp_path, kind)
    for bundle in (bundles.base, bundles.good, bundles.crash):
        layout.stage(release.open_bundle(bundle))
    layout.activate(__version__)
    layout.activate("0.2.0")  # previous = base, the oldest
    assert layout.prune(keep=1) == ["0.3.0"]
    assert sorted(p.name for p in layout.releases.iterdir()) == sorted([__version__, "0.2.0"])


def test_not_enough_disk_space(bundles, tmpfs, tmp_path: Path) -> None:
    """Staging checks free space first and names both figures, on a real 8 MiB file system."""
    mountpoint = tmpfs(tmp_path / "small", "8m")
    with pytest.raises(ReleaseError, match=r"not enough free disk space .* MiB free .* MiB needed"):
        Layout(mountpoint).stage(release.open_bundle(bundles.good))
    assert not (mountpoint / "releases" / "0.2.0").exists()


def test_bundle_for_another_python_is_refused(bundles, tmp_path: Path) -> None:
    """A bundle built for another interpreter is refused at staging, naming both."""
    crafted = tmp_path / "other.tar.gz"
    with tarfile.open(bundles.good, "r:gz") as source, tarfile.open(crafted, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == release.MANIFEST:
                data = json.dumps({**json.loads(data), "python": "cp399"}).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    with pytest.raises(ReleaseError, match=f"built for cp399, but this guest runs {release.python_tag()}"):
        Layout(tmp_path / "install").stage(release.open_bundle(crafted))


def test_frozen_release_is_installed_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen bundle (the Windows build: its program and _internal/) is moved into releases/<version>/ as it
    is, with no venv and no pip, and the release's program is its openstack-agent.exe."""
    def no_python(argv: list[str], what: str, offline: bool = False) -> None:
        raise AssertionError(f"{what}: a frozen release needs no venv or pip")

    monkeypatch.setattr(install, "_run", no_python)
    bundle = release.open_bundle(release.build_frozen(tmp_path / "out", frozen_build(tmp_path / "dist", "0.5.0"),
                                                      "0.5.0"))
    assert bundle.manifest.kind == release.FROZEN
    layout = Layout(tmp_path / "install", pointers.FILE)
    install.install(bundle, layout)
    program = layout.agent_command()
    assert program == layout.release_dir("0.5.0") / "openstack-agent.exe"
    assert (layout.release_dir("0.5.0") / "_internal" / "base_library.zip").is_file()
    assert subprocess.run([str(program), "--version"], capture_output=True, text=True,
                          check=True).stdout == "openstack-agent 0.5.0\n"
    assert (layout.current, (layout.root / "current").read_text()) == ("0.5.0", "releases/0.5.0\n")


def test_bundle_for_another_system_is_refused(tmp_path: Path) -> None:
    """A bundle built for Windows is refused on Linux before anything is unpacked, naming both systems."""
    bundle = release.open_bundle(release.build_frozen(tmp_path / "out", frozen_build(tmp_path / "dist", "0.5.0"),
                                                      "0.5.0", platform="win-amd64"))
    layout = Layout(tmp_path / "install")
    with pytest.raises(ReleaseError, match="a Windows bundle cannot be installed on Linux"):
        layout.stage(bundle)
    assert not layout.releases.exists()


def test_activate_repairs_a_broken_pointer_file(tmp_path: Path) -> None:
    """A current pointer file that names no release (the fix its error names) is replaced by activating a
    release; previous is left as it was."""
    layout = Layout(tmp_path, pointers.FILE)
    layout.release_dir("0.2.0").mkdir(parents=True)
    (layout.release_dir("0.2.0") / COMPLETE).write_text("0.2.0\n")
    (tmp_path / "current").write_bytes(b"")
    with pytest.raises(ReleaseError, match="is empty"):
        _ = layout.current
    layout.activate("0.2.0")
    assert (layout.current, layout.previous) == ("0.2.0", None)


@pytest.mark.parametrize("kind", KINDS)
def test_activate_refuses_a_directory_in_place_of_current(tmp_path: Path, kind: str) -> None:
    """A directory named current cannot be repaired by activating a release: ReleaseError naming it and the fix,
    and the directory is left as it was."""
    layout = Layout(tmp_path, kind)
    layout.release_dir("0.2.0").mkdir(parents=True)
    (layout.release_dir("0.2.0") / COMPLETE).write_text("0.2.0\n")
    (tmp_path / "current" / "bin").mkdir(parents=True)
    with pytest.raises(ReleaseError, match=f"^{tmp_path / 'current'} is a directory, not a pointer: .*move the "
                                           "directory away, then install a release again"):
        layout.activate("0.2.0")
    assert [p.name for p in (tmp_path / "current").iterdir()] == ["bin"]


def releases_of(layout: Layout, *versions: str) -> Layout:
    for version in versions:
        layout.release_dir(version).mkdir(parents=True)
        (layout.release_dir(version) / COMPLETE).write_text(f"{version}\n")
    return layout


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("meanwhile", "result", "current"), [
    (None, "0.1.0", "0.1.0"),      # current still names the bad release: it goes back to previous
    ("0.3.0", None, "0.3.0"),      # an operator installed 0.3.0 since the verdict: it stays
])
def test_roll_back_switches_only_the_release_it_judged(tmp_path: Path, kind: str, meanwhile: str | None,
                                                       result: str | None, current: str) -> None:
    """roll_back points current back at previous only while current still names the bad release; when another
    writer switched current since, it leaves both pointers alone and says so (None)."""
    layout = releases_of(Layout(tmp_path, kind), "0.1.0", "0.2.0", "0.3.0")
    layout.activate("0.1.0")
    layout.activate("0.2.0")
    if meanwhile is not None:
        layout.activate(meanwhile)
    previous = layout.previous
    assert layout.roll_back("0.2.0") == result
    assert (layout.current, layout.previous) == (current, previous)


def test_roll_back_without_a_previous_release_is_refused(tmp_path: Path) -> None:
    """With no other installed release to go back to, roll_back raises ReleaseError and current stays."""
    layout = releases_of(Layout(tmp_path, pointers.FILE), "0.2.0")
    layout.activate("0.2.0")
    with pytest.raises(ReleaseError, match=r"no previous release to go back to from 0\.2\.0"):
        layout.roll_back("0.2.0")
    assert layout.current == "0.2.0"


@pytest.mark.parametrize("write", ["activate", "switch"])
def test_pointer_writers_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str) -> None:
    """activate and switch wait for the pointers' lock another writer holds (install beside a supervisor rolling
    back), and give up with a ReleaseError after LOCK_WAIT, nothing switched."""
    monkeypatch.setattr(pointers, "LOCK_WAIT", 0.0)
    layout = Layout(tmp_path, pointers.FILE)
    for version in ("0.1.0", "0.2.0"):
        layout.release_dir(version).mkdir(parents=True)
        (layout.release_dir(version) / COMPLETE).write_text(f"{version}\n")
    layout.activate("0.1.0")
    busy = "another openstack-agent process has been switching the pointers"
    with layout.pointers.switching(), pytest.raises(ReleaseError, match=busy):
        if write == "activate":
            layout.activate("0.2.0")
        else:
            layout.switch("current", "0.2.0")
    assert (layout.current, layout.previous) == ("0.1.0", None)


def test_a_build_folder_is_staged_as_a_release(tmp_path: Path) -> None:
    """The service's own frozen build is copied whole into releases/<version>/, complete only at the end; a
    second staging of that version copies nothing again."""
    build = frozen_build(tmp_path / "build", "0.3.0")
    layout = Layout(tmp_path / "install", pointers.FILE)
    layout.stage_build(build, "0.3.0")
    target = layout.release_dir("0.3.0")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        COMPLETE, "_internal", "_internal/base_library.zip", "openstack-agent.exe"]
    assert layout.program("0.3.0") == target / "openstack-agent.exe"
    (build / "openstack-agent.exe").write_text("changed")
    layout.stage_build(build, "0.3.0")
    assert (target / "openstack-agent.exe").read_text() != "changed"
    assert [p.name for p in layout.releases.iterdir()] == ["0.3.0"]  # no copy left behind


@pytest.mark.parametrize(("where", "message"), [
    ("empty", "{build} is not a frozen build: it has no openstack-agent.exe"),
    ("inside", "the install root {build}/releases-root lies inside the build {build} it would copy; configure "
               "update.install_root elsewhere"),
])
def test_staging_a_build_refuses(tmp_path: Path, where: str, message: str) -> None:
    """A folder that is no frozen build, or one holding the install root (the copy would copy itself), is not
    staged, and nothing is left."""
    build = tmp_path / "build"
    if where == "empty":
        build.mkdir()
        root = tmp_path / "install"
    else:
        frozen_build(build, "0.3.0")
        root = build / "releases-root"
    with pytest.raises(ReleaseError) as raised:
        Layout(root, pointers.FILE).stage_build(build, "0.3.0")
    assert str(raised.value) == message.format(build=build)
    assert not root.exists()


@pytest.mark.parametrize(("version", "than", "expected"), [
    ("0.3.0", "0.2.0", True), ("1.10", "1.9", True), ("0.2.0", "0.3.0", False), ("1.2", "1.2.0", False),
    ("1.2.0.1", "1.2", True),
])
def test_newer_compares_dotted_numbers(version: str, than: str, expected: bool) -> None:
    """Versions compare number by number, a missing part counting as 0."""
    assert install.newer(version, than) is expected
