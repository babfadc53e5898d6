"""The resetnetwork machine, replayed step by step on a real journal, nova's data in an in-memory XenStore, and
the live network port acting on a lab of real network namespaces (``tests.netns``) with ifupdown's tools: each
state, illegal events, bad data, verification that fails, every interruption rolled back, and the truth of
every reply."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from transitions import MachineError

from agent.config import from_overrides
from agent.journal import Journal
from agent.machines.base import Command, Context
from agent.machines.resetnetwork import BUSY_INTERVAL, ResetNetwork
from agent.memstore import MemoryXenStore
from agent.network.renderers import ifupdown
from agent.platform.network import LiveNetwork
from agent.ports import HostData, Ports
from agent.protocol import Request
from tests.machines import stopping_at
from tests.netns import NICS, Lan, entry, key

PUBLIC = {"ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"}], "gateway": "203.0.113.1",
          "dns": ["198.51.100.53"]}
#: What the image had before nova's change: another address on eth0, written as an ifupdown image would.
BEFORE = (b"auto eth0\niface eth0 inet static\n    address 203.0.113.20/24\n    gateway 203.0.113.1\n")
BEFORE_PATH = "etc/network/interfaces.d/50-openstack-agent.cfg"
STATES_TO_ROLL_BACK = ["switching", "applying", "verifying"]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path / "state")


@pytest.fixture
def image(lan: Lan) -> Lan:
    """The lab's guest with the configuration it had before: eth0 at 203.0.113.20, applied."""
    (lan.root / BEFORE_PATH).write_bytes(BEFORE)
    LiveNetwork(lan.root, prefix=lan.prefix).apply("ifupdown", ["eth0"])
    assert lan.addresses("eth0") == {"203.0.113.20/24"}
    return lan


def publish(store: MemoryXenStore, entries: dict[str, Any], hostname: str | None = "web-1") -> None:
    """Write nova's data as its XenAPI driver does: one JSON entry per interface, and the host name."""
    for child in store.list("vm-data/networking"):
        store.delete(f"vm-data/networking/{child}")
    for name, value in entries.items():
        store.write(f"vm-data/networking/{name}", value if isinstance(value, str) else json.dumps(value))
    if hostname is not None:
        store.write("vm-data/hostname", hostname)


def public(**fields: Any) -> dict[str, Any]:
    return {key(NICS["eth0"]): entry(NICS["eth0"], label="public", **{**PUBLIC, **fields})}


def command(journal: Journal, lan: Lan, store: MemoryXenStore, machine: type[Command] = ResetNetwork,
            request_id: str = "r", network: LiveNetwork | None = None, **config: Any) -> Command:
    """A journaled resetnetwork, as the daemon makes it, acting on the lab's guest."""
    record = journal.find_request(request_id)
    if record is None:
        record = journal.receive(request_id, "", machine.NAME, machine.NAME, "0" * 64, '""')
    kept = journal_dir(journal) / "network-backups"
    ports = Ports(network=network or LiveNetwork(lan.root, prefix=lan.prefix, backups=kept), host_data=HostData(store))
    ctx = Context(journal=journal, config=from_overrides(**{"network_verify_timeout": 10, **config}),
                  ports=ports, request=Request(request_id, machine.NAME, "", "0" * 64, None))
    return machine(record, ctx)


def journal_dir(journal: Journal) -> Path:
    return Path(journal.path).parent


def drive(cmd: Command, recovery: bool = False) -> Command:
    """Run the command as the daemon does: again each time it asks to wait, until it finishes (or stops where a
    ``stopping_at`` machine "dies", which waits for 0 s)."""
    cmd.run(recovery=recovery)
    while not cmd.finished and cmd.waiting:
        time.sleep(cmd.waiting)
        cmd.run()
    return cmd


def tree(root: Path) -> dict[str, str]:
    """Every file under the guest's /etc, by path, with its digest and mode."""
    return {str(p.relative_to(root)): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {stat.S_IMODE(p.stat().st_mode):o}"
            for p in sorted((root / "etc").rglob("*")) if p.is_file()}


