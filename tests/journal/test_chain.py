"""What ``verify`` proves: every column recovery and the audit rely on, the chain between commands, the exchange
and release tables, the file's pages, and one consistent snapshot of a journal the agent is writing."""

from __future__ import annotations

import io
import random
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.journal import Journal, exchanges, releases, retention
from agent.journal.engine import DATABASE_NAME

DOMAIN = "/local/domain/5"


def version_command(journal: Journal, request_id: str, deliver: bool = True) -> int:
    record = journal.receive(request_id, DOMAIN, "version", "version", "d" * 64, '"agent"')
    record = journal.transition(record, "answer", "done", reply={"returncode": "0", "message": "1.0"})
    if deliver:
        journal.mark_replied(record)
    return record.id


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A journal of every kind of row: 1 collected, 2 recovered, 3 a keyinit with its exchange, 4 unfinished,
    and two releases."""
    journal = Journal.open(tmp_path / "state")
    retention.mark_replies_removed(journal, [version_command(journal, "r1")])
    recovered = journal.record_attempt(journal.receive("r2", DOMAIN, "version", "version", "e" * 64, '"agent"'))
    journal.mark_replied(journal.transition(recovered, "answer", "done", reply={"returncode": "0", "message": "1.0"}))
    keyinit = journal.receive("r3", DOMAIN, "keyinit", "keyinit", "f" * 64, '"123"')
    keyinit = journal.transition(keyinit, "exchange", "exchanged", records=exchanges.opens(
        "99", "4242", "2099-01-01T00:00:00.000000Z", 107))
    journal.mark_replied(journal.transition(keyinit, "answer", "done", reply={"returncode": "D0", "message": "99"}))
    journal.receive("r4", DOMAIN, "password", "password", "a" * 64, None)
    releases.mark(journal, "1.0.0", "good", "installed")
    releases.mark(journal, "1.1.0", "bad", "crashed")
    assert journal.verify().ok, journal.verify()
    journal.close()
    yield tmp_path / "state"


def edit(state_dir: Path, *statements: str) -> None:
    with sqlite3.connect(state_dir / DATABASE_NAME) as conn:
        for sql in statements:
            assert conn.execute(sql).rowcount >= 1, sql


EDITS = [
    pytest.param("UPDATE commands SET machine = 'rejected' WHERE id = 1", "command 1: transition 1", id="machine"),
    pytest.param("UPDATE commands SET value = '\"other\"' WHERE id = 1", "command 1: transition 1", id="value"),
    pytest.param("UPDATE commands SET domain_path = '/local/domain/6' WHERE id = 1", "command 1: transition 1",
                 id="domain"),
    pytest.param("UPDATE commands SET name = NULL WHERE id = 1", "command 1: transition 1", id="name"),
    pytest.param("UPDATE commands SET received_at = '2020-01-01T00:00:00.000000Z' WHERE id = 1",
                 "command 1: transition 1", id="received-at"),
    pytest.param("UPDATE commands SET attempts = 1 WHERE id = 2", "command 2: its attempts 1", id="attempts"),
    pytest.param("UPDATE commands SET replied_at = NULL WHERE id = 2", "command 2: its replied_at", id="replied-at"),
    pytest.param("UPDATE commands SET finished_at = updated_at WHERE id = 2", "command 2: its finished_at",
                 id="finished-at"),
    pytest.param("UPDATE commands SET reply_removed_at = NULL WHERE id = 1", "command 1: its reply_removed_at",
                 id="reply-removed-at"),
    pytest.param("UPDATE commands SET reply_removed_at = replied_at WHERE id = 2", "command 2: its reply_removed_at",
                 id="reply-removed-set"),
    pytest.param("UPDATE commands SET updated_at = received_at WHERE id = 1", "command 1: its updated_at",
                 id="updated-at"),
    pytest.param("UPDATE commands SET reply_code = '500' WHERE id = 2", "command 2: its stored reply", id="reply"),
    pytest.param("UPDATE commands SET state = 'done' WHERE id = 4", "command 4: its state 'done'", id="state"),
    pytest.param("DELETE FROM transitions WHERE command_id = 2; DELETE FROM commands WHERE id = 2",
                 "command 3: transition 1 is missing or out of place, or the command row was altered, or the "
                 "command before it was deleted", id="delete-command"),
    pytest.param("DELETE FROM commands WHERE id = 2", "command 2: its transitions are in the journal but the command "
                 "is not", id="delete-command-row"),
    pytest.param("DELETE FROM transitions WHERE command_id = 4; DELETE FROM commands WHERE id = 4",
                 "the newest commands are missing: the journal ended at command 4, it now ends at 3",
                 id="delete-newest"),
    pytest.param("INSERT INTO commands SELECT 5, 'r5', domain_path, name, machine, value, digest, state, attempts, "
                 "received_at, updated_at, finished_at, reply_code, reply_message, replied_at, reply_removed_at, "
                 "last_seq, last_hash, data FROM commands WHERE id = 4", "command 5: its state", id="insert-command"),
    pytest.param("UPDATE exchanges SET state = 'consumed'", "the exchanges table was changed", id="exchange-state"),
    pytest.param("UPDATE exchanges SET secret = NULL", "the exchanges table was changed", id="exchange-wiped"),
    pytest.param("UPDATE exchanges SET expires_at = '2199-01-01T00:00:00.000000Z'", "the exchanges table was changed",
                 id="exchange-expiry"),
    pytest.param("DELETE FROM exchanges", "the exchanges table was changed", id="exchange-delete"),
    pytest.param("INSERT INTO exchanges (command_id, opened_at, expires_at, public_key, group_bits, state) "
                 "VALUES (3, 'a', 'b', '1', 107, 'consumed')", "the exchanges table was changed", id="exchange-insert"),
    pytest.param("UPDATE releases SET state = 'good' WHERE version = '1.1.0'", "the releases table was changed",
                 id="release-state"),
    pytest.param("DELETE FROM releases WHERE version = '1.1.0'", "the releases table was changed", id="release-delete"),
    pytest.param("INSERT INTO releases VALUES ('2.0.0', 'bad', '', 'x')", "the releases table was changed",
                 id="release-insert"),
    pytest.param("DELETE FROM seals WHERE key = 'head'", "the head seal is missing", id="seal-head"),
    pytest.param("UPDATE seals SET value = '3' WHERE key = 'chain_from'", "command 3: transition 1", id="seal-from"),
    pytest.param("INSERT INTO seals VALUES ('anchor:3', 'x')", "the anchors of commands", id="seal-anchor"),
]


@pytest.mark.parametrize(("sql", "problem"), EDITS)
def test_verify_detects_every_edit(state_dir: Path, sql: str, problem: str) -> None:
    """An edit of any column recovery or the audit relies on, a command deleted or added, and any change to
    the exchange and release tables or the seals is reported, with the place named."""
    edit(state_dir, *sql.split("; "))
    result = Journal.open_readonly(state_dir).verify()
    assert not result.ok
    assert any(p.startswith(problem) for p in result.problems), result.problems


def test_one_edit_is_one_problem(state_dir: Path) -> None:
    """An edited command is reported once: the next command's link is checked against what was journaled."""
    edit(state_dir, "UPDATE commands SET value = '\"other\"' WHERE id = 2")
    result = Journal.open_readonly(state_dir).verify()
    assert (result.problem_count, result.problems[0][:10]) == (1, "command 2:")


