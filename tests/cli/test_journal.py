"""journal list, show, export and verify: their exact output, and that they never write."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.journal import duration
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
    request named 'verison' (rejected), and two whose request ids are all digits: 4242, and 1 (command 1's id)."""
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
    command("1", "features", "features", [("received", "10:04:40.000000"), ("done", "10:04:40.030000")], answer)
    journal.close()
    return tmp_path / "timed"


STATES = ("activating, applied, applying, committed, confirming, done, downloading, exchanged, failed, received, "
          "restarting, rolled_back, rolling_back, setting_server, staging, switching, verifying, writing, written")
COMMANDS = "agentupdate, features, file_inject, injectfile, keyinit, kmsactivate, password, resetnetwork, version"


STATE_ERROR = f"--state 'bogus' is not a state of any command; the states are: {STATES}"
NAME_ERROR = f"--name 'nope' is not a command the agent knows or the journal holds; the commands are: {COMMANDS}"


@pytest.mark.parametrize(("argv", "error"), [
    pytest.param(["list", "--state", "bogus"], STATE_ERROR, id="list-state"),
    pytest.param(["list", "--name", "nope"], NAME_ERROR, id="list-name"),
    pytest.param(["timing", "--name", "nope"], NAME_ERROR, id="timing-name"),
])
def test_journal_filters_refuse_what_cannot_exist(timed_dir: Path, capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], error: str) -> None:
    """An unknown --state or --name is an error (exit 2) naming what exists, not an empty table."""
    assert run("journal", *argv, "--state-dir", str(timed_dir)) == (2, "")
    assert capsys.readouterr().err == f"Error: {error}\n"


@pytest.mark.parametrize(("flag", "value", "ids"), [
    pytest.param("--state", "switching", [3], id="state-of-a-machine"),
    pytest.param("--state", "written", [], id="state-no-command-is-in"),
    pytest.param("--name", "verison", [5], id="unknown-name-the-host-sent"),
    pytest.param("--name", "keyinit", [], id="name-never-journaled"),
])
def test_journal_list_filters_by_what_exists(timed_dir: Path, flag: str, value: str, ids: list[int]) -> None:
    """A state or command of some machine filters, matching or not, and so does a name only the journal holds
    (a request for an unknown command)."""
    code, out = run("journal", "list", "--json", flag, value, "--state-dir", str(timed_dir))
    assert (code, [c["id"] for c in json.loads(out)]) == (0, ids)


def test_journal_show_by_request_id_shows_each_command_oldest_first(timed_dir: Path) -> None:
    """A request id the host used twice shows both commands, oldest first, under a line that says so."""
    code, out = run("journal", "show", "req-a", "--state-dir", str(timed_dir))
    block = (
        "command        {id}\n"
        "name           version\n"
        "machine        version\n"
        "state          done\n"
        "request        req-a\n"
        "domain         /local/domain/5\n"
        f"digest         {'d' * 64}\n"
        "attempts       1\n"
        "received       2026-11-23T10:{minute}:00.000000Z\n"
        "finished       2026-11-23T10:{minute}:{finished}Z\n"
        "reply          0 'ok'\n"
        "replied        2026-11-23T10:{minute}:{replied}Z\n"
        "reply removed  -\n"
        "\n"
        "seq  at                           trigger  source    dest      detail\n"
        "1    2026-11-23T10:{minute}:00.000000Z  receive  -         received  -\n"
        "2    2026-11-23T10:{minute}:{finished}Z  go       received  done      "
        '{{"reply": {{"message": "ok", "returncode": "0"}}}}\n'
        "3    2026-11-23T10:{minute}:{replied}Z  deliver  done      done      -\n")
    assert code == 0
    assert out == (
        "request   req-a\n"
        "commands  1, 4 (each shown below, oldest first)\n"
        "\n"
        + block.format(id=1, minute="00", finished="01.500000", replied="03.000000") + "\n"
        + block.format(id=4, minute="03", finished="00.100000", replied="00.200000"))


@pytest.mark.parametrize(("wanted", "ids"), [
    pytest.param("req-a", [1, 4], id="request-used-twice"),
    pytest.param("req-p", [2], id="request-used-once"),
    pytest.param("4242", [6], id="digits-that-are-no-command-id"),
])
def test_journal_show_json_by_request_id_is_a_list(timed_dir: Path, wanted: str, ids: list[int]) -> None:
    """By request id, --json is always a list of commands with their transitions, oldest first (an id of
    digits that no command has is a request id)."""
    code, out = run("journal", "show", wanted, "--json", "--state-dir", str(timed_dir))
    document = json.loads(out)
    assert (code, [c["id"] for c in document], {c["request_id"] for c in document}) == (0, ids, {wanted})
    assert all(c["transitions"][0]["trigger"] == "receive" for c in document)