def reply(journal: Journal, cmd: Command) -> tuple[str | None, str | None]:
    record = journal.get(cmd.record.id)
    return record.reply_code, record.reply_message


def path_of(journal: Journal, cmd: Command) -> list[str]:
    return [f"{t.trigger}:{t.dest}" for t in journal.transitions(cmd.record.id)][1:]


def detail(journal: Journal, cmd: Command, trigger: str) -> dict[str, Any]:
    return next(json.loads(t.detail) for t in journal.transitions(cmd.record.id) if t.trigger == trigger)


# -- the path of a change that works ------------------------------------------------------------------------


@pytest.mark.parametrize("stop_at", ["switching", "applying", "verifying", None])
def test_each_state_in_order(journal: Journal, image: Lan, memory_guest: MemoryXenStore, stop_at: str | None) -> None:
    """received → switching → applying → verifying → done, each journaled before its work; what each state did is
    in place when the next one is entered, and nothing of a later state has happened yet."""
    publish(memory_guest, public())
    machine = ResetNetwork if stop_at is None else stopping_at(ResetNetwork, stop_at)
    cmd = drive(command(journal, image, memory_guest, machine))
    written = (image.root / ifupdown.PATH.lstrip("/")).read_bytes()
    if stop_at == "switching":
        assert cmd.state == "switching" and written == BEFORE
    elif stop_at == "applying":
        assert b"203.0.113.10/24" in written and image.addresses("eth0") == {"203.0.113.20/24"}
    elif stop_at == "verifying":
        assert image.addresses("eth0") == {"203.0.113.10/24"}
    else:
        assert path_of(journal, cmd) == ["plan:switching", "switched:applying", "applied:verifying", "verified:done"]
        assert reply(journal, cmd) == ("0", "")
        assert image.addresses("eth0") == {"203.0.113.10/24"}
        assert any(r.get("dst") == "default" and r.get("gateway") == "203.0.113.1" for r in image.routes())
        assert (image.root / "etc/hostname").read_text() == "web-1\n"
        assert "nameserver 198.51.100.53" in (image.root / "etc/resolv.conf").read_text()
    assert cmd.state == (stop_at or "done")


def test_the_plan_is_journaled_with_the_backup_and_an_audit_of_every_file(journal: Journal, image: Lan,
                                                                          memory_guest: MemoryXenStore) -> None:
    """``plan`` journals the stack and, per file, the size, digest and whether it is new; the working data holds
    the digests of the old and new contents (the contents themselves are kept outside the journal)."""
    publish(memory_guest, public())
    cmd = drive(command(journal, image, memory_guest))
    planned = detail(journal, cmd, "plan")
    assert planned["stack"] == "ifupdown" and planned["interfaces"] == ["eth0"]
    files = {f["path"]: f for f in planned["files"]}
    assert files[ifupdown.PATH]["created"] is False
    assert files["/etc/hostname"]["sha256"] == hashlib.sha256(b"web-1\n").hexdigest()
    data = {f["path"]: f for f in json.loads(journal.get(cmd.record.id).data or "{}")["files"]}
    assert set(data) == set(files)
    assert data[ifupdown.PATH]["old"] == hashlib.sha256(BEFORE).hexdigest()
    assert data[ifupdown.PATH]["new"] == files[ifupdown.PATH]["sha256"]


def test_a_second_reset_with_the_same_data_is_answered_without_touching_the_interfaces(
        journal: Journal, image: Lan, memory_guest: MemoryXenStore) -> None:
    """Files already as asked and the kernel holding the network: ``unchanged``, "0", no tool run (an address
    added by hand since survives, which an ifdown/flush/ifup would have removed)."""
    publish(memory_guest, public())
    drive(command(journal, image, memory_guest))
    image.run(["ip", "addr", "add", "203.0.113.77/24", "dev", "eth0"])
    before = tree(image.root)
    again = drive(command(journal, image, memory_guest, request_id="r2"))
    assert path_of(journal, again) == ["unchanged:done"]
    assert reply(journal, again) == ("0", "")
    assert "203.0.113.77/24" in image.addresses("eth0")
    assert tree(image.root) == before


