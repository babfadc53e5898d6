"""sandbox: the README's first command end to end, its refusals, and how it stops."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent import __version__
from agent.cli import main
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


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_sandbox_dir_that_is_no_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """--dir naming a file (or a path below one) is a SandboxError, exit 8, naming the path and the fix."""
    (tmp_path / "a-file").write_text("")
    given = tmp_path / "a-file" if where == "file" else tmp_path / "a-file" / "sandbox"
    reason = "it exists and is not a directory" if where == "file" else "Not a directory"
    assert main(["sandbox", "--demo", "--dir", str(given)], io.StringIO()) == 8
    assert capsys.readouterr().err == (f"Error: cannot use {given} as the sandbox's directory: {reason}; give --dir "
                                       "a directory (new or existing), or leave --dir out for a temporary one\n")


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat), or None when there is none: with the
    pid, it tells a process from a later one given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sandbox_stops_and_cleans_up_on_a_signal(request: pytest.FixtureRequest, signum: int) -> None:
    """Started as from a script (SIGINT ignored), the sandbox stops on SIGTERM and on SIGINT alike, its xenstored
    and agent end with it and its temporary directory is removed."""
    # A short temporary directory: xenstored's socket path must fit in a Unix socket address (108 bytes).
    temporary = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    request.addfinalizer(lambda: shutil.rmtree(temporary))
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "agent", "sandbox"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(temporary)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # what '&' in a script does
    started: dict[int, str | None] = {}
    try:
        assert sandbox.stdout is not None and sandbox.stderr is not None
        lines = [sandbox.stdout.readline().decode() for _ in range(8)]
        assert lines[0].startswith(f"Sandbox: a real xenstored and the agent, in {temporary}/openstack-agent-sandbox-")
        assert lines[-1] == "Press Ctrl-C to stop.\n"
        children = [int(pid) for pid in Path(f"/proc/{sandbox.pid}/task/{sandbox.pid}/children").read_text().split()]
        names = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in children]
        assert len(children) == 2 and "xenstored" in names  # and the agent
        started.update({pid: _started(pid) for pid in children})
        sandbox.send_signal(signum)
        rest, errors = sandbox.communicate(timeout=60)
    finally:
        if sandbox.poll() is None:
            sandbox.kill()
            sandbox.wait()
        left = [pid for pid, start in started.items() if _started(pid) == start]
        for pid in left:  # a sandbox that failed to stop them must not leave them to the rest of the run
            os.kill(pid, signal.SIGKILL)
    assert (sandbox.returncode, rest.decode(), errors.decode()) == (0, "\nStopping the sandbox.\n", "")
    assert left == []
    assert list(temporary.iterdir()) == []
