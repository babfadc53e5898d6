"""The state directory's lock: one process at a time, released by the kernel however the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import AlreadyRunning, JournalError
from agent.lock import StateLock
from tests.conftest import wait_for

HOLD = "import sys, time; from agent.lock import StateLock; StateLock(sys.argv[1], 'x.lock', 'agent').acquire(); " \
       "print('held', flush=True); time.sleep(60)"


def holder(directory: Path) -> subprocess.Popen[str]:
    """Another process that takes the lock and keeps it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    """While one process holds the lock, another cannot take it; the error names the holder and the fix."""
    other = holder(tmp_path)
    try:
        with pytest.raises(AlreadyRunning) as refused:
            StateLock(tmp_path, "x.lock", "agent").acquire()
        assert str(refused.value) == (f"another openstack-agent agent (pid {other.pid}) is using the state directory "
                                      f"{tmp_path}; stop it first, or give this one another --state-dir")
        assert refused.value.exit_code == 11
    finally:
        other.kill()
        other.wait()


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    """SIGKILL leaves no stale lock: the next process takes it at once, and writes its own pid."""
    other = holder(tmp_path)
    other.send_signal(signal.SIGKILL)
    other.wait()
    lock = StateLock(tmp_path, "x.lock", "agent")
    lock.acquire()
    assert (tmp_path / "x.lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_waiting_takes_the_lock_once_the_holder_is_gone(tmp_path: Path) -> None:
    """A process asked to wait gets the lock when its predecessor exits within the wait."""
    other = holder(tmp_path)
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {other.pid}"])
    lock = StateLock(tmp_path, "x.lock", "agent")
    lock.acquire(wait=20)
    wait_for(lambda: other.poll() is not None)
    killer.wait()
    lock.release()


def test_within_one_process_a_second_lock_is_refused_too(tmp_path: Path) -> None:
    """Two agents in one process (tests run agents in threads) exclude each other as well."""
    first = StateLock(tmp_path, "x.lock", "agent")
    first.acquire()
    with pytest.raises(AlreadyRunning):
        StateLock(tmp_path, "x.lock", "agent").acquire(wait=0.3)
    first.release()
    StateLock(tmp_path, "x.lock", "agent").acquire()


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    """A symbolic link in place of the lock file is refused, and what it points at is left untouched."""
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "x.lock").symlink_to(target)
    with pytest.raises(JournalError, match="cannot open the lock file"):
        StateLock(tmp_path, "x.lock", "agent").acquire()
    assert target.read_text() == "keep me\n"
