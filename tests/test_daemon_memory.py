"""The daemon built from injected parts: an in-memory XenStore, the Standalone runtime, the real chpasswd in a
throw-away root. Daemon logic is tested here in milliseconds; the real-xenstored tests cover the rest."""

from __future__ import annotations

import base64
import errno
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import config as agent_config
from agent.daemon import GROUP, Agent
from agent.errors import JournalError, XenStoreError
from agent.host import Host
from agent.journal import Journal, retention
from agent.machines import REGISTRY
from agent.memstore import MemoryStore, MemoryXenStore
from agent.platform.linux import Linux
from agent.protocol import GUEST_DIR, HOST_DIR
from agent.runtime import Standalone
from tests.conftest import DOMID, STATE_DIR, ThreadAgent, open_journal, wait_for
from tests.system import password_matches, shadow_hash
from tests.test_daemon import REPLIES

HOME = f"/local/domain/{DOMID}"


@pytest.fixture
def memory_agent(memory_store: MemoryStore, system_root: Path) -> Iterator[Any]:
    """Start agents on the in-memory XenStore in threads: ``memory_agent(**config_overrides)``, each on a new
    connection to the store, or on the ``transport`` given."""
    started: list[tuple[ThreadAgent, MemoryXenStore]] = []

    def start(reload: Any = None, transport: MemoryXenStore | None = None,
              **overrides: Any) -> tuple[ThreadAgent, MemoryXenStore]:
        config = agent_config.from_overrides(**{"root": str(system_root), "state_dir": STATE_DIR,
                                                "domain_path": HOME, **overrides})
        transport = transport or memory_store.connection(HOME)
        ready = threading.Event()
        agent = Agent(config, on_ready=ready.set, reload=reload, transport=transport,
                      accounts=Linux(str(system_root)), runtime=Standalone())
        holder = ThreadAgent(agent, threading.Thread(target=agent.run, daemon=True))
        holder.thread.start()
        assert ready.wait(10), "the agent did not become ready"
        started.append((holder, transport))
        return holder, transport

    yield start
    for holder, _transport in started:
        holder.stop()


@pytest.fixture
def memory_host(memory_store: MemoryStore) -> Host:
    return Host(memory_store.connection(HOME), poll_interval=0.002)


@pytest.mark.parametrize(("body", "returncode", "message"), REPLIES)
def test_reply(memory_agent, memory_host: Host, body: str, returncode: str, message: str) -> None:
    """The daemon gives every reply of the protocol on the in-memory transport, as on the real one."""
    memory_agent()
    assert memory_host.raw(body, timeout=10) == {"returncode": returncode, "message": message}


def test_password_is_set_through_the_accounts_port(memory_agent, memory_host: Host, system_root: Path) -> None:
    """keyinit then password set the real password in the throw-away root, with no xenstored at all."""
    memory_agent()
    assert memory_host.set_password("Memory-Pass-7", timeout=10) == {"returncode": "0", "message": ""}
    assert password_matches("Memory-Pass-7", shadow_hash(system_root, "root"))


def test_a_resent_request_is_answered_from_the_journal(memory_agent, memory_host: Host, memory_guest,
                                                       state_dir: Path) -> None:
    """The same request id and body sent again after its answer is answered again, and not run twice."""
    memory_agent()
    body = '{"name": "version", "value": "agent"}'
    first = memory_host.raw(body, timeout=10, request_id="again")
    memory_guest.delete(f"{GUEST_DIR}/again")
    assert memory_host.raw(body, timeout=10, request_id="again") == first
    assert [c.request_id for c in open_journal(state_dir).commands()] == ["again"]


def test_a_dropped_connection_is_reconnected(memory_agent, memory_host: Host, memory_guest) -> None:
    """When its XenStore connection drops, the agent reconnects and answers what was sent meanwhile."""
    holder, transport = memory_agent()
    transport.drop()
    memory_guest.write(f"{HOST_DIR}/during", '{"name": "version", "value": "agent"}')
    assert wait_for(lambda: memory_guest.read(f"{GUEST_DIR}/during"), timeout=10) is not None
    assert holder.thread.is_alive()


