"""Retention and key-exchange lifetimes against clock jumps and floods: the newest commands always stay, the
journal has a size cap, and a secret's lifetime is measured on the monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.journal import Journal, exchanges, iso, retention
from agent.journal import times as journal_times

DAY = timedelta(days=1)


class Clock:
    """The journal's wall clock, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta()
        real = journal_times.wall_clock
        monkeypatch.setattr(journal_times, "wall_clock", lambda: real() + self.offset)

    def now(self) -> datetime:
        return journal_times.wall_clock()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal.open(tmp_path)
    yield journal
    journal.close()


def version_command(journal: Journal, request_id: str, finish: bool = True, deliver: bool = True) -> int:
    record = journal.receive(request_id, "", "version", "version", "d" * 64, '"agent"')
    if finish:
        record = journal.transition(record, "answer", "done", reply={"returncode": "0", "message": "1.0"})
        if deliver:
            record = journal.mark_replied(record)
    return record.id


def keyinit(journal: Journal, request_id: str, lifetime: float) -> int:
    """A keyinit that opened an exchange of ``lifetime`` seconds (by the wall clock it was opened at)."""
    record = journal.receive(request_id, "", "keyinit", "keyinit", "k" * 64, '"5"')
    expires = iso(journal_times.wall_clock() + timedelta(seconds=lifetime))
    record = journal.transition(record, "exchange", "exchanged",
                                records=exchanges.opens("99", "4242", expires, 107))
    journal.mark_replied(journal.transition(record, "answer", "done", reply={"returncode": "D0", "message": "99"}))
    exchange = exchanges.opened_by(journal, record.id)
    assert exchange is not None
    return exchange.id


def cutoff(clock: Clock, days: float = 90) -> str:
    """What the daemon's housekeeping asks retention for: finished more than ``days`` ago."""
    return iso(clock.now() - days * DAY)


def test_wall_clock_jump_keeps_the_newest_commands(journal: Journal, clock: Clock) -> None:
    """Wall clock +100 days: retention prunes what is old by that clock, but never the newest keep_min."""
    ids = [version_command(journal, f"r{n}") for n in range(30)]
    clock.offset = 100 * DAY
    assert retention.prune(journal, cutoff(clock), keep_min=10, max_commands=50_000, limit=100).count == 20
    assert [c.id for c in journal.commands()] == ids[:-11:-1]
    assert journal.verify().ok


def test_flood_is_capped_without_losing_unfinished_work(journal: Journal, clock: Clock) -> None:
    """Past max_commands the oldest finished and delivered commands go; unfinished and undelivered ones,
    and the newest keep_min, stay; the chain still verifies."""
    unfinished = [version_command(journal, f"u{n}", finish=False) for n in range(3)]
    undelivered = [version_command(journal, f"d{n}", deliver=False) for n in range(2)]
    delivered = [version_command(journal, f"r{n}") for n in range(40)]
    newest_unfinished = version_command(journal, "last", finish=False)
    assert journal.command_count() == 46
    assert retention.prune(journal, cutoff(clock), keep_min=5, max_commands=20, limit=100).count == 26
    remaining = {c.id for c in journal.commands()}
    assert len(remaining) == journal.command_count() == 20
    assert {*unfinished, *undelivered, newest_unfinished, *delivered[-4:]} <= remaining
    assert journal.verify().ok, journal.verify()
    assert retention.prune(journal, cutoff(clock), keep_min=5, max_commands=20).count == 0


def test_cap_cannot_go_below_what_must_stay(journal: Journal, clock: Clock) -> None:
    """When only commands that must stay are left, the cap gives way rather than the audit trail."""
    ids = [version_command(journal, f"u{n}", finish=False) for n in range(6)]
    ids += [version_command(journal, f"r{n}") for n in range(4)]
    assert retention.prune(journal, cutoff(clock), keep_min=4, max_commands=2).count == 0
    assert sorted(c.id for c in journal.commands()) == ids


def test_open_exchange_outlives_retention(journal: Journal, clock: Clock) -> None:
    """A keyinit whose exchange is still open is never pruned: its password may still come."""
    exchange = keyinit(journal, "k", lifetime=3600)
    for n in range(5):
        version_command(journal, f"r{n}")
    clock.offset = 100 * DAY
    assert retention.prune(journal, cutoff(clock), keep_min=1, max_commands=1).count == 4
    assert exchanges.every(journal)[0].id == exchange and exchanges.every(journal)[0].state == "open"
    assert journal.verify().ok


