"""sandbox --demo: the README's first command, end to end."""

from __future__ import annotations

from pathlib import Path

from agent import __version__
from tests.cli.conftest import run


def test_sandbox_demo(tmp_path: Path) -> None:
    """The README's first command: a real xenstored, the agent, and the host's calls, end to end."""
    code, out = run("sandbox", "--demo", "--dir", str(tmp_path / "sandbox"))
    assert code == 0
    assert f"host -> version                agent ->   0 {__version__}" in out
    assert "host -> unknown command        agent -> 404 No such agent command 'reboot'" in out
    assert "host -> body without a name    agent -> 500 Request is missing 'name' key" in out
    assert "host -> keyinit + password     agent ->   0 \n" in out
    assert "root's shadow entry in the guest root" in out and ": $6$" in out
    assert "unlock   received  applying" in out
    listing = out.split("The journal (openstack-agent journal list):")[1].split("The password command")[0]
    assert len([line for line in listing.splitlines() if line.endswith("Z")]) == 7