def test_rows_count_what_was_checked_even_on_failure(state_dir: Path) -> None:
    """A failed verification still says how much it checked, and goes on past the first problem."""
    edit(state_dir, "UPDATE commands SET attempts = 7 WHERE id = 1", "UPDATE releases SET reason = 'x'")
    result = Journal.open_readonly(state_dir).verify()
    assert (result.ok, result.rows, result.commands, result.problem_count) == (False, 13, 4, 2)


def test_surrogates_are_journaled_and_verified(tmp_path: Path) -> None:
    """A lone surrogate (valid JSON, not UTF-8) in any text the journal is given neither raises nor breaks the
    chain; the request is found again by its id."""
    journal = Journal.open(tmp_path)
    record = journal.receive("r\udfff", DOMAIN, "\ud800", "rejected", "d" * 64, '"\ud800"', detail={"n": "\ud800"})
    record = journal.transition(record, "fail", "failed",
                                reply={"returncode": "404", "message": "No such agent command '\ud800'"})
    journal.mark_replied(record)
    found = journal.find_request("r\udfff")
    assert found is not None and found.id == record.id
    assert found.name == "\\ud800" and found.reply == {"returncode": "404",
                                                       "message": "No such agent command '\\ud800'"}
    assert journal.verify().ok, journal.verify()


def test_collected_replies_are_transitions(tmp_path: Path) -> None:
    """Removing replies journals one 'collect' per command, in one transaction, and keeps each state."""
    journal = Journal.open(tmp_path)
    ids = [version_command(journal, f"r{n}") for n in range(3)]
    retention.mark_replies_removed(journal, ids[:2])
    assert [journal.transitions(i)[-1].trigger for i in ids] == ["collect", "collect", "deliver"]
    assert [(c.state, c.reply_removed_at is not None) for c in map(journal.get, ids)] == [
        ("done", True), ("done", True), ("done", False)]
    assert journal.verify().ok


