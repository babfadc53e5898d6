"""journal list, show, export and verify: their exact output, and that they never write."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cli import main
from agent.journal import Journal
from agent.journal import times as journal_times
from tests.cli.conftest import run


def test_journal_list_table(journal_dir: Path) -> None:
    """The table lists commands newest first, one line each, '-' for what is not there."""
    code, out = run("journal", "list", "--state-dir", str(journal_dir))
    assert code == 0
    assert out == (
        "id  request_id  name     state   reply_code  attempts  received_at                  replied_at\n"
        "2   req-b       -        failed  500         1         2026-11-23T10:00:03.000000Z  -\n"
        "1   req-a       version  done    0           1         2026-11-23T10:00:00.000000Z  "
        "2026-11-23T10:00:02.000000Z\n"
    )


def test_journal_list_json_is_an_array_of_commands(journal_dir: Path) -> None:
    """--json prints a JSON array of command objects for scripts."""
    code, out = run("journal", "list", "--json", "--state-dir", str(journal_dir))
    commands = json.loads(out)
    assert code == 0
    assert [c["request_id"] for c in commands] == ["req-b", "req-a"]
    assert commands[1]["reply_message"] == "0.1.0"
    assert commands[1]["state"] == "done"


def test_journal_list_filters(journal_dir: Path) -> None:
    """--state and --name narrow the list."""
    _, out = run("journal", "list", "--json", "--state", "failed", "--state-dir", str(journal_dir))
    assert [c["id"] for c in json.loads(out)] == [2]
    _, out = run("journal", "list", "--json", "--name", "version", "--state-dir", str(journal_dir))
    assert [c["id"] for c in json.loads(out)] == [1]


def test_journal_show(journal_dir: Path) -> None:
    """show prints the command's fields and the exact path it took, with the redacted details."""
    code, out = run("journal", "show", "1", "--state-dir", str(journal_dir))
    assert code == 0
    assert out == (
        "command        1\n"
        "name           version\n"
        "machine        version\n"
        "state          done\n"
        "request        req-a\n"
        "domain         /local/domain/5\n"
        f"digest         {'a' * 64}\n"
        "attempts       1\n"
        "received       2026-11-23T10:00:00.000000Z\n"
        "finished       2026-11-23T10:00:01.000000Z\n"
        "reply          0 '0.1.0'\n"
        "replied        2026-11-23T10:00:02.000000Z\n"
        "reply removed  -\n"
        "\n"
        "seq  at                           trigger  source    dest      detail\n"
        '1    2026-11-23T10:00:00.000000Z  receive  -         received  {"digest": "aaaa"}\n'
        '2    2026-11-23T10:00:01.000000Z  answer   received  done      '
        '{"reply": {"message": "0.1.0", "returncode": "0"}}\n'
        "3    2026-11-23T10:00:02.000000Z  deliver  done      done      -\n"
    )


def test_journal_show_json(journal_dir: Path) -> None:
    """show --json gives the command with its transitions, details as objects."""
    _, out = run("journal", "show", "2", "--json", "--state-dir", str(journal_dir))
    document = json.loads(out)
    assert [t["trigger"] for t in document["transitions"]] == ["receive", "fail"]
    assert document["transitions"][1]["detail"]["error"] == "RequestRejected"


def test_journal_export_is_json_lines(journal_dir: Path, tmp_path: Path) -> None:
    """export writes one JSON object per command, oldest first, each with its transitions."""
    target = tmp_path / "export.jsonl"
    assert run("journal", "export", "--output", str(target), "--state-dir", str(journal_dir))[0] == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(c["id"], len(c["transitions"])) for c in lines] == [(1, 3), (2, 2)]


def test_journal_verify(journal_dir: Path) -> None:
    """verify reports an intact journal, then exit code 5 and the place once a row is edited."""
    assert run("journal", "verify", "--state-dir", str(journal_dir)) == (
        0, "journal verified: 5 transitions, every hash chain intact\n")
    with sqlite3.connect(journal_dir / "journal.sqlite3") as conn:
        conn.execute("UPDATE transitions SET trigger = 'forged' WHERE id = 2")
    code, _ = run("journal", "verify", "--state-dir", str(journal_dir))
    assert code == 5


