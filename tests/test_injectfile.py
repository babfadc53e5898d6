"""injectfile and file_inject over the real xenstored, with real agents writing into a throw-away guest root.

Covers nova's two formats end to end, SIGKILL on entering every state (and the leftovers a kill in the middle
of a write can leave), symlink attacks and bad paths, a real full file system, and that the contents reach
neither the journal's files nor the agent's log.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.host import Host, file_request
from agent.journal import Journal
from agent.platform.files import Files, temp_name
from agent.protocol import GUEST_DIR, HOST_DIR, encode
from agent.xenstore import XenStore
from tests.conftest import STATE_DIR, holding, open_journal, wait_for

FORMATS = ["new", "legacy"]
NAMES = {"new": "file_inject", "legacy": "injectfile"}
#: nova injects the SSH key as "\n<key>\n"; the marker makes it findable in any file.
KEY = b"\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5-e2e-Inject-Marker-4Kp8 operator@example\n"
MARKER = b"e2e-Inject-Marker-4Kp8"
OLD = b"welcome to the old motd\n"


def make_guest_files(root: Path) -> None:
    """/etc/motd (0644, 1001:1002) to replace, and /home/cloud (1000:1000) to get a new ~/.ssh."""
    (root / "etc/motd").write_bytes(OLD)
    os.chown(root / "etc/motd", 1001, 1002)
    (root / "etc/motd").chmod(0o644)
    (root / "home/cloud").mkdir(parents=True)
    os.chown(root / "home/cloud", 1000, 1000)


def owner(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.bak.*"))


def snapshot(top: Path) -> dict[str, Any]:
    """Every entry under ``top`` but the agent's state directory (and the directories the agent makes for it):
    kind, mode, owner, contents; no link followed."""
    state = top / STATE_DIR.lstrip("/")
    found: dict[str, Any] = {}
    for entry in [top, *top.rglob("*")]:
        if entry != top and (entry == state or state in entry.parents or entry in state.parents):
            continue
        info = entry.lstat()
        body = entry.read_bytes() if stat.S_ISREG(info.st_mode) else os.readlink(entry) if entry.is_symlink() else None
        found[str(entry.relative_to(top))] = (info.st_mode, info.st_uid, info.st_gid, body)
    return found


def triggers(journal: Journal, name: str) -> list[str]:
    command, = journal.commands(name=name)
    return [t.trigger for t in journal.transitions(command.id)]


@pytest.fixture
def guest_root(system_root: Path) -> Path:
    make_guest_files(system_root)
    return system_root


# -- both formats, end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(("path", "created"), [("/home/cloud/.ssh/authorized_keys", True), ("/etc/motd", False)],
                         ids=["new-key", "replace"])
def test_both_formats_write_the_file(run_agent, host: Host, guest_root: Path, state_dir: Path, format: str,
                                     path: str, created: bool) -> None:
    """nova's request writes the file: contents, mode, owner and backup as promised; reply "0", ""."""
    run_agent()
    assert host.inject_file(path, KEY, format, timeout=20) == {"returncode": "0", "message": ""}
    target = guest_root / path.lstrip("/")
    assert target.read_bytes() == KEY
    if created:
        assert owner(target) == (0o600, 1000, 1000)
        assert owner(target.parent) == (0o700, 1000, 1000)
        assert backups(target) == []
    else:
        assert owner(target) == (0o644, 1001, 1002)
        backup, = backups(target)
        assert backup.read_bytes() == OLD
        assert owner(backup) == (0o644, 1001, 1002)
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".openstack-agent-tmp")] == []
    wait_for(lambda: open_journal(state_dir).commands()[0].replied_at)
    journal = open_journal(state_dir)
    assert triggers(journal, NAMES[format]) == ["receive", "write", "wrote", "answer", "deliver"]
    assert journal.verify().ok


