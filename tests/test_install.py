"""The install layout: offline installation, atomic links, previous, pruning, and the checks before staging."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from agent import __version__, release
from agent.cli import main
from agent.errors import ReleaseError
from agent.install import COMPLETE, Layout
from agent.journal import Journal
from tests.conftest import verdict_of


def test_install_cli(bundles, tmp_path: Path) -> None:
    """'install' puts the release in releases/<version>/, points current at it, and marks it good."""
    root = tmp_path / "root"
    out = io.StringIO()
    assert main(["install", str(bundles.base), "--root", str(root)], out) == 0
    layout = Layout(root / "opt/openstack-agent")
    assert os.readlink(layout.root / "current") == f"releases/{__version__}"
    assert out.getvalue() == (f"openstack-agent {__version__} installed in {layout.release_dir(__version__)}; "
                              f"current -> {__version__}\n")
    # The scripts name the paths the root will have once it is the system's /; from here, the venv's Python.
    python = layout.root / "current" / "bin" / "python"
    version = subprocess.run([str(python), "-m", "agent", "--version"], capture_output=True, text=True,
                             check=True, env={"PATH": "/usr/bin:/bin"})
    assert version.stdout.strip() == f"openstack-agent {__version__}"
    assert verdict_of(Journal.open(root / "var/lib/openstack-agent"), __version__) == (
        "good", "installed by 'openstack-agent install'")


def test_activate_keeps_previous_and_is_idempotent(bundles, tmp_path: Path) -> None:
    """Activating a new release makes the old one previous; activating it again changes nothing."""
    layout = Layout(tmp_path)
    for bundle in (bundles.base, bundles.good):
        layout.stage(release.open_bundle(bundle))
    layout.activate(__version__)
    layout.activate("0.2.0")
    layout.activate("0.2.0")
    assert (layout.current, layout.previous) == ("0.2.0", __version__)
    assert not list(tmp_path.glob(".*.new")), "a temporary link was left behind"


def test_interrupted_staging_is_redone(bundles, tmp_path: Path) -> None:
    """A release directory without its .complete marker (staging cut short) is installed again."""
    layout = Layout(tmp_path)
    bundle = release.open_bundle(bundles.good)
    layout.stage(bundle)
    (layout.release_dir("0.2.0") / COMPLETE).unlink()
    (layout.release_dir("0.2.0") / "bin" / "openstack-agent").unlink()
    assert not layout.installed("0.2.0")
    with pytest.raises(ReleaseError, match="not installed"):
        layout.switch("current", "0.2.0")
    layout.stage(bundle)
    assert layout.installed("0.2.0") and (layout.release_dir("0.2.0") / "bin" / "openstack-agent").exists()


def test_prune_never_removes_current_or_previous(bundles, tmp_path: Path) -> None:
    """Beyond the number kept, the oldest releases go; current and previous stay whatever their age."""
    layout = Layout(tmp_path)
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