def test_files_as_asked_but_the_kernel_not_is_applied_again(journal: Journal, image: Lan,
                                                            memory_guest: MemoryXenStore) -> None:
    """When the files are right but an address went missing, the network is applied again, and the audit says
    why."""
    publish(memory_guest, public())
    drive(command(journal, image, memory_guest))
    image.run(["ip", "addr", "flush", "dev", "eth0", "scope", "global"])
    again = drive(command(journal, image, memory_guest, request_id="r2"))
    assert reply(journal, again) == ("0", "")
    assert "eth0 has no 203.0.113.10/24" in detail(journal, again, "plan")["applying_because"]
    assert image.addresses("eth0") == {"203.0.113.10/24"}


def test_an_illegal_event_leaves_the_state_unchanged(journal: Journal, image: Lan,
                                                     memory_guest: MemoryXenStore) -> None:
    """A trigger the current state does not have raises and journals nothing."""
    publish(memory_guest, public())
    cmd = drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, "applying")))
    rows = len(journal.transitions(cmd.record.id))
    for trigger in ("verified", "plan", "restored", "unchanged"):
        with pytest.raises(MachineError):
            cmd.advance(trigger)
        assert cmd.state == "applying"
    assert len(journal.transitions(cmd.record.id)) == rows


# -- bad data: a "500" that says nothing was changed ----------------------------------------------------------


