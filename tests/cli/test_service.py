"""run: its start-up fault point comes first, and does nothing in a release built without a fault."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent import faults
from agent.cli import main


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