def test_wall_clock_set_back_does_not_keep_a_secret(journal: Journal, clock: Clock) -> None:
    """Wall clock -2 h while the agent runs: the exchange still expires when its lifetime is over."""
    start = time.monotonic()
    exchange_id = keyinit(journal, "k", lifetime=1)
    clock.offset = -2 * timedelta(hours=1)
    expiry = exchanges.next_expiry(journal)
    assert expiry is not None and start + 1 <= expiry <= time.monotonic() + 1
    [exchange] = exchanges.every(journal)
    assert not exchanges.expired(journal, exchange, now=expiry - 0.01)
    assert exchanges.expired(journal, exchange, now=expiry)
    assert exchanges.expire(journal, expiry - 0.01) == 0
    assert exchanges.expire(journal, expiry) == 1
    [exchange] = exchanges.every(journal)
    assert (exchange.id, exchange.state, exchange.secret) == (exchange_id, "expired", None)
    assert exchanges.next_expiry(journal) is None
    assert journal.verify().ok


def test_wall_clock_set_forward_does_not_cut_a_running_exchange(journal: Journal, clock: Clock) -> None:
    """Wall clock +2 h while the agent runs: the exchange keeps the lifetime it was given."""
    keyinit(journal, "k", lifetime=600)
    clock.offset = 2 * timedelta(hours=1)
    [exchange] = exchanges.every(journal)
    assert not exchanges.expired(journal, exchange)
    assert exchanges.expire(journal, time.monotonic()) == 0


def test_exchange_from_an_earlier_process_never_outlives_its_lifetime(tmp_path: Path, clock: Clock) -> None:
    """After a restart the remaining lifetime comes from the wall clock, but never more than the whole
    lifetime (a clock set back while the agent was down) and nothing once it is over (set forward)."""
    journal = Journal.open(tmp_path)
    keyinit(journal, "k", lifetime=600)
    journal.close()
    clock.offset = -5 * timedelta(hours=1)
    journal = Journal.open(tmp_path)
    expiry = exchanges.next_expiry(journal)
    assert expiry is not None and expiry <= time.monotonic() + 600
    journal.close()
    clock.offset = timedelta(minutes=11)
    journal = Journal.open(tmp_path)
    assert exchanges.expire(journal, time.monotonic()) == 1
    assert exchanges.every(journal)[0].secret is None
    journal.close()


def test_abandoned_exchange_is_wiped(journal: Journal) -> None:
    """A password command giving up closes the exchange as abandoned and wipes its secret, in its transition."""
    exchange_id = keyinit(journal, "k", lifetime=600)
    record = journal.receive("p", "", "password", "password", "p" * 64, None)
    journal.transition(record, "fail", "failed", reply={"returncode": "500", "message": "gave up"},
                       records=exchanges.abandons(exchange_id))
    [exchange] = exchanges.every(journal)
    assert (exchange.state, exchange.secret, exchange.closed_at is not None) == ("abandoned", None, True)
    assert exchanges.next_expiry(journal) is None
    assert journal.verify().ok


def test_command_count_follows_receives_and_prunes(journal: Journal, clock: Clock) -> None:
    for n in range(12):
        version_command(journal, f"r{n}")
    assert journal.command_count() == 12
    version_command(journal, "one more")
    assert journal.command_count() == 13
    retention.prune(journal, cutoff(clock), keep_min=3, max_commands=5)
    assert journal.command_count() == 5 == len(journal.commands())


def _counts(path: Path) -> tuple[int, list[str]]:
    """A new handle's command count, and the statements it ran to learn it."""
    statements: list[str] = []
    fresh = Journal.open(path)
    try:
        fresh.driver.set_trace_callback(statements.append)
        return fresh.command_count(), statements
    finally:
        fresh.close()


def test_a_new_handle_reads_the_count_from_its_seal_without_counting(journal: Journal, tmp_path: Path,
                                                                     clock: Clock) -> None:
    """The count survives the process in the ``count`` seal, kept in the transactions that receive and prune:
    a new handle (a restarted agent) learns it from two index lookups, never a scan of a large journal."""
    for n in range(12):
        version_command(journal, f"r{n}")
    retention.prune(journal, cutoff(clock), keep_min=3, max_commands=5)
    version_command(journal, "after the prune")
    count, statements = _counts(tmp_path)
    assert count == 6 == len(journal.commands())
    assert not [statement for statement in statements if "count(" in statement.lower()]