@pytest.mark.parametrize(("entries", "problem"), [
    ({key(NICS["eth0"]): "{not json"}, "is not JSON"),
    (public(ips=[{"ip": "203.0.113.300", "netmask": "255.255.255.0", "enabled": "1"}]), "is not an IPv4 address"),
    (public(ip6s=[{"ip": "2001:db8::10", "netmask": 129, "enabled": "1"}]), "a prefix length from 0 to 128"),
    ({key(NICS["eth0"]): {"label": "public", **PUBLIC}}, "has no valid 'mac'"),
    ({"fa163e000001": entry("fa:16:3e:00:00:01", label="x", **PUBLIC)}, "no interface with MAC fa:16:3e:00:00:01"),
    ({}, "has no entries"),
    ({key(NICS["eth0"]): "[" * 2000}, "nested too deeply"),
])
def test_bad_data_is_refused_and_nothing_is_changed(journal: Journal, image: Lan, memory_guest: MemoryXenStore,
                                                    entries: dict[str, Any], problem: str) -> None:
    """Bad data is "500" naming the entry and what is wrong, and neither a file nor an interface changes."""
    publish(memory_guest, entries)
    before = tree(image.root)
    cmd = drive(command(journal, image, memory_guest))
    code, message = reply(journal, cmd)
    assert code == "500" and message is not None
    assert message.startswith("Invalid network data: ") and problem in message
    assert message.endswith("; nothing was changed")
    assert cmd.state == "failed" and tree(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


def test_no_stack_in_the_image_is_refused(journal: Journal, image: Lan, memory_guest: MemoryXenStore) -> None:
    """An image with none of the stacks' signs, and no stack named: "500" saying so; nothing changed."""
    publish(memory_guest, public())
    (image.root / "etc/network/interfaces").unlink()
    before = tree(image.root)
    cmd = drive(command(journal, image, memory_guest))
    code, message = reply(journal, cmd)
    assert code == "500" and "no network stack found" in (message or "")
    assert (message or "").endswith("; nothing was changed") and tree(image.root) == before


def test_an_agent_under_a_root_outside_a_namespace_of_its_own_refuses(
        journal: Journal, image: Lan, memory_guest: MemoryXenStore) -> None:
    """Under a throw-away root, in this machine's own network namespace, applying would change this machine's
    interfaces: refused before anything is read or written."""
    publish(memory_guest, public())
    before = tree(image.root)
    cmd = drive(command(journal, image, memory_guest, network=LiveNetwork(image.root)))
    code, message = reply(journal, cmd)
    assert code == "500" and "would change this machine's own interfaces" in (message or "")
    assert (message or "").endswith("; nothing was changed")
    assert tree(image.root) == before


# -- verification and rollback ---------------------------------------------------------------------------------


def test_a_gateway_that_does_not_answer_is_rolled_back(journal: Journal, image: Lan,
                                                       memory_guest: MemoryXenStore) -> None:
    """With ``network.verify = gateway``, a gateway that never answers rolls the change back after the timeout:
    the old files byte for byte, the old address applied again, and a "500" that says so."""
    publish(memory_guest, public(gateway="203.0.113.254"))
    before = tree(image.root)
    cmd = drive(command(journal, image, memory_guest, network_verify="gateway", network_verify_timeout=1))
    code, message = reply(journal, cmd)
    assert (cmd.state, code) == ("rolled_back", "500"), message
    assert message == ("resetnetwork failed and was rolled back: after 1 s gateway 203.0.113.254 does not answer; "
                       "the previous network configuration is restored")
    assert tree(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


def test_a_failed_write_rolls_back_without_applying(journal: Journal, image: Lan, memory_guest: MemoryXenStore,
                                                    tmpfs: Any) -> None:
    """A file that cannot be written (its file system is full) rolls back from ``switching``: the files written
    before it are restored, and nothing is applied, since nothing had been."""
    publish(memory_guest, public())
    folder = tmpfs(image.root / "etc/network/interfaces.d", "16k")
    (folder / "50-openstack-agent.cfg").write_bytes(BEFORE)
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
        while True:  # comments only: ifupdown reads every file of the directory
            filler.write(b"# filler\n" * 512)
            filler.flush()
    before = tree(image.root)
    cmd = drive(command(journal, image, memory_guest))
    code, message = reply(journal, cmd)
    assert (cmd.state, code) == ("rolled_back", "500"), message
    assert ifupdown.PATH in (message or "") and "full" in (message or "")
    assert detail(journal, cmd, "restored")["reapplied"] is False
    assert tree(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


def failing_ifup(directory: Path, monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    """Put first on PATH an ``ifup`` that fails its first ``times`` runs (a real process exiting 1), then runs
    the real one."""
    directory.mkdir()
    script = directory / "ifup"
    script.write_text(f"""#!/bin/sh
runs=$(cat "{directory}/runs" 2>/dev/null || echo 0)
echo $((runs + 1)) > "{directory}/runs"
if [ "$runs" -lt {times} ]; then echo 'ifup: no carrier on eth0' >&2; exit 1; fi
exec /usr/sbin/ifup "$@"
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_a_failed_apply_rolls_back(journal: Journal, image: Lan, memory_guest: MemoryXenStore,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ifup failing on the new configuration rolls the change back: the old files, the old address applied
    again, and the tool's message in the reply."""
    publish(memory_guest, public())
    before = tree(image.root)
    failing_ifup(tmp_path / "bin", monkeypatch, times=1)
    cmd = drive(command(journal, image, memory_guest))
    assert reply(journal, cmd) == ("500", "resetnetwork failed and was rolled back: ifup failed with exit status 1: "
                                          "ifup: no carrier on eth0; the previous network configuration is restored")
    assert tree(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


def test_a_rollback_whose_apply_fails_too_says_so(journal: Journal, image: Lan, memory_guest: MemoryXenStore,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When applying the old configuration fails as well, the files are restored and the reply says that the
    old configuration could not be applied, rather than claiming it is restored."""
    publish(memory_guest, public())
    before = tree(image.root)
    failing_ifup(tmp_path / "bin", monkeypatch, times=2)
    cmd = drive(command(journal, image, memory_guest))
    assert cmd.state == "failed"
    assert reply(journal, cmd) == ("500", "resetnetwork failed (ifup failed with exit status 1: ifup: no carrier on "
                                          "eth0); its files were restored, but applying the previous configuration "
                                          "failed too (ifup failed with exit status 1: ifup: no carrier on eth0)")
    assert tree(image.root) == before


@pytest.mark.parametrize("outcome", ["done", "rolled_back"])
def test_no_file_contents_reach_the_journal(journal: Journal, image: Lan, memory_guest: MemoryXenStore,
                                            outcome: str) -> None:
    """The journal keeps digests of the files a change replaces, never their contents (a configuration file
    may hold a secret); the contents kept for a rollback are removed when the command ends."""
    marker = "options secret-marker-5e1f"
    (image.root / "etc/resolv.conf").write_text(f"{marker}\nnameserver 192.0.2.53\n")
    publish(memory_guest, public(**({"gateway": "203.0.113.254"} if outcome == "rolled_back" else {})))
    cmd = drive(command(journal, image, memory_guest, network_verify="gateway", network_verify_timeout=1))
    assert cmd.state == outcome
    assert marker in (image.root / "etc/resolv.conf").read_text()
    state = journal_dir(journal)
    assert [p.name for p in state.iterdir() if p.is_file() and marker.encode() in p.read_bytes()] == []
    assert list((state / "network-backups").iterdir()) == []


@pytest.mark.parametrize("state", STATES_TO_ROLL_BACK)
def test_a_stop_in_a_changing_state_rolls_back_at_the_next_start(journal: Journal, image: Lan,
                                                                  memory_guest: MemoryXenStore, state: str) -> None:
    """A crash or reboot in switching, applying or verifying: the next process rolls back, the files are as they
    were, the old network is applied (except after ``switching``, when nothing was), and the reply says why."""
    publish(memory_guest, public())
    before = tree(image.root)
    drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, state)))
    cmd = drive(command(journal, image, memory_guest), recovery=True)
    code, message = reply(journal, cmd)
    assert (cmd.state, code) == ("rolled_back", "500"), message
    assert message == (f"resetnetwork failed and was rolled back: the agent stopped (a crash or a reboot) while "
                       f"{state}; the previous network configuration is restored")
    assert detail(journal, cmd, "restored")["reapplied"] is (state != "switching")
    assert tree(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


def test_a_stop_while_rolling_back_finishes_the_rollback(journal: Journal, image: Lan,
                                                         memory_guest: MemoryXenStore) -> None:
    """Rolling back is resumed, not repeated from scratch or abandoned: the end is the same as an uninterrupted one."""
    publish(memory_guest, public())
    before = tree(image.root)
    drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, "applying")))
    drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, "rolling_back")), recovery=True)
    cmd = drive(command(journal, image, memory_guest), recovery=True)
    assert cmd.state == "rolled_back" and tree(image.root) == before
    assert image.addresses("eth0") == {"203.0.113.20/24"}


@pytest.mark.parametrize(("state", "says"), [
    ("received", "not retrying it"),
    ("applying", "the new network files may be in place, not verified"),
    ("rolling_back", "the previous network configuration may be half restored"),
])
def test_giving_up_says_where_it_stopped(journal: Journal, image: Lan, memory_guest: MemoryXenStore,
                                         state: str, says: str) -> None:
    """A crash-looping resetnetwork is ended with a reply that says what may have changed."""
    publish(memory_guest, public())
    if state == "rolling_back":
        drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, "applying")))
        drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, "rolling_back")), recovery=True)
    elif state != "received":
        drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, state)))
    cmd = command(journal, image, memory_guest)
    cmd.give_up(4)
    code, message = reply(journal, cmd)
    assert cmd.state == "failed" and code == "500" and says in (message or "")


def test_a_second_reset_waits_for_the_first(journal: Journal, image: Lan, memory_guest: MemoryXenStore) -> None:
    """One network change at a time: a resetnetwork arriving while another is unfinished waits in ``received``,
    and goes on once the first has ended."""
    publish(memory_guest, public())
    drive(command(journal, image, memory_guest, stopping_at(ResetNetwork, "verifying")))
    second = command(journal, image, memory_guest, request_id="r2")
    second.run()
    assert second.state == "received" and second.waiting == BUSY_INTERVAL
    drive(command(journal, image, memory_guest), recovery=True)  # the first, rolled back by the next process
    assert drive(second).state == "done" and image.addresses("eth0") == {"203.0.113.10/24"}
