"""What the agent publishes for ``status`` (``agent.status``) and how status tells a live agent from a stale
file, without ever taking the lock."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__, pointers, status
from agent.install import COMPLETE, Layout


def publish_ready(state_dir: Path) -> status.Publisher:
    publisher = status.Publisher(state_dir)
    publisher.starting()
    publisher.xenstore(connected=True)
    publisher.ready()
    return publisher


def test_the_file_is_private_whole_and_never_follows_a_link(tmp_path: Path) -> None:
    """agent.status is a regular 0600 file replaced whole by a rename: a link planted in its place is replaced,
    never written through, and no temporary file stays behind."""
    outside = tmp_path / "outside"
    outside.write_text("not the agent's\n")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / status.STATUS_FILE).symlink_to(outside)
    publish_ready(state_dir)
    path = state_dir / status.STATUS_FILE
    assert outside.read_text() == "not the agent's\n"
    assert not path.is_symlink() and (path.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in state_dir.iterdir()) == [status.STATUS_FILE]
    document = json.loads(path.read_text())
    assert (document["pid"], document["version"], document["state"], document["xenstore"]) == (
        os.getpid(), __version__, "ready", "connected")


def test_a_write_that_fails_is_logged_once_and_the_agent_goes_on(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A status file that cannot be written (here a directory squats its temporary name) never raises: one
    warning, and the agent's state is kept in memory for the next write."""
    (tmp_path / f".{status.STATUS_FILE}.{os.getpid()}").mkdir()
    with caplog.at_level(logging.WARNING, logger="agent.status"):
        publisher = publish_ready(tmp_path)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"cannot write the agent's status file {tmp_path / status.STATUS_FILE}"]
    assert publisher.current is not None and publisher.current.state == status.READY


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"pid": "12"}', '{"pid": 1, "version": 2}'])
def test_a_damaged_file_is_no_account(tmp_path: Path, content: str) -> None:
    """A status file that is not the agent's JSON is read as no file at all."""
    (tmp_path / status.STATUS_FILE).write_text(content)
    assert status.read_published(tmp_path) is None


def test_the_lock_tells_a_live_holder_from_a_stale_pid_file(tmp_path: Path) -> None:
    """/proc/locks names the process that holds the state directory's flock; once it is killed the pid file
    stays behind, and the lock alone says that nothing runs."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from agent.lock import StateLock; "
        f"StateLock(Path({str(tmp_path)!r}), 'agent').acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    assert status.lock_holder(tmp_path) == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / status.PID_FILE).read_text() == f"{holder.pid}\n"
    assert status.lock_holder(tmp_path) is None
    assert status.lock_holder(tmp_path / "missing") is None


def test_the_file_is_trusted_only_from_the_lock_holder(tmp_path: Path) -> None:
    """With the lock free, a 'ready' file is only the last run's account; with it held by the pid the file
    names, it is the live agent's."""
    from agent.lock import StateLock

    publish_ready(tmp_path)
    free = status.observe(tmp_path)
    assert (free.running, free.ready, free.state, free.live) == (False, False, "not-running", None)
    assert free.last is not None and free.last.state == status.READY
    lock = StateLock(tmp_path, "agent")
    lock.acquire()
    try:
        held = status.observe(tmp_path)
    finally:
        lock.release()
    assert (held.running, held.ready, held.state, held.pid) == (True, True, "ready", os.getpid())


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_planted_file_neither_hangs_nor_floods_status(tmp_path: Path, kind: str) -> None:
    """A FIFO or a link to an endless device planted as agent.status or agent.pid is no account: reading them
    returns at once, with nothing."""
    for name in (status.STATUS_FILE, status.PID_FILE):
        path = tmp_path / name
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero")
    assert status.read_published(tmp_path) is None
    assert status.observe(tmp_path).pid is None


def test_releases_report_reads_pointer_files(tmp_path: Path) -> None:
    """The releases report reads current and previous from pointer files (the Windows layout) as from links."""
    layout = Layout(tmp_path / "install", pointers.FILE)
    for version in ("0.1.0", "0.2.0"):
        layout.release_dir(version).mkdir(parents=True)
        (layout.release_dir(version) / COMPLETE).write_text(f"{version}\n")
        layout.activate(version)
    report = status.releases_report(layout.root, tmp_path / "state")
    assert (report["current"], report["previous"], report["installed"]) == ("0.2.0", "0.1.0", ["0.1.0", "0.2.0"])
    assert "errors" not in report


def test_releases_report_names_a_broken_pointer_file(tmp_path: Path) -> None:
    """A pointer file naming no release does not stop the report: that pointer reads as none, and the error
    says which file and how to repair it."""
    layout = Layout(tmp_path / "install", pointers.FILE)
    layout.release_dir("0.1.0").mkdir(parents=True)
    (layout.release_dir("0.1.0") / COMPLETE).write_text("0.1.0\n")
    layout.activate("0.1.0")
    (layout.root / "previous").write_bytes(b"releases/0.")
    report = status.releases_report(layout.root, tmp_path / "state")
    assert (report["current"], report["previous"]) == ("0.1.0", None)
    [error] = report["errors"]
    assert error.startswith(f"the pointer file {layout.root / 'previous'} holds b'releases/0.'")