@pytest.mark.parametrize("change", ["older release added one", "older release pruned", "seal edited",
                                    "seal removed"])
def test_a_count_seal_that_no_longer_fits_is_counted_again(journal: Journal, tmp_path: Path, change: str) -> None:
    """A seal whose ids are no longer the journal's oldest and newest (a release without the seal wrote after
    a rollback), or that was edited or removed, is not trusted: the count comes from the table."""
    for n in range(5):
        version_command(journal, f"r{n}")
    with journal.driver as connection:
        if change == "older release added one":
            connection.execute("INSERT INTO commands (id, request_id, domain_path, machine, digest, state, attempts, "
                               "received_at, updated_at, last_seq, last_hash) SELECT max(id) + 1, 'old', '', "
                               "'version', 'd', 'received', 1, 'now', 'now', 0, '' FROM commands")
        elif change == "older release pruned":
            connection.execute("DELETE FROM commands WHERE id = (SELECT min(id) FROM commands)")
        elif change == "seal edited":
            connection.execute("UPDATE seals SET value = 'many' WHERE key = 'count'")
        else:
            connection.execute("DELETE FROM seals WHERE key = 'count'")
    expected = {"older release added one": 6, "older release pruned": 4}.get(change, 5)
    assert _counts(tmp_path)[0] == expected


@pytest.mark.parametrize("sealed", ["0:1:5", "6:1:5", "-1:1:5"])
def test_a_count_seal_that_cannot_be_right_is_counted_again(journal: Journal, tmp_path: Path, sealed: str) -> None:
    """A seal whose ids fit but whose count cannot (none, or more than the ids span) is not trusted."""
    for n in range(5):
        version_command(journal, f"r{n}")
    with journal.driver as connection:
        connection.execute("UPDATE seals SET value = ? WHERE key = 'count'", (sealed,))
    assert _counts(tmp_path)[0] == 5


def test_verify_reports_a_count_seal_edited_within_reason(journal: Journal, tmp_path: Path) -> None:
    """A count seal edited to a count its ids allow would be trusted: ``journal verify`` reports it."""
    for n in range(5):
        version_command(journal, f"r{n}")
    assert journal.verify().ok
    with journal.driver as connection:
        connection.execute("UPDATE seals SET value = '3:1:5' WHERE key = 'count'")
    verification = journal.verify()
    assert not verification.ok
    assert any("the count seal says 3 commands, the journal holds 5" in problem
               for problem in verification.problems)


def test_a_prune_by_another_handle_is_not_counted_twice(journal: Journal, tmp_path: Path, clock: Clock) -> None:
    """Two handles on one journal: each prune reads the count the seal has in its own transaction, so one
    handle's prune does not leave the other removing commands by a count that is no longer true."""
    for n in range(20):
        version_command(journal, f"r{n}")
    assert journal.command_count() == 20
    other = Journal.open(tmp_path)
    try:
        retention.prune(other, cutoff(clock), keep_min=1, max_commands=15)
    finally:
        other.close()
    while retention.prune(journal, cutoff(clock), keep_min=1, max_commands=10).more:
        pass
    assert journal.command_count() == 10 == len(journal.commands())
    assert _counts(tmp_path)[0] == 10


@pytest.mark.parametrize("reason", ["age", "size"])
def test_pruning_goes_in_small_batches_and_the_chain_holds_after_each(journal: Journal, clock: Clock,
                                                                      reason: str) -> None:
    """However many commands are due, one call removes at most ``limit`` of them, oldest first, and says
    whether more are due; the chain verifies after every call, and the calls end where one big prune would."""
    stays = version_command(journal, "long-running", finish=False)
    ids = [version_command(journal, f"r{n}") for n in range(100)]
    if reason == "age":
        clock.offset = 100 * DAY
    max_commands = 50_000 if reason == "age" else 21
    removed: list[int] = []
    while True:
        before = {c.id for c in journal.commands()}
        pruned = retention.prune(journal, cutoff(clock), keep_min=10, max_commands=max_commands, limit=16)
        after = {c.id for c in journal.commands()}
        assert pruned.count == len(before - after) <= 16
        assert sorted(before - after) == ids[len(removed):len(removed) + pruned.count], "not oldest first"
        removed += sorted(before - after)
        assert journal.verify().ok, journal.verify()
        if not pruned.more:
            break
    kept = 10 if reason == "age" else 20
    assert sorted(c.id for c in journal.commands()) == [stays, *ids[-kept:]]
    assert retention.prune(journal, cutoff(clock), keep_min=10, max_commands=max_commands, limit=16).count == 0