@pytest.mark.parametrize(("wanted", "request_id"), [("1", "req-a"), ("7", "1")])
def test_journal_show_command_ids_stay_command_ids(timed_dir: Path, wanted: str, request_id: str) -> None:
    """An integer that is a command id shows that command, as one object, even when a request used the same
    digits as its id (request '1' is command 7)."""
    code, out = run("journal", "show", wanted, "--json", "--state-dir", str(timed_dir))
    document = json.loads(out)
    assert (code, document["id"], document["request_id"]) == (0, int(wanted), request_id)


@pytest.mark.parametrize(("wanted", "error"), [
    pytest.param("nope", "no command with the request id 'nope'", id="request-id"),
    pytest.param("999", "no command 999 and no request id '999'", id="digits"),
])
def test_journal_show_unknown_id(timed_dir: Path, capsys: pytest.CaptureFixture[str], wanted: str,
                                 error: str) -> None:
    """An id that is neither a command's nor a request's is exit 6, naming what was looked for and the fix."""
    assert run("journal", "show", wanted, "--state-dir", str(timed_dir)) == (6, "")
    assert capsys.readouterr().err == (f"Error: {error} in the journal; 'openstack-agent journal list' shows the "
                                       "command ids and request ids\n")


@pytest.mark.parametrize(("when", "ids"), [
    pytest.param("2026-11-23T10:03:00Z", [7, 6, 5, 4], id="utc-time"),
    pytest.param("2026-11-23T11:01:00+01:00", [7, 6, 5, 4, 3, 2], id="time-with-offset"),
    pytest.param("2026-11-23T10:04:30", [7, 6], id="time-without-zone-is-utc"),
    pytest.param("2026-11-23", [7, 6, 5, 4, 3, 2, 1], id="date"),
    pytest.param("2026-11-24", [], id="date-after-every-command"),
    pytest.param("0900-01-01", [7, 6, 5, 4, 3, 2, 1], id="long-ago"),
    pytest.param("30s", [7, 6], id="seconds"),
    pytest.param("4m", [7, 6, 5, 4, 3, 2], id="minutes"),
    pytest.param("1h30m", [7, 6, 5, 4, 3, 2, 1], id="hours-and-minutes"),
    pytest.param("7d", [7, 6, 5, 4, 3, 2, 1], id="days"),
])
def test_journal_list_since(timed_dir: Path, when: str, ids: list[int]) -> None:
    """--since keeps the commands received at or after a time, a date, or a duration back from now (10:05)."""
    code, out = run("journal", "list", "--json", "--since", when, "--state-dir", str(timed_dir))
    assert (code, [c["id"] for c in json.loads(out)]) == (0, ids)


@pytest.mark.parametrize(("when", "error"), [
    *(pytest.param(when, f"--since {when!r} is neither a time nor a duration: give an ISO-8601 time or date "
                   "(2026-11-23T10:00:00Z, 2026-11-23) or a duration back from now (30m, 2h, 7d)", id=when or "empty")
      for when in ("yesterday", "30x", "5min", "2026-13-01", "")),
    pytest.param("99999999999d", "--since '99999999999d' reaches back further than dates go; give a shorter "
                 "duration", id="too-long"),
])
@pytest.mark.parametrize("action", ["list", "timing"])
def test_journal_since_refuses_what_is_no_time(timed_dir: Path, capsys: pytest.CaptureFixture[str], action: str,
                                               when: str, error: str) -> None:
    """A --since that is neither a time nor a duration is an error (exit 2) that shows both forms."""
    assert run("journal", action, "--since", when, "--state-dir", str(timed_dir)) == (2, "")
    assert capsys.readouterr().err == f"Error: {error}\n"


TIMING_HEADER = "id  name          state      duration          received_at                  states\n"
TIMING_LINES = {
    3: "3   resetnetwork  switching  3m00.000s so far  2026-11-23T10:02:00.000000Z  switching 2m30.000s, "
       "received 30.000s\n",
    2: "2   password      done       5.000s            2026-11-23T10:01:00.000000Z  applying 4.000s, applied "
       "0.750s, received 0.250s\n",
    1: "1   version       done       1.500s            2026-11-23T10:00:00.000000Z  received 1.500s\n",
    4: "4   version       done       0.100s            2026-11-23T10:03:00.000000Z  received 0.100s\n",
    7: "7   features      done       0.030s            2026-11-23T10:04:40.000000Z  received 0.030s\n",
    6: "6   features      done       0.020s            2026-11-23T10:04:30.000000Z  received 0.020s\n",
    5: "5   verison       failed     0.010s            2026-11-23T10:04:00.000000Z  received 0.010s\n",
}


def test_journal_timing_table(timed_dir: Path) -> None:
    """timing lists commands slowest first, each with its duration (received to finished, or so far while
    unfinished) and its states slowest first; the reply's delivery after it is not the command's time; --limit
    keeps the slowest."""
    assert run("journal", "timing", "--state-dir", str(timed_dir)) == (
        0, TIMING_HEADER + "".join(TIMING_LINES.values()))
    assert run("journal", "timing", "--limit", "2", "--state-dir", str(timed_dir)) == (
        0, TIMING_HEADER + TIMING_LINES[3] + TIMING_LINES[2])