def test_journal_verify_lists_every_problem(journal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failing, verify names the first problem and counts the others; --json lists them."""
    with sqlite3.connect(journal_dir / "journal.sqlite3") as conn:
        conn.execute("UPDATE commands SET attempts = 3")
    assert main(["journal", "verify", "--state-dir", str(journal_dir)], io.StringIO()) == 5
    assert capsys.readouterr().err == (
        "Error: journal verification failed: command 1: its attempts 3 is not what its transitions say (1) (and 1 "
        "more; --json lists up to 20); the journal was changed outside the agent or damaged, keep a copy for "
        "investigation\n")
    code, out = run("journal", "verify", "--json", "--state-dir", str(journal_dir))
    document = json.loads(out)
    assert (code, document["ok"], document["rows"], document["problem_count"]) == (5, False, 5, 2)
    assert document["problems"][1].startswith("command 2: its attempts 3")


@pytest.mark.parametrize("tamper", [
    pytest.param("UPDATE transitions SET trigger = 'forged' WHERE id = 2", id="transition-edited"),
    pytest.param("DELETE FROM commands WHERE id = 1", id="command-deleted"),
])
def test_journal_verify_json_counts_every_transition_of_a_tampered_journal(
        journal_dir: Path, capsys: pytest.CaptureFixture[str], tamper: str) -> None:
    """On a journal tampered through sqlite3, verify --json reports the 5 transitions it checked (also those
    past the break, or left without their command), exit code 5 and the message on stderr."""
    with sqlite3.connect(journal_dir / "journal.sqlite3") as conn:
        conn.execute(tamper)
    code, out = run("journal", "verify", "--json", "--state-dir", str(journal_dir))
    document = json.loads(out)
    assert (code, document["ok"], document["rows"]) == (5, False, 5)
    err = capsys.readouterr().err
    assert err.startswith(f"Error: journal verification failed: {document['problem']}")
    assert err.endswith("the journal was changed outside the agent or damaged, keep a copy for investigation\n")


def test_journal_verify_of_a_file_that_is_not_a_database(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A journal file overwritten with something else fails verification (exit 5) with a reason, no traceback;
    the other journal commands fail as a journal error (exit 4)."""
    (tmp_path / "journal.sqlite3").write_bytes(b"this is no database\n" * 300)
    assert main(["journal", "verify", "--state-dir", str(tmp_path)], io.StringIO()) == 5
    assert capsys.readouterr().err.startswith("Error: journal verification failed: the journal cannot be read "
                                              "(DatabaseError: file is not a database)")
    assert main(["journal", "list", "--state-dir", str(tmp_path)], io.StringIO()) == 4
    assert capsys.readouterr().err.startswith("Error: journal read failed (DatabaseError: file is not a database) "
                                              f"in {tmp_path}/journal.sqlite3")


def test_journal_commands_never_write(journal_dir: Path) -> None:
    """list, show, export and verify leave the state directory exactly as they found it: no -wal or -shm file,
    no mode changed, no schema migrated."""
    (journal_dir / "journal.sqlite3").chmod(0o640)
    with sqlite3.connect(journal_dir / "journal.sqlite3") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    before = {p.name: (p.stat().st_mode, p.stat().st_mtime_ns) for p in journal_dir.iterdir()}
    for argv in (["list"], ["show", "1"], ["export"], ["verify"]):
        assert run("journal", *argv, "--state-dir", str(journal_dir))[0] == 0, argv
    assert {p.name: (p.stat().st_mode, p.stat().st_mtime_ns) for p in journal_dir.iterdir()} == before


def test_journal_list_says_a_broken_journal_was_replaced(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """After the agent moved a broken journal aside, 'journal list' says so on stderr (text and --json)."""
    (tmp_path / "journal.sqlite3").write_bytes(b"")
    Journal.open(tmp_path).close()
    [moved] = tmp_path.glob("journal.sqlite3.broken-*")
    for json_flag in ([], ["--json"]):
        code, out = run("journal", "list", *json_flag, "--state-dir", str(tmp_path))
        err = capsys.readouterr().err
        assert code == 0 and (json.loads(out) == [] if json_flag else out.startswith("id"))
        assert err.startswith("Note: this journal was started on ")
        assert err.endswith(f"because the previous one was unusable (the file is empty); it was moved aside to "
                            f"{moved}\n")


NOW = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)


@pytest.fixture
def timed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal whose commands took known times, with the wall clock at 10:05: a version (1.5 s), a password
    (5 s, mostly applying), a resetnetwork still switching, the version's request id used again (0.1 s), a
    request named 'verison' (rejected) and a request whose id is all digits."""
    clock: list[str] = []
    monkeypatch.setattr(journal_times, "utcnow", lambda: clock.pop(0))
    monkeypatch.setattr(journal_times, "wall_clock", lambda: NOW)
    journal = Journal.open(tmp_path / "timed")

    def command(request_id: str, name: str | None, machine: str, steps: list[tuple[str, str]],
                reply: dict[str, str] | None = None, delivered: str | None = None) -> None:
        """Receive at the first step's time, then move through the others; the last one journals ``reply``."""
        clock.extend(f"2026-11-23T{at}Z" for _, at in steps)
        record = journal.receive(request_id, "/local/domain/5", name, machine, "d" * 64, None)
        for number, (dest, _) in enumerate(steps[1:], start=2):
            record = journal.transition(record, "go", dest, reply=reply if number == len(steps) else None)
        if delivered:
            clock.append(f"2026-11-23T{delivered}Z")
            journal.mark_replied(record)

    answer = {"returncode": "0", "message": "ok"}
    command("req-a", "version", "version", [("received", "10:00:00.000000"), ("done", "10:00:01.500000")],
            answer, delivered="10:00:03.000000")
    command("req-p", "password", "password", [
        ("received", "10:01:00.000000"), ("applying", "10:01:00.250000"), ("applied", "10:01:04.250000"),
        ("done", "10:01:05.000000")], answer, delivered="10:01:06.000000")
    command("req-n", "resetnetwork", "resetnetwork", [("received", "10:02:00.000000"),
                                                      ("switching", "10:02:30.000000")])
    command("req-a", "version", "version", [("received", "10:03:00.000000"), ("done", "10:03:00.100000")],
            answer, delivered="10:03:00.200000")
    command("req-v", "verison", "rejected", [("received", "10:04:00.000000"), ("failed", "10:04:00.010000")],
            {"returncode": "404", "message": "No such agent command 'verison'"})
    command("4242", "features", "features", [("received", "10:04:30.000000"), ("done", "10:04:30.020000")],
            answer)
    journal.close()
    return tmp_path / "timed"