def test_recovery_and_reply_collection_read_only_the_open_commands(journal: Journal,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The queries a start and every housekeeping run make read the index of commands whose reply is not
    collected yet, not every command: they stay fast in a journal of a million commands."""
    version_command(journal, "r1")
    asked: list[tuple[str, object]] = []
    real = journal.query
    monkeypatch.setattr(journal, "query", lambda sql, params=(): asked.append((sql, params)) or real(sql, params))
    journal.unfinished()
    journal.undelivered()
    retention.replies_to_collect(journal, 10, "9999", 10)
    assert len(asked) == 3
    for sql, params in asked:
        plan = journal.driver.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        assert "USING INDEX ix_commands_open" in plan[0][3], (sql, plan)


def test_a_pruned_command_leaves_a_reply_place_that_a_newer_command_holds(journal: Journal, clock: Clock) -> None:
    """A host that used a request id again (another body) has its newer command's reply at the same place in
    data/guest: pruning the older command does not name that place for removal; another's, it does."""
    version_command(journal, "reused")
    version_command(journal, "alone")
    journal.receive("reused", "", "features", "features", "e" * 64, '""')  # the same id, another request
    pruned = retention.prune(journal, cutoff(clock), keep_min=1, max_commands=1)
    assert pruned.count == 2
    assert pruned.replies == ("alone",)


def test_superseded_names_the_newest_command_under_the_same_request_id(journal: Journal) -> None:
    """``superseded`` maps each command that a newer one shares its request id with to the newest of them, as
    long as the newest one's reply is not collected: once it is, the place holds nobody else's reply, and an
    older command's collection removes what is there (an older reply delivered after it would stay for ever)."""
    first = version_command(journal, "r")
    other = version_command(journal, "s")
    second = version_command(journal, "r")
    third = version_command(journal, "r")
    assert retention.superseded(journal, [first, other, second, third]) == {first: third, second: third}
    retention.mark_replies_removed(journal, [third])
    assert retention.superseded(journal, [first, other, second, third]) == {}


def test_superseded_seeks_the_newest_command_of_a_request_id(journal: Journal,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``superseded`` finds the newest command under a request id with one seek in its index, not by reading
    every command that shares the id: a host that used one id thousands of times does not slow a prune."""
    first = version_command(journal, "r")
    version_command(journal, "r")
    asked: list[tuple[str, object]] = []
    real = journal.query
    monkeypatch.setattr(journal, "query", lambda sql, params=(): asked.append((sql, params)) or real(sql, params))
    retention.superseded(journal, [first])
    [(sql, params)] = asked
    plan = [row[3] for row in journal.driver.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert plan[0].startswith("SEARCH old USING INTEGER PRIMARY KEY"), plan
    assert any("COVERING INDEX ix_commands_request_id (request_id=?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


@pytest.mark.parametrize("deliveries", [1, 2])
@pytest.mark.parametrize(("left_in_the_column", "ok"), [("none", True), ("the collect's time", True),
                                                        ("another time", False)])
def test_verify_takes_a_delivery_after_a_collection_as_making_the_reply_due_again(
        journal: Journal, deliveries: int, left_in_the_column: str, ok: bool) -> None:
    """After a collect, a deliver (a request sent again, once or more) puts the reply back: reply_removed_at is
    none again. An older agent left the collect's time in the column, which verify accepts too; any other value
    not."""
    command_id = version_command(journal, "again")
    retention.mark_replies_removed(journal, [command_id])
    collected_at = journal.get(command_id).reply_removed_at
    for _ in range(deliveries):
        journal.mark_replied(journal.get(command_id))
    assert journal.get(command_id).reply_removed_at is None
    value = {"none": None, "the collect's time": collected_at, "another time": "2000-01-01T00:00:00.000000Z"}
    journal.driver.execute("UPDATE commands SET reply_removed_at = ? WHERE id = ?",
                           (value[left_in_the_column], command_id))
    assert journal.verify().ok is ok