def test_pruning_keeps_the_chain_checkable(tmp_path: Path) -> None:
    """Retention removes finished commands between unfinished ones; the remaining chain still verifies, a
    deletion outside the agent is still seen, and anchors do not outlive their commands."""
    journal = Journal.open(tmp_path)
    kept = []
    for n in range(30):
        if n % 7 == 3:
            kept.append(journal.receive(f"open{n}", DOMAIN, "version", "version", "d" * 64, None).id)
        else:
            version_command(journal, f"r{n}", deliver=n % 11 != 5)
    for _round in range(3):
        retention.prune(journal, "9999", keep_min=4, max_commands=1000)
        assert journal.verify().ok, journal.verify()
        for n in range(5):
            version_command(journal, f"more{_round}-{n}")
    remaining = [c.id for c in journal.commands()]
    assert set(kept) <= set(remaining)
    with sqlite3.connect(journal.path) as conn:
        anchors = [int(k.split(":")[1]) for (k,) in conn.execute("SELECT key FROM seals WHERE key LIKE 'anchor:%'")]
    assert anchors and set(anchors) <= set(remaining)
    middle = sorted(remaining)[len(remaining) // 2]
    edit(tmp_path, f"DELETE FROM transitions WHERE command_id = {middle}", f"DELETE FROM commands WHERE id = {middle}")
    result = journal.verify()
    assert not result.ok and "command before it was deleted" in result.problem
    journal.close()


def test_verify_reads_one_snapshot_while_the_agent_writes(tmp_path: Path) -> None:
    """'journal verify', run again and again while commands are journaled, finished and delivered, never
    reports a problem: it reads one consistent snapshot."""
    writer = Journal.open(tmp_path)
    version_command(writer, "first")
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            n = 0
            while not stop.is_set():
                record = writer.receive(f"w{n}", DOMAIN, "version", "version", "d" * 64, None)
                record = writer.record_attempt(record)
                record = writer.transition(record, "answer", "done", reply={"returncode": "0", "message": "1"})
                retention.mark_replies_removed(writer, [writer.mark_replied(record).id])
                n += 1
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        outcomes = [main(["journal", "verify", "--state-dir", str(tmp_path)], io.StringIO()) for _ in range(60)]
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert not errors
    assert outcomes == [0] * 60


def build_journal(state_dir: Path, commands: int) -> Path:
    journal = Journal.open(state_dir)
    journal.driver.execute("PRAGMA synchronous=OFF")  # a test fixture; durability is not what is tested
    for n in range(commands):
        version_command(journal, f"request-{n:06d}")
    journal.close()
    return state_dir / DATABASE_NAME


def test_damaged_pages_are_reported(tmp_path: Path) -> None:
    """Whichever page of a real journal is overwritten, verify reports the journal damaged (it said "intact"
    for 6 corrupted files in 10)."""
    original = build_journal(tmp_path / "original", 400)
    with sqlite3.connect(original) as conn:
        pages, size, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "page_size", "freelist_count"))
    assert (free, pages > 20) == (0, True)  # every page is in use, so each one overwritten is damage
    chance = random.Random(8)
    for trial in range(10):
        state = tmp_path / f"damaged{trial}"
        state.mkdir()
        shutil.copy(original, state / DATABASE_NAME)
        page = chance.randrange(1, pages)  # 0-based: never page 1, the header (tested on its own)
        with open(state / DATABASE_NAME, "r+b") as fh:
            fh.seek(page * size)
            fh.write(chance.randbytes(size))
        result = Journal.open_readonly(state).verify()
        assert not result.ok, f"page {page + 1} overwritten, yet verified"


@pytest.mark.parametrize("wal", [False, True], ids=["alone", "beside-a-wal"])
@pytest.mark.parametrize("damage", ["header", "truncated", "garbage", "empty"])
def test_unreadable_files_fail_verification_clearly(tmp_path: Path, damage: str, wal: bool) -> None:
    """A file that is not (or no longer) a database fails verification with a reason, never a traceback, also
    with the WAL a killed agent leaves beside it."""
    database = build_journal(tmp_path, 50)
    content = database.read_bytes()
    damaged = {"header": b"\0" * 100 + content[100:], "truncated": content[: len(content) // 3],
               "garbage": random.Random(1).randbytes(len(content)), "empty": b""}[damage]
    database.write_bytes(damaged)
    if wal:
        database.with_name(database.name + "-wal").touch()
    result = Journal.open_readonly(tmp_path).verify()
    assert not result.ok
    assert result.problem
