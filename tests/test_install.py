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
