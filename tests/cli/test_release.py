"""release build: a start-up fault gets into the test releases that ask for one, and into no other."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent import faults, release
from agent.cli import main
from agent.errors import ReleaseError
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
