"""release build: a start-up fault gets into the test releases that ask for one, and into no other."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent import faults, release
from agent.cli import main
from agent.errors import ReleaseError
from tests.releases import ROOT


def shipped_marker(bundle: Path) -> str | None:
    """The start-up fault marker in the bundle's own wheel, or None when it has none."""
    with tarfile.open(bundle, "r:gz") as archive:
        [member] = [m for m in archive.getmembers() if Path(m.name).name.startswith("openstack_agent-")]
        wheel = archive.extractfile(member)
        assert wheel is not None
        with zipfile.ZipFile(io.BytesIO(wheel.read())) as contents:
            name = f"agent/{faults.STARTUP_FAULT}"
            return contents.read(name).decode() if name in contents.namelist() else None


def test_the_checkout_holds_no_marker() -> None:
    """The source releases are built from never carries a start-up fault marker."""
    assert not (ROOT / "agent" / faults.STARTUP_FAULT).exists()


def test_only_the_faulty_test_releases_carry_a_marker(bundles) -> None:
    """The checkout's bundle and its 0.2.0 have no marker; the crash and hang test releases have theirs."""
    assert [shipped_marker(b) for b in (bundles.base, bundles.good, bundles.crash, bundles.hang)] == [
        None, None, "crash\n", "hang\n"]


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