def test_offered_in_features_and_under_the_policy(run_agent, host: Host, guest_root: Path) -> None:
    """Both commands are listed in features; a denied one gets "403", writes nothing and leaves the list."""
    run_agent(deny="injectfile")
    features = host.call("features", "", timeout=20)["message"].split(",")
    assert "file_inject" in features and "injectfile" not in features
    assert host.inject_file("/etc/motd", KEY, "legacy", timeout=20) == {
        "returncode": "403", "message": "Agent command 'injectfile' is refused by this agent's policy"}
    assert (guest_root / "etc/motd").read_bytes() == OLD


# -- SIGKILL ------------------------------------------------------------------------------------------------

#: The points a command passes through: received is journaled with the request, then each state is entered.
POINTS = ["after_received", "enter:writing", "enter:written", "enter:done"]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_on_entering_every_state(agent_process, guest: XenStore, guest_root: Path, state_dir: Path,
                                         format: str, point: str) -> None:
    """Killed at ``point``: old or new file whole, one reply, one write and backup, journal intact."""
    target = guest_root / "etc/motd"
    name, value = file_request("/etc/motd", KEY, format)  # type: ignore[arg-type]
    guest.write(f"{HOST_DIR}/req", encode({"name": name, "value": value}))
    assert agent_process("--crash-at", point).start().wait() == -signal.SIGKILL
    assert target.read_bytes() in (OLD, KEY)
    agent_process().start()

    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/req")))
    wait_for(lambda: not guest.exists(f"{HOST_DIR}/req"))
    wait_for(lambda: open_journal(state_dir).commands()[0].replied_at)
    assert reply == {"returncode": "0", "message": ""}
    assert guest.list(GUEST_DIR) == ["req"]
    assert target.read_bytes() == KEY
    backup, = backups(target)
    assert backup.read_bytes() == OLD
    assert not (target.parent / temp_name("motd")).exists()
    journal = open_journal(state_dir)
    assert triggers(journal, name).count("wrote") == 1
    assert journal.verify().ok


@pytest.mark.parametrize("format", FORMATS)
def test_sigkill_on_entering_failed(agent_process, guest: XenStore, guest_root: Path, state_dir: Path,
                                    format: str) -> None:
    """Killed right after a refusal is journaled: the one reply is that refusal, and nothing was written."""
    before = snapshot(guest_root)
    name, value = file_request("/etc/../etc/motd", KEY, format)  # type: ignore[arg-type]
    guest.write(f"{HOST_DIR}/req", encode({"name": name, "value": value}))
    assert agent_process("--crash-at", "enter:failed").start().wait() == -signal.SIGKILL
    agent_process().start()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/req")))
    wait_for(lambda: open_journal(state_dir).commands()[0].replied_at)
    assert reply["returncode"] == "500" and reply["message"].startswith("Refused to write '/etc/../etc/motd': ")
    assert guest.list(GUEST_DIR) == ["req"]
    assert snapshot(guest_root) == before
    assert open_journal(state_dir).verify().ok


def leftover_temp(root: Path) -> None:
    """The kill came while the temporary file was being written: it is there, cut short."""
    (root / "etc" / temp_name("motd")).write_bytes(KEY[:9])


def write_done(root: Path) -> None:
    """The kill came after the rename, before ``wrote`` was journaled: the new file and its backup are in place."""
    Files(root, selinux=False).write("/etc/motd", KEY)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("leftover", [leftover_temp, write_done])
def test_a_kill_in_the_middle_of_the_write(agent_process, guest: XenStore, guest_root: Path, state_dir: Path,
                                           format: str, leftover: Callable[[Path], None]) -> None:
    """A kill inside the write: a cut-short temp file is redone; a finished write is not repeated."""
    target = guest_root / "etc/motd"
    name, value = file_request("/etc/motd", KEY, format)  # type: ignore[arg-type]
    guest.write(f"{HOST_DIR}/req", encode({"name": name, "value": value}))
    assert agent_process("--crash-at", "enter:writing").start().wait() == -signal.SIGKILL
    leftover(guest_root)
    inode = target.stat().st_ino
    agent_process().start()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/req")))
    assert reply == {"returncode": "0", "message": ""}
    assert target.read_bytes() == KEY
    assert (target.stat().st_ino == inode) is (leftover is write_done)
    backup, = backups(target)
    assert backup.read_bytes() == OLD
    assert not (target.parent / temp_name("motd")).exists()
    wait_for(lambda: open_journal(state_dir).commands()[0].replied_at)
    assert open_journal(state_dir).verify().ok


