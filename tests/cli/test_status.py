"""``openstack-agent status``: exact text and JSON, the exit codes scripts rely on, ``--wait``, and that it
only reads."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__, status
from agent.cli.status import NOT_READY, NOT_RUNNING
from agent.install import COMPLETE, Layout
from agent.journal import Journal, releases
from agent.journal import times as journal_times
from agent.lock import StateLock
from tests.cli.conftest import run
from tests.conftest import STATE_DIR

LAST_COMMANDS = """
last commands
id  request_id  name     state   reply                     received_at
2   req-b       -        failed  500 Request is malformed  2026-11-23T10:00:03.000000Z
1   req-a       version  done    0 0.1.0                   2026-11-23T10:00:00.000000Z
"""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's and the publisher's clock, at fixed times from 2026-11-24T08:00:00Z on."""
    ticks = (f"2026-11-24T08:00:{n:02d}.000000Z" for n in itertools.count())
    monkeypatch.setattr(journal_times, "utcnow", lambda: next(ticks))


@pytest.fixture
def installed(journal_dir: Path, clock: None) -> Path:
    """Releases 0.0.9 (previous) and 0.1.0 (current, good) installed, and 0.2.0 marked bad; the install root."""
    layout = Layout(journal_dir.parent / "opt/openstack-agent")
    for version in ("0.0.9", "0.1.0"):
        layout.release_dir(version).mkdir(parents=True)
        (layout.release_dir(version) / COMPLETE).write_text(f"{version}\n")
        layout.activate(version)
    journal = Journal.open(journal_dir)
    releases.mark(journal, "0.1.0", releases.GOOD, "installed by 'openstack-agent install'")
    releases.mark(journal, "0.2.0", releases.BAD, "did not signal ready within 20 s")
    journal.close()
    return layout.root


@pytest.fixture
def held(journal_dir: Path) -> Iterator[StateLock]:
    """The state directory's lock, held by this process as an agent holds it."""
    lock = StateLock(journal_dir, "agent")
    lock.acquire()
    yield lock
    lock.release()


def status_of(journal_dir: Path, *flags: str) -> tuple[int, str]:
    return run("status", "--root", str(journal_dir.parent), "--state-dir", "/state", *flags)


def journal_line(journal_dir: Path) -> str:
    size = sum(p.stat().st_size for p in journal_dir.glob("journal.sqlite3*"))
    return f"journal       {journal_dir}/journal.sqlite3, {size} bytes, 2 commands\n"


def releases_lines(install_root: Path) -> str:
    return (f"install root  {install_root}\n"
            "current       0.1.0 (good)\n"
            "previous      0.0.9 (no verdict)\n"
            "bad           0.2.0 (did not signal ready within 20 s)\n")


def publish(journal_dir: Path, steps: str) -> None:
    """Publish as the agent does, one step per letter: s starting, c connected, d dropped, r ready, x stopped."""
    publisher = status.Publisher(journal_dir)
    actions = {"s": publisher.starting, "c": lambda: publisher.xenstore(True),
               "d": lambda: publisher.xenstore(False), "r": publisher.ready, "x": publisher.stopped}
    for step in steps:
        actions[step]()


RUNNING = [
    ("scr", "running, ready", "connected since 2026-11-24T08:00:03.000000Z", "2026-11-24T08:00:04.000000Z", 0),
    ("s", "running, not ready (starting)", "connecting since 2026-11-24T08:00:02.000000Z", "-", NOT_READY),
    ("scrd", "running, not ready (reconnecting)", "reconnecting since 2026-11-24T08:00:05.000000Z",
     "2026-11-24T08:00:04.000000Z", NOT_READY),
]


@pytest.mark.parametrize(("steps", "line", "xenstore", "ready", "code"), RUNNING)
def test_running_agent(journal_dir: Path, installed: Path, held: StateLock, steps: str, line: str, xenstore: str,
                       ready: str, code: int) -> None:
    """A live lock holder's published state is shown; only ready and connected exits 0, else NOT_READY."""
    publish(journal_dir, steps)
    assert status_of(journal_dir) == (code, (
        f"agent         {line}\n"
        f"version       {__version__}\n"
        f"pid           {os.getpid()}\n"
        "started       2026-11-24T08:00:02.000000Z\n"
        f"ready         {ready}\n"
        f"xenstore      {xenstore}\n"
        + releases_lines(installed) + journal_line(journal_dir) +
        "verified      ok, 5 transitions\n"
        "unfinished    none\n" + LAST_COMMANDS))