def test_commands_whose_port_is_missing_are_not_offered(memory_store: MemoryStore, memory_host: Host,
                                                        system_root: Path) -> None:
    """An agent without a files port or a network port (as on a guest with no such backend) lists neither the
    file injections nor resetnetwork."""

    class NoFiles(Agent):
        def files_port(self) -> None:
            return None

        def network_port(self) -> None:
            return None

    config = agent_config.from_overrides(root=str(system_root), state_dir=STATE_DIR, domain_path=HOME)
    agent = NoFiles(config, transport=memory_store.connection(HOME), accounts=Linux(str(system_root)),
                    runtime=Standalone())
    assert agent.offered() == ["version", "features", "keyinit", "password", "agentupdate"]


def test_a_reload_gives_the_files_port_the_new_inject_policy(memory_agent, memory_host: Host,
                                                              system_root: Path) -> None:
    """SIGHUP's reload takes on a changed inject.allowed_paths: a path refused before is written after."""
    options = {"root": str(system_root), "state_dir": STATE_DIR, "domain_path": HOME}
    widened = agent_config.from_overrides(**options, inject_allowed_paths="/etc/*,/root/*")
    holder, _transport = memory_agent(reload=lambda: widened, inject_allowed_paths="/etc/*")
    refused = memory_host.inject_file("/root/notes", b"Reload-Marker\n", timeout=10)
    assert refused["returncode"] == "500" and "the policy does not allow this path" in refused["message"]
    holder.agent.request_reload()
    wait_for(lambda: holder.agent.config.inject_allowed_paths == ("/etc/*", "/root/*"), timeout=10)
    assert memory_host.inject_file("/root/notes", b"Reload-Marker\n", timeout=10) == {"returncode": "0",
                                                                                      "message": ""}
    assert (system_root / "root/notes").read_bytes() == b"Reload-Marker\n"


def _old_commands(state_dir: Path, count: int) -> None:
    """``count`` answered, delivered commands in the journal, before the agent starts."""
    journal = Journal.open(state_dir)
    for n in range(count):
        record = journal.receive(f"old-{n}", HOME, "version", "version", "d" * 64, '"agent"')
        journal.mark_replied(journal.transition(record, "answer", "done", reply={"returncode": "0", "message": "1"}))
    journal.close()


def _count_prunes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The count each retention.prune call removes, in order, as the agent calls it."""
    counts: list[int] = []
    real = retention.prune

    def counted(*args: Any, **kwargs: Any) -> retention.Pruned:
        pruned = real(*args, **kwargs)
        counts.append(pruned.count)
        return pruned

    monkeypatch.setattr(retention, "prune", counted)
    return counts


def test_a_journal_far_over_its_cap_is_pruned_in_batches_while_requests_are_answered(
        memory_agent, memory_host: Host, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal holding many times journal.max_commands (a lowered cap, say) is brought down to the cap in
    small batches, one per turn of the main loop (not one a housekeeping run), and requests are answered
    meanwhile; the chain verifies."""
    _old_commands(state_dir, 400)
    counts = _count_prunes(monkeypatch)
    memory_agent(max_commands=50, keep_min=10, housekeeping_interval=3600)
    assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    wait_for(lambda: len(open_journal(state_dir).commands()) == 50)
    assert sum(counts) == 351 and max(counts) <= retention.PER_CALL and len(counts) > 1
    assert open_journal(state_dir).verify().ok