# -- refusals -------------------------------------------------------------------------------------------------


def leaf_link(root: Path, outside: Path) -> str:
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to(outside / "victim")
    return "/etc/motd"


def dangling_leaf_link(root: Path, outside: Path) -> str:
    (root / "etc/planted").symlink_to(outside / "planted")
    return "/etc/planted"


def link_to_directory(root: Path, outside: Path) -> str:
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to(outside)
    return "/etc/motd"


def ssh_dir_link(root: Path, outside: Path) -> str:
    (root / "home/cloud/.ssh").symlink_to(outside)
    return "/home/cloud/.ssh/authorized_keys"


def relative_link_out(root: Path, outside: Path) -> str:
    (root / "srv").symlink_to(os.path.relpath(outside, root))
    return "/srv/victim"


def link_within_root(root: Path, outside: Path) -> str:
    (root / "etc/alias").symlink_to(root / "home/cloud")
    return "/etc/alias/notes"


LINKS = [leaf_link, dangling_leaf_link, link_to_directory, ssh_dir_link, relative_link_out, link_within_root]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("attack", LINKS)
def test_symlink_attacks_are_refused(run_agent, host: Host, guest_root: Path, tmp_path: Path, format: str,
                                     attack: Callable[[Path, Path], str]) -> None:
    """A link anywhere on the path is refused with "500"; nothing written inside or outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = attack(guest_root, outside)
    before, there = snapshot(guest_root), snapshot(outside)
    run_agent()
    reply = host.inject_file(path, KEY, format, timeout=20)  # type: ignore[arg-type]
    assert reply["returncode"] == "500"
    assert reply["message"].startswith(f"Refused to write {path!r}: ")
    assert "is a symbolic link, and the agent follows none" in reply["message"]
    assert snapshot(guest_root) == before and snapshot(outside) == there


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(("path", "options", "reason"), [
    ("home/cloud/notes", {}, "the path is relative"),
    ("/home/cloud/../../etc/motd", {}, "the path has a '..' component"),
    ("/etc/mo\0td", {}, "the path contains a NUL character"),
    ("/etc", {}, "the path names a directory, not a file"),
    ("/etc/", {}, "the path names a directory, not a file"),
    ("C:\\Users\\Administrator\\notes.txt", {}, "it is a Windows path"),
    ("", {}, "the path is empty"),
    ("/etc/motd", {"inject_allowed_paths": "/root/.ssh/*,/home/*/.ssh/*"}, "the policy does not allow this path"),
    ("/etc/motd", {"inject_max_size": 16}, f"{len(KEY)} bytes is more than the 16 bytes inject.max_size allows"),
])
def test_bad_paths_are_refused(run_agent, host: Host, guest_root: Path, format: str, path: str,
                               options: dict[str, Any], reason: str) -> None:
    """Bad, disallowed or oversized injections get "500" naming path and reason; nothing written."""
    before = snapshot(guest_root)
    run_agent(**options)
    reply = host.inject_file(path, KEY, format, timeout=20)  # type: ignore[arg-type]
    assert reply["returncode"] == "500"
    if format == "legacy" and not path.startswith("/") and ":" not in path:
        # The legacy form never quotes a "path" that is not absolute: it may be no path at all.
        assert reply["message"].endswith("the text before the first comma is not an absolute path"), reply
    else:
        assert reply["message"].startswith(f"Refused to write {path!r}: ") and reason in reply["message"], reply
    assert snapshot(guest_root) == before


@pytest.mark.parametrize(("name", "value", "message"), [
    ("injectfile", "%%% not base64 %%%", "Error doing base64 decoding of data"),
    ("injectfile", "L2V0Yy9tb3Rk", 'Invalid injectfile value: expected base64 of "<path>,<contents>"; the decoded '
                                   "value has no comma between the path and the contents"),
    ("file_inject", "L2V0Yy9tb3Rk", 'Invalid file_inject value: expected a JSON object {"b64_path": <base64 path>, '
                                    '"b64_file": <base64 contents>}, got str'),
    ("file_inject", {"b64_path": "L2V0Yy9tb3Rk"}, "Invalid file_inject value: 'b64_file' is missing; expected a "
                                                  'JSON object {"b64_path": <base64 path>, "b64_file": <base64 '
                                                  "contents>}"),
    ("file_inject", {"b64_path": "L2V0Yy9tb3Rk", "b64_file": "%%%"},
     "Error doing base64 decoding of data: 'b64_file' is not base64"),
])
def test_malformed_values(run_agent, host: Host, guest_root: Path, name: str, value: Any, message: str) -> None:
    """An undecodable value gets "500" saying what is wrong; nothing written."""
    before = snapshot(guest_root)
    run_agent()
    assert host.call(name, value, timeout=20) == {"returncode": "500", "message": message}
    assert snapshot(guest_root) == before


# -- a full file system ----------------------------------------------------------------------------------------


@pytest.fixture
def full_fs(guest_root: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs mounted at the guest's /srv, holding an old /srv/motd, then filled to the last byte;
    skipped only where mounting is not permitted."""
    mount = guest_root / "srv"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"mounting a tmpfs is not permitted here ({exc}); the full-disk test needs a real one")
    try:
        (mount / "motd").write_bytes(OLD)
        with (mount / "filler").open("wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("path", ["/srv/motd", "/srv/new/dirs/motd"], ids=["replace", "new"])
def test_a_full_file_system_leaves_nothing_partial(run_agent, host: Host, full_fs: Path, state_dir: Path,
                                                   format: str, path: str) -> None:
    """A full disk gives "500" naming the path; old file intact, no temp file, backup or directory left."""
    before = snapshot(full_fs)
    run_agent()
    reply = host.inject_file(path, KEY, format, timeout=20)  # type: ignore[arg-type]
    assert reply["returncode"] == "500"
    assert reply["message"] == (f"Cannot write {path!r}: the disk is full (ENOSPC: no space left on device); "
                                "nothing was changed")
    assert snapshot(full_fs) == before
    wait_for(lambda: open_journal(state_dir).commands()[0].replied_at)
    assert triggers(open_journal(state_dir), NAMES[format]) == ["receive", "write", "fail", "deliver"]


# -- the contents are kept nowhere -----------------------------------------------------------------------------


def test_contents_reach_neither_the_journal_nor_the_log(agent_process, host: Host, guest_root: Path,
                                                         state_dir: Path) -> None:
    """No injection's contents or value reach the journal's files (running or stopped) or the log."""
    agent = agent_process().start()
    sent: list[str] = []
    for format in FORMATS:
        for path in ("/home/cloud/.ssh/authorized_keys", "/etc/../etc/motd"):
            name, value = file_request(path, KEY, format)  # type: ignore[arg-type]
            sent.append(json.dumps(value))
            host.call(name, value, timeout=20)
    no_comma = base64.b64encode(b"/etc/motd" + KEY).decode()  # no comma: the whole value could be a secret
    assert host.call("injectfile", no_comma, timeout=20)["returncode"] == "500"
    assert (guest_root / "home/cloud/.ssh/authorized_keys").read_bytes() == KEY
    wait_for(lambda: all(c.replied_at for c in open_journal(state_dir).commands()))
    digest = hashlib.sha256(KEY).hexdigest()

    def scan() -> None:
        assert holding(state_dir, digest), "the scan does not see the journal's content"
        for value in (MARKER.decode(), *sent, no_comma):
            assert not holding(state_dir, value), f"the journal's files hold {value[:40]}"

    scan()
    assert any(p.name.endswith("-wal") for p in state_dir.iterdir()), "no WAL among the running agent's files"
    agent.stop()
    scan()
    log = agent.log()
    assert "wrote '/home/cloud/.ssh/authorized_keys'" in log
    for value in (MARKER.decode(), *sent, no_comma):
        assert value not in log, f"the agent's log holds {value[:40]}"