def test_a_holder_that_has_not_published_is_not_ready(journal_dir: Path, installed: Path, held: StateLock) -> None:
    """The lock held but no status file (an agent between its lock and its first write): running, not ready."""
    code, text = status_of(journal_dir)
    assert code == NOT_READY
    assert text.splitlines()[:3] == ["agent         running, not ready (it has not published its status yet)",
                                     "version       -", f"pid           {os.getpid()}"]


NOT_RUNNING_CASES = [
    ("", "none recorded"),
    ("scrx", f"openstack-agent {__version__}, pid {{pid}}, started 2026-11-24T08:00:02.000000Z, stopped cleanly "
             "at 2026-11-24T08:00:05.000000Z"),
    ("scr", f"openstack-agent {__version__}, pid {{pid}}, started 2026-11-24T08:00:02.000000Z, ended without a "
            "clean stop"),
]


@pytest.mark.parametrize(("steps", "last_run"), NOT_RUNNING_CASES)
def test_not_running(journal_dir: Path, installed: Path, steps: str, last_run: str) -> None:
    """The lock free: NOT_RUNNING, whatever the status file says (a crashed agent's 'ready' included); the
    file only tells how the last run ended."""
    publish(journal_dir, steps)
    assert status_of(journal_dir) == (NOT_RUNNING, (
        "agent         not running\n"
        f"last run      {last_run.format(pid=os.getpid())}\n"
        + releases_lines(installed) + journal_line(journal_dir) +
        "verified      ok, 5 transitions\n"
        "unfinished    none\n" + LAST_COMMANDS))


def test_a_stale_file_of_another_pid_is_not_trusted(journal_dir: Path, installed: Path) -> None:
    """A live holder whose pid is not the file's (a new agent, the file its crashed predecessor's): not
    ready, and none of the old file's facts are shown as the new agent's."""
    publish(journal_dir, "scr")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from agent.lock import StateLock; "
        f"StateLock(Path({str(journal_dir)!r}), 'agent').acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        code, text = status_of(journal_dir)
    finally:
        holder.kill()
        holder.wait()
    assert code == NOT_READY
    assert text.splitlines()[:3] == ["agent         running, not ready (it has not published its status yet)",
                                     "version       -", f"pid           {holder.pid}"]


def test_json(journal_dir: Path, installed: Path, held: StateLock) -> None:
    """--json is the whole report for scripts, with the full replies and the verification's result."""
    publish(journal_dir, "scr")
    code, text = status_of(journal_dir, "--json")
    document = json.loads(text)
    assert code == 0
    assert document["agent"] == {
        "running": True, "ready": True, "state": "ready", "pid": os.getpid(), "version": __version__,
        "started": "2026-11-24T08:00:02.000000Z", "ready_at": "2026-11-24T08:00:04.000000Z",
        "xenstore": {"state": "connected", "since": "2026-11-24T08:00:03.000000Z"}, "last_run": None}
    assert document["releases"] == {
        "install_root": str(installed), "current": "0.1.0", "previous": "0.0.9", "installed": ["0.0.9", "0.1.0"],
        "bad": ["0.2.0"], "verdicts": {
            "0.1.0": {"version": "0.1.0", "state": "good", "reason": "installed by 'openstack-agent install'",
                      "marked_at": "2026-11-24T08:00:00.000000Z"},
            "0.2.0": {"version": "0.2.0", "state": "bad", "reason": "did not signal ready within 20 s",
                      "marked_at": "2026-11-24T08:00:01.000000Z"}}}
    journal = document["journal"]
    assert (journal["present"], journal["commands"], journal["error"], journal["unfinished"]) == (True, 2, None, [])
    assert journal["verify"] == {"ok": True, "rows": 5, "problem": "", "problems": [], "problem_count": 0,
                                 "commands": 2}
    assert [(c["id"], c["state"], c["reply_code"], c["reply_message"]) for c in journal["last"]] == [
        (2, "failed", "500", "Request is malformed"), (1, "done", "0", "0.1.0")]


def test_no_journal_and_no_state_directory(tmp_path: Path) -> None:
    """Before any agent ran: not running, no journal, nothing created."""
    assert run("status", "--root", str(tmp_path), "--state-dir", "/state") == (NOT_RUNNING, (
        "agent         not running\n"
        "last run      none recorded\n"
        f"install root  {tmp_path}/opt/openstack-agent\n"
        "current       -\n"
        "previous      -\n"
        "bad           none\n"
        f"journal       none at {tmp_path}/state/journal.sqlite3\n"))
    assert list(tmp_path.iterdir()) == []