@pytest.mark.parametrize(("argv", "ids"), [
    pytest.param(["--limit", "0"], [3, 2, 1, 4, 7, 6, 5], id="limit-0-is-all"),
    pytest.param(["--name", "version"], [1, 4], id="name"),
    pytest.param(["--since", "2026-11-23T10:03:00Z"], [4, 7, 6, 5], id="since"),
    pytest.param(["--name", "features", "--since", "25s", "--limit", "5"], [7], id="together"),
])
def test_journal_timing_filters(timed_dir: Path, argv: list[str], ids: list[int]) -> None:
    """--name and --since narrow what is timed, --limit 0 times everything, and they combine."""
    code, out = run("journal", "timing", *argv, "--json", "--state-dir", str(timed_dir))
    assert (code, [c["id"] for c in json.loads(out)]) == (0, ids)


def test_journal_timing_json(timed_dir: Path) -> None:
    """timing --json gives each command's identity, whether it finished, and seconds for it and each state."""
    code, out = run("journal", "timing", "--json", "--limit", "2", "--state-dir", str(timed_dir))
    assert code == 0
    assert json.loads(out) == [
        {"id": 3, "request_id": "req-n", "name": "resetnetwork", "machine": "resetnetwork", "state": "switching",
         "received_at": "2026-11-23T10:02:00.000000Z", "finished_at": None, "finished": False, "seconds": 180.0,
         "states": [{"state": "switching", "seconds": 150.0}, {"state": "received", "seconds": 30.0}]},
        {"id": 2, "request_id": "req-p", "name": "password", "machine": "password", "state": "done",
         "received_at": "2026-11-23T10:01:00.000000Z", "finished_at": "2026-11-23T10:01:05.000000Z",
         "finished": True, "seconds": 5.0, "states": [{"state": "applying", "seconds": 4.0},
                                                      {"state": "applied", "seconds": 0.75},
                                                      {"state": "received", "seconds": 0.25}]},
    ]


def test_journal_timing_of_an_empty_journal(tmp_path: Path) -> None:
    """A journal without commands times nothing: the header alone, or an empty list."""
    Journal.open(tmp_path).close()
    assert run("journal", "timing", "--state-dir", str(tmp_path)) == (
        0, "id  name  state  duration  received_at  states\n")
    assert run("journal", "timing", "--json", "--state-dir", str(tmp_path)) == (0, "[]\n")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0.000s"), (1.5, "1.500s"), (59.9996, "1m00.000s"), (125.25, "2m05.250s"), (3599.9996, "1h00m00s"),
    (3723.5, "1h02m03s"), (93784.0, "1d02h03m"),
])
def test_durations_read_as_time(seconds: float, text: str) -> None:
    """timing shows milliseconds under an hour, then hours, minutes and seconds, then days."""
    assert duration(seconds) == text


def _files(directory: Path, names: tuple[str, ...] | None = None) -> dict[str, tuple[bytes, int, int]]:
    """Each file's bytes, mtime and mode, to compare before and after a command."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode) for p in sorted(directory.iterdir())
            if names is None or p.name in names}


EVERY_JOURNAL_COMMAND = [
    pytest.param(argv, id="-".join(argv) or "list") for argv in (
        ["list"], ["list", "--state", "done"], ["list", "--name", "verison"], ["list", "--since", "4m"],
        ["list", "--state", "bogus"], ["list", "--since", "yesterday"],
        ["show", "1"], ["show", "req-a"], ["show", "4242", "--json"], ["show", "nope"],
        ["timing"], ["timing", "--json", "--name", "password", "--since", "2026-11-23"], ["timing", "--name", "nope"],
        ["export"], ["verify"], ["verify", "--json"])]


@pytest.mark.parametrize("argv", EVERY_JOURNAL_COMMAND)
def test_every_journal_command_leaves_the_journal_as_it_was(timed_dir: Path, argv: list[str]) -> None:
    """Whatever it shows or refuses, a journal command changes no byte, mtime or mode of any file in the state
    directory, and creates none."""
    before = _files(timed_dir)
    run("journal", *argv, "--state-dir", str(timed_dir))
    assert _files(timed_dir) == before


@pytest.mark.parametrize("argv", EVERY_JOURNAL_COMMAND)
def test_journal_commands_beside_a_running_agent_leave_its_files_as_they_were(timed_dir: Path,
                                                                             argv: list[str]) -> None:
    """With the agent's journal open (its WAL beside the database), a journal command changes neither the
    database file nor the WAL."""
    agent = Journal.open(timed_dir)
    try:
        agent.command_count()  # the agent's connection is open, as while it serves
        before = _files(timed_dir, ("journal.sqlite3", "journal.sqlite3-wal"))
        assert set(before) == {"journal.sqlite3", "journal.sqlite3-wal"}
        run("journal", *argv, "--state-dir", str(timed_dir))
        assert _files(timed_dir, ("journal.sqlite3", "journal.sqlite3-wal")) == before
    finally:
        agent.close()