def test_a_prune_under_way_goes_at_the_pace_of_the_checkpoints_not_of_the_requests(
        memory_agent, memory_host: Host, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the journal's bound, a prune under way takes its next batch between requests, when the WAL
    checkpoints are not behind: requests do not each drive a batch of it (on a large journal that outran the
    checkpoints and made a request pay for a long one)."""
    import agent.daemon as daemon_module

    _old_commands(state_dir, 100)
    calls = _count_prunes(monkeypatch)
    # After the first batch the checkpoints never catch up again.
    monkeypatch.setattr(Journal, "checkpoints_behind", lambda _self: bool(calls))
    monkeypatch.setattr(daemon_module, "CATCH_UP_PAUSE", 3600.0)
    memory_agent(retention_days=1e-9, keep_min=10, housekeeping_interval=3600)
    wait_for(lambda: bool(calls))
    for _ in range(10):
        assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    assert calls == [retention.PER_CALL], "a prune batch ran for a request while the checkpoints were behind"


def test_a_prune_held_back_by_slow_checkpoints_still_finishes_without_requests(
        memory_agent, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every checkpoint pass slow (a busy disk) and no request coming: a prune under way holds back a moment
    after each pass, then goes on, and finishes; a slow pass with no commit after it does not stop it."""
    from agent.journal import checkpoint

    _old_commands(state_dir, 300)
    monkeypatch.setattr(checkpoint, "SLOW_PASS", -1.0)  # every pass counts as slow
    memory_agent(retention_days=1e-9, keep_min=10, housekeeping_interval=3600)
    wait_for(lambda: len(open_journal(state_dir).commands()) == 10, timeout=60)
    assert open_journal(state_dir).verify().ok


def _synchronous_during(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """The journal's ``synchronous`` setting each time the agent calls ``retention.<name>``."""
    modes: list[int] = []
    real = getattr(retention, name)

    def watched(journal: Journal, *args: Any, **kwargs: Any) -> Any:
        modes.append(journal.driver.execute("PRAGMA synchronous").fetchone()[0])
        return real(journal, *args, **kwargs)

    monkeypatch.setattr(retention, name, watched)
    return modes


def test_a_prune_does_not_wait_for_the_disk(memory_agent, memory_host: Host, state_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention commits without a sync of its own (synchronous=NORMAL): a prune that a power cut undoes is
    only done again, and its syncs would queue behind the checkpoints with the requests'. Afterwards the
    requests' commits wait for the disk again."""
    _old_commands(state_dir, 40)
    modes = _synchronous_during(monkeypatch, "prune")
    holder, _transport = memory_agent(retention_days=1e-9, keep_min=10, housekeeping_interval=3600)
    wait_for(lambda: len(open_journal(state_dir).commands()) == 10)
    assert modes and set(modes) == {1}  # NORMAL
    assert holder.agent.journal is not None
    assert holder.agent.journal.driver.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert open_journal(state_dir).verify().ok


def test_a_reply_collection_does_not_wait_for_the_disk(memory_agent, memory_host: Host, memory_guest: MemoryXenStore,
                                                      state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old replies' removal is journaled as a prune is, without a sync of its own: a power cut that undoes it
    only has the (already removed) replies removed again."""
    modes = _synchronous_during(monkeypatch, "mark_replies_removed")
    memory_agent(reply_max_age=0.2, housekeeping_interval=0.1)
    assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    wait_for(lambda: not memory_guest.list(GUEST_DIR))
    wait_for(lambda: any(t.trigger == "collect" for c in open_journal(state_dir).commands()
                         for t in open_journal(state_dir).transitions(c.id)))
    assert modes and set(modes) == {1}  # NORMAL


def _steps(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """In order, each call the agent makes to ``retention.<name>`` and to ``Journal.checkpoint_soon``."""
    steps: list[str] = []
    real_step, real_checkpoint = getattr(retention, name), Journal.checkpoint_soon

    def step(*args: Any, **kwargs: Any) -> Any:
        steps.append(name)
        return real_step(*args, **kwargs)

    def checkpoint(journal: Journal) -> None:
        steps.append("checkpoint" if journal._after_commit is None else "checkpoint inside the batch")
        real_checkpoint(journal)

    monkeypatch.setattr(retention, name, step)
    monkeypatch.setattr(Journal, "checkpoint_soon", checkpoint)
    return steps


def test_each_prune_batch_is_checkpointed_before_the_next(memory_agent, state_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch of a prune that removed commands has the checkpointer copy its pages at once, before the
    next batch writes more: one pass never has many batches' scattered pages to sync while a request waits."""
    _old_commands(state_dir, 60)
    steps = _steps(monkeypatch, "prune")
    memory_agent(retention_days=1e-9, keep_min=10, housekeeping_interval=3600)
    wait_for(lambda: len(open_journal(state_dir).commands()) == 10)
    batches = -(-50 // retention.PER_CALL)  # 50 commands, PER_CALL at a time
    wait_for(lambda: steps.count("checkpoint") >= batches)
    assert steps == ["prune", "checkpoint"] * batches


def test_each_reply_collection_batch_is_checkpointed_before_the_next(
        memory_agent, memory_host: Host, memory_guest: MemoryXenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply collection's batches are checkpointed one by one too: each journals a collect row for commands
    all over the journal."""
    from agent import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "COLLECT_PER_CALL", 2)
    steps = _steps(monkeypatch, "mark_replies_removed")
    memory_agent(reply_max_age=0.5, housekeeping_interval=0.3)
    for _ in range(5):
        assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    wait_for(lambda: not memory_guest.list(GUEST_DIR))
    wait_for(lambda: steps.count("checkpoint") >= 3)
    assert steps == ["mark_replies_removed", "checkpoint"] * (len(steps) // 2)


def test_batches_of_a_collection_and_a_prune_under_way_together_keep_their_pace(
        memory_agent, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply collection and a prune under way at once take one batch at a time, each HOUSEKEEPING_PACE at
    least after the one before began, whichever kind it was: no checkpoint pass has two batches' pages."""
    from agent import daemon as daemon_module

    _old_commands(state_dir, 60)  # delivered by an earlier process, their replies not collected yet
    monkeypatch.setattr(daemon_module, "COLLECT_PER_CALL", 8)
    monkeypatch.setattr(daemon_module, "HOUSEKEEPING_PACE", 0.05)
    begun: list[tuple[str, float]] = []
    for name in ("collect_more", "prune"):
        real = getattr(Agent, name)

        def recorded(agent: Agent, real: Any = real, name: str = name) -> int:
            count = real(agent)
            begun.append((name, agent._batch_at))
            return int(count)

        monkeypatch.setattr(Agent, name, recorded)
    memory_agent(retention_days=1e-9, keep_min=10, reply_max_age=0.001, housekeeping_interval=3600)
    wait_for(lambda: len(open_journal(state_dir).commands()) == 10, timeout=30)
    kinds = [name for name, _ in begun]
    assert "collect_more" in kinds and "prune" in kinds
    assert all(later >= earlier + 0.05 for (_, earlier), (_, later) in itertools.pairwise(begun))


def test_a_reply_delivered_again_after_its_collection_is_collected_again(
        memory_agent, memory_host: Host, memory_guest: MemoryXenStore, state_dir: Path) -> None:
    """A request sent again after its reply was collected gets the reply again, and that reply is collected
    too, rather than left in data/guest for ever (counting against the domain's XenStore quota)."""
    memory_agent(reply_max_age=0.2, housekeeping_interval=0.1)
    body = '{"name": "version", "value": "agent"}'
    assert memory_host.raw(body, timeout=10, request_id="twice")["returncode"] == "0"
    wait_for(lambda: not memory_guest.list(GUEST_DIR))
    assert memory_host.raw(body, timeout=10, request_id="twice")["returncode"] == "0"
    wait_for(lambda: not memory_guest.list(GUEST_DIR))
    journal = open_journal(state_dir)
    [command] = journal.commands()
    wait_for(lambda: [t.trigger for t in open_journal(state_dir).transitions(command.id)][-1] == "collect")
    triggers = [t.trigger for t in open_journal(state_dir).transitions(command.id)]
    assert triggers == ["receive", "answer", "deliver", "collect", "deliver", "collect"]
    assert open_journal(state_dir).verify().ok


def test_replies_are_collected_while_a_reader_holds_the_journal(
        memory_agent, memory_host: Host, memory_guest: MemoryXenStore, state_dir: Path) -> None:
    """A reader that keeps one snapshot of the journal (``journal verify`` while it reads) holds the WAL
    checkpoints back; reply collection (and pruning) must not wait for it to finish, or replies pile up in
    data/guest against the domain's quota for as long as it reads."""
    import sqlite3

    from agent.journal import checkpoint
    from agent.journal.engine import DATABASE_NAME

    holder, _transport = memory_agent(reply_max_age=0.3, housekeeping_interval=0.2)
    reader = sqlite3.connect(state_dir / DATABASE_NAME, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM commands").fetchone()
        for n in range(150):
            assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10,
                                   request_id=f"read-{n}")["returncode"] == "0"
        assert holder.agent.journal is not None
        checkpointer = holder.agent.journal._checkpointer
        assert checkpointer is not None
        wait_for(lambda: checkpointer.left > checkpoint.CAUGHT_UP)  # the reader holds the passes back
        wait_for(lambda: not memory_guest.list(GUEST_DIR), timeout=20)
        assert reader.in_transaction
    finally:
        reader.close()


def test_a_housekeeping_interval_shorter_than_the_pace_still_prunes(memory_agent, state_dir: Path) -> None:
    """Every housekeeping run starts a reply collection again; with runs closer together than
    HOUSEKEEPING_PACE the prune still gets its batches (the two take turns), and the journal comes down to
    its bound."""
    _old_commands(state_dir, 100)
    memory_agent(retention_days=1e-9, keep_min=10, housekeeping_interval=0.002)
    wait_for(lambda: len(open_journal(state_dir).commands()) == 10, timeout=30)
    assert open_journal(state_dir).verify().ok


def test_collecting_an_old_reply_leaves_the_place_a_newer_command_holds(
        memory_agent, memory_guest: MemoryXenStore, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request id the host used again (another body): collecting the older command's reply leaves
    data/guest/<id> alone, since it holds the newer command's reply, which nova may not have read yet; the
    older command's collection is journaled as such, naming the newer command."""
    from datetime import timedelta

    from agent.journal import times

    now = times.wall_clock()
    journal = Journal.open(state_dir)
    monkeypatch.setattr(times, "wall_clock", lambda: now - timedelta(hours=2))
    old = journal.receive("again", HOME, "version", "version", "d" * 64, '"agent"')
    old = journal.mark_replied(journal.transition(old, "answer", "done", reply={"returncode": "0", "message": "1"}))
    monkeypatch.setattr(times, "wall_clock", lambda: now)
    new = journal.receive("again", HOME, "features", "features", "e" * 64, '""')
    journal.mark_replied(journal.transition(new, "answer", "done", reply={"returncode": "0", "message": "2"}))
    journal.close()
    memory_guest.write(f"{GUEST_DIR}/again", '{"returncode": "0", "message": "2"}')
    memory_agent(reply_max_age=3600, housekeeping_interval=3600)  # the old reply is due, the new one is not
    wait_for(lambda: open_journal(state_dir).get(old.id).reply_removed_at is not None)
    assert memory_guest.read(f"{GUEST_DIR}/again") == b'{"returncode": "0", "message": "2"}'
    collect = open_journal(state_dir).transitions(old.id)[-1]
    assert (collect.trigger, json.loads(collect.detail)) == ("collect", {"left_for_command": new.id})
    assert open_journal(state_dir).get(new.id).reply_removed_at is None


def test_pruning_that_fails_is_not_retried_in_a_tight_loop(memory_agent, memory_host: Host,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A pruning batch that fails after one that said more were due is left to the next housekeeping run: the
    daemon does not spin retrying it (and filling its log), and it goes on answering requests."""
    calls: list[int] = []

    def flaky(*_args: object, **_kwargs: object) -> retention.Pruned:
        calls.append(1)
        if len(calls) == 1:
            return retention.Pruned(1, more=True)
        raise JournalError("the disk is full")

    monkeypatch.setattr(retention, "prune", flaky)
    memory_agent(housekeeping_interval=3600)
    for _ in range(20):
        assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    assert len(calls) == 2, f"pruning was tried {len(calls)} times"


def test_a_reply_refused_in_a_batch_leaves_the_others_delivered(memory_agent, memory_guest: MemoryXenStore,
                                                                 state_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """When XenStore refuses one reply of a batch for a reason that may pass (EACCES, say), the others are
    delivered and journaled as delivered; the refused one stays undelivered, and is delivered later, once."""
    for request_id in ("a", "stuck", "b"):
        memory_guest.write(f"{HOST_DIR}/{request_id}", '{"name": "version", "value": "agent"}')
    refused: list[str] = []
    real = MemoryXenStore.write_many

    def refusing(self: MemoryXenStore, items: Any) -> list[XenStoreError | None]:
        if not refused and any(path.endswith("/stuck") for path, _ in items):
            refused.append("stuck")
            return [XenStoreError("XenStore refused write", errno.EACCES) if path.endswith("/stuck")
                    else real(self, [(path, value)])[0] for path, value in items]
        return real(self, items)

    monkeypatch.setattr(MemoryXenStore, "write_many", refusing)
    memory_agent(housekeeping_interval=0.2)
    wait_for(lambda: sorted(memory_guest.list(GUEST_DIR)) == ["a", "b", "stuck"])
    assert refused == ["stuck"], "the refusal was not met in the batch"
    wait_for(lambda: all(c.replied_at for c in open_journal(state_dir).commands()))
    journal = open_journal(state_dir)
    assert sorted(c.request_id for c in journal.commands()) == ["a", "b", "stuck"]
    assert not memory_guest.list(HOST_DIR)
    assert journal.verify().ok


def test_a_timer_that_keeps_failing_is_not_run_in_a_tight_loop(memory_agent, memory_host: Host,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A command type's timer whose journal write fails (a full disk under a key exchange's expiry) is tried
    again only after a pause, not at once in a loop that fills the log; requests are answered meanwhile."""
    calls: list[int] = []

    def failing(_journal: object, _now: float) -> None:
        calls.append(1)
        raise JournalError("journal write failed (OperationalError): check the disk")

    monkeypatch.setattr(REGISTRY["keyinit"], "next_due", classmethod(lambda cls, journal: 0.0))
    monkeypatch.setattr(REGISTRY["keyinit"], "when_due", classmethod(lambda cls, journal, now: failing(journal, now)))
    memory_agent(housekeeping_interval=3600)
    for _ in range(20):
        assert memory_host.raw('{"name": "version", "value": "agent"}', timeout=10)["returncode"] == "0"
    assert 1 <= len(calls) <= 2, f"the failing timer ran {len(calls)} times"


def test_a_reply_refused_for_good_does_not_hold_up_the_commands_taken_in_with_it(
        memory_agent, memory_guest: MemoryXenStore, system_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pure command whose reply XenStore keeps refusing (EACCES on a node the host made) does not stop the
    commands with effects taken in with it: they run and are answered."""
    inject = json.dumps({"name": "injectfile", "value": base64.b64encode(b"/etc/held-up,no\n").decode()})
    for request_id, body in (("bad", '{"name": "version", "value": "agent"}'), ("inj", inject),
                             ("ver", '{"name": "version", "value": "agent"}')):
        memory_guest.write(f"{HOST_DIR}/{request_id}", body)
    real = MemoryXenStore.write_many

    def refusing(self: MemoryXenStore, items: Any) -> list[XenStoreError | None]:
        return [XenStoreError("XenStore refused write", errno.EACCES) if path.endswith("/bad")
                else real(self, [(path, value)])[0] for path, value in items]

    monkeypatch.setattr(MemoryXenStore, "write_many", refusing)
    memory_agent(housekeeping_interval=3600)
    wait_for(lambda: sorted(memory_guest.list(GUEST_DIR)) == ["inj", "ver"])
    assert json.loads(memory_guest.read(f"{GUEST_DIR}/inj") or b"{}")["returncode"] == "0"
    assert (system_root / "etc/held-up").read_text() == "no\n"


def test_a_backlog_is_pruned_while_it_is_taken_in(memory_agent, memory_guest: MemoryXenStore, state_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog of many times journal.max_commands is pruned between its batches, not only once all of it
    is in: the journal never holds much more than the bound plus one batch."""
    for n in range(700):
        memory_guest.write(f"{HOST_DIR}/r{n:04}", '{"name": "version", "value": "agent"}')
    sizes: list[int] = []
    real = retention.prune

    def watched(journal: Journal, *args: Any, **kwargs: Any) -> retention.Pruned:
        sizes.append(journal.command_count())
        return real(journal, *args, **kwargs)

    monkeypatch.setattr(retention, "prune", watched)
    memory_agent(max_commands=100, keep_min=10, housekeeping_interval=3600)
    # Pruning takes the oldest replies out of data/guest with their commands: the host's side is what shows
    # that every request was taken.
    wait_for(lambda: not memory_guest.list(HOST_DIR), timeout=60)
    assert sizes and max(sizes) <= 102 + GROUP, f"the journal grew to {max(sizes)} before it was pruned"


class _DirectoryEvents(MemoryXenStore):
    """A transport whose watch events name the watched directory, not the request (as WMI's do)."""

    def next_event(self, timeout: float | None = None) -> tuple[str, str] | None:
        event = super().next_event(timeout)
        if event is not None and event[0].startswith(HOST_DIR + "/"):
            return HOST_DIR, event[1]
        return event


def test_events_naming_only_the_directory_leave_nothing_counted(memory_agent, memory_store: MemoryStore,
                                                                 memory_host: Host) -> None:
    """On a transport whose events name data/host itself, every request is answered by a scan, and the count
    of the agent's own deletes to skip does not grow with each answered request."""
    holder, _transport = memory_agent(transport=_DirectoryEvents(memory_store, HOME))
    for _ in range(20):
        assert memory_host.call("version", "agent", timeout=10)["returncode"] == "0"
    wait_for(lambda: not memory_store.connection(HOME).list(HOST_DIR))
    assert sum(holder.agent._own_deletes.values()) <= 1  # at most the last request's, until the next event