def test_a_broken_pointer_file_is_named_with_its_fix(journal_dir: Path, installed: Path) -> None:
    """A pointer file naming no release shows as no release and an error line saying how to repair it; the
    rest of the report is still given."""
    (installed / "previous").unlink()
    (installed / "previous").write_text("releases/0.0.8\n")
    code, text = status_of(journal_dir)
    assert code == NOT_RUNNING
    assert text.splitlines()[2:8] == [
        f"install root  {installed}",
        "current       0.1.0 (good)",
        "previous      -",
        "bad           0.2.0 (did not signal ready within 20 s)",
        f"error         the pointer file {installed}/previous names releases/0.0.8, which does not exist; write the "
        f"line 'releases/<version>' of a release installed under {installed}/releases into it, or install a "
        "release again with 'openstack-agent install BUNDLE'",
        journal_line(journal_dir).rstrip("\n")]


def test_unfinished_and_a_tampered_journal(journal_dir: Path, installed: Path) -> None:
    """An unfinished command is named, and a journal edited outside the agent shows verify's failure."""
    journal = Journal.open(journal_dir)
    journal.receive("req-c", "/local/domain/5", "password", "password", "c" * 64, None)
    journal.close()
    with sqlite3.connect(journal_dir / "journal.sqlite3") as db:
        db.execute("UPDATE transitions SET dest = 'edited' WHERE command_id = 1 AND seq = 2")
    db.close()
    code, text = status_of(journal_dir)
    lines = dict(line.split(None, 1) for line in text.splitlines()[:12] if line and " " in line)
    assert code == NOT_RUNNING
    assert lines["unfinished"] == "3 password (received)"
    assert lines["verified"].startswith("FAILED: ")


def test_status_never_takes_the_lock(journal_dir: Path, installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Status looks the lock up without taking it: no flock call at all (an agent starting at that moment
    would find the lock taken and exit with status 11)."""
    def refuse(*args: object) -> None:
        raise AssertionError("status called flock")

    monkeypatch.setattr(fcntl, "flock", refuse)
    publish(journal_dir, "scr")
    assert status_of(journal_dir)[0] == NOT_RUNNING
    assert status_of(journal_dir, "--wait", "0")[0] == NOT_RUNNING


def snapshot(*directories: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file and link under the directories: content, mtime (ns) and mode."""
    found = {}
    for directory in directories:
        for path in sorted(directory.rglob("*")):
            stat = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else str(
                path.readlink() if path.is_symlink() else "").encode()
            found[str(path)] = (content, stat.st_mtime_ns, stat.st_mode)
    return found


def test_status_changes_nothing(journal_dir: Path, installed: Path) -> None:
    """The state directory and the install root are byte-, mtime- and mode-identical after status, status
    --json and status --wait."""
    publish(journal_dir, "scrx")
    before = snapshot(journal_dir, installed)
    for flags in ((), ("--json",), ("--wait", "0.1")):
        status_of(journal_dir, *flags)
    assert snapshot(journal_dir, installed) == before


def test_wait_times_out_saying_it_is_not_ready(journal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--wait with no agent ends after its time, non-zero, with the status and a line saying why."""
    code, text = status_of(journal_dir, "--wait", "0.2")
    assert code == NOT_RUNNING
    assert text.startswith("agent         not running\n")
    assert capsys.readouterr().err == "openstack-agent is not ready after 0.2 s: it is not running\n"


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_wait_needs_seconds(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--wait takes a finite number of seconds, 0 or more; anything else is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        run("status", "--wait", value)
    assert exited.value.code == 2
    assert "expected a number of seconds" in capsys.readouterr().err


def test_wait_for_an_agent_started_after_it(agent_process, system_root: Path) -> None:
    """status --wait started before the agent blocks until the real agent (on the real xenstored) is ready,
    then prints its status and exits 0."""
    waiting = subprocess.Popen([sys.executable, "-m", "agent", "status", "--wait", "60", "--json", "--root",
                                str(system_root), "--state-dir", STATE_DIR], stdout=subprocess.PIPE, text=True)
    agent = agent_process().start()
    out, _ = waiting.communicate(timeout=90)
    document = json.loads(out)
    assert waiting.returncode == 0
    assert document["agent"]["pid"] == agent.process.pid
    assert (document["agent"]["state"], document["agent"]["version"]) == ("ready", __version__)
    assert document["agent"]["xenstore"]["state"] == "connected"
