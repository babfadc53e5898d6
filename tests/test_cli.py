"""The command line: exact output of the journal commands, errors with exit codes, host calls, diagrams, and
the start-up fault of the test releases."""

from __future__ import annotations

import io
import itertools
import json
import sqlite3
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent import __version__, faults, release
from agent.cli import main
from agent.errors import ReleaseError
from agent.journal import Journal
from agent.journal import times as journal_times
from tests.releases import ROOT


@pytest.fixture
def journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal with one answered version command and one rejected request, at fixed times."""
    clock = (f"2026-11-23T10:00:0{n}.000000Z" for n in itertools.count())
    monkeypatch.setattr(journal_times, "utcnow", lambda: next(clock))
    journal = Journal.open(tmp_path / "state")
    version = journal.receive("req-a", "/local/domain/5", "version", "version", "a" * 64, '"agent"',
                              detail={"digest": "aaaa"})
    version = journal.transition(version, "answer", "done", reply={"returncode": "0", "message": "0.1.0"})
    journal.mark_replied(version)
    rejected = journal.receive("req-b", "/local/domain/5", None, "rejected", "b" * 64, None,
                               detail={"rejected": "500"})
    journal.transition(rejected, "fail", "failed", detail={"error": "RequestRejected"},
                       reply={"returncode": "500", "message": "Request is malformed"})
    journal.close()
    return tmp_path / "state"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


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


ERRORS = [
    pytest.param(["journal", "list", "--state-dir", "{tmp}/none"], 4, "Error: no journal at {tmp}/none/journal"
                 ".sqlite3; has the agent run here? Point --state-dir", id="no-journal"),
    pytest.param(["journal", "show", "99", "--state-dir", "{journal}"], 6,
                 "Error: no command 99 in the journal; 'openstack-agent journal list' shows the ids", id="no-id"),
    pytest.param(["run", "--config", "{tmp}/missing.toml"], 2,
                 "Error: configuration file {tmp}/missing.toml does not exist", id="no-config"),
    pytest.param(["run", "--max-attempts", "zero"], 2, "Error: flag --max-attempts: invalid value 'zero'",
                 id="bad-flag"),
    pytest.param(["diagram", "reboot"], 1, "Error: no machine named 'reboot'", id="no-machine"),
]


@pytest.mark.parametrize(("argv", "code", "message"), ERRORS)
def test_errors_name_the_problem_and_exit_with_its_code(
        journal_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
        message: str) -> None:
    """Failures print one 'Error: ...' line naming what failed and the fix, with a meaningful code."""
    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, journal=journal_dir)

    assert main([fill(a) for a in argv], io.StringIO()) == code
    assert capsys.readouterr().err.startswith(fill(message))


def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key in the TOML file is named with its section."""
    config = tmp_path / "agent.toml"
    config.write_text('[policy]\nalow = ["version"]\n')
    assert main(["run", "--config", str(config)], io.StringIO()) == 2
    assert "unknown key policy.alow" in capsys.readouterr().err


def test_host_calls_a_running_agent(run_agent, xenstored, domain: str) -> None:
    """'host version' and 'host call' speak to the agent through XenStore and print its reply."""
    run_agent()
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "--json", "version")
    assert (code, json.loads(out)) == (0, {"returncode": "0", "message": __version__})
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "call", "reboot")
    assert (code, out) == (1, "returncode  404\nmessage     No such agent command 'reboot'\n")


@pytest.mark.parametrize("digest", ["md5", "sha256"])
def test_host_password_from_stdin(run_agent, xenstored, domain: str, system_root: Path, digest: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """'host password' reads the password from stdin (never argv), runs keyinit + password, prints the reply."""
    from tests.system import password_matches, shadow_hash

    run_agent()
    monkeypatch.setattr("sys.stdin", io.StringIO("From-Stdin 42\n"))
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "password",
                    "--digest", digest)
    assert (code, out) == (0, "returncode  0\nmessage     \n")
    assert password_matches("From-Stdin 42", shadow_hash(system_root, "root"))


def test_host_times_out_and_removes_its_request(xenstored, domain: str, guest,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """With no agent, the call fails with TIMEOUT after its deadline and deletes data/host/<id>."""
    code = main(["host", "--xenstore", xenstored.address, "--domain-path", domain, "--timeout", "0.6",
                 "version"], io.StringIO())
    assert code == 7
    assert capsys.readouterr().err.startswith("Error: TIMEOUT: no reply to ")
    assert guest.list("data/host") == []


def test_host_reports_a_vanished_domain(xenstored, domain: str, guest,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """When the domain's name node disappears (a reboot), the call fails with REBOOT, as nova's plugin does."""
    guest.delete("name")
    code = main(["host", "--xenstore", xenstored.address, "--domain-path", domain, "version"], io.StringIO())
    assert code == 7
    assert capsys.readouterr().err.startswith(f"Error: REBOOT: domain {domain} no longer present")


@pytest.mark.parametrize(("command", "edges"), [
    ("version", ["received --> done: answer"]),
    ("features", ["received --> done: answer"]),
    ("keyinit", ["received --> exchanged: exchange", "exchanged --> done: answer"]),
    ("password", ["received --> applying: unlock", "applying --> applied: apply", "applied --> done: answer",
                  "received --> done: already_applied", "applying --> failed: fail"]),
    ("agentupdate", ["switching --> restarting: restart", "restarting --> confirming: confirm",
                     "confirming --> committed: commit", "confirming --> rolling_back: rollback",
                     "rolling_back --> rolled_back: finish_rollback", "verifying --> done: nothing_to_do"]),
])
def test_diagram_is_rendered_from_the_table(command: str, edges: list[str]) -> None:
    """The mermaid diagram shows every transition of the machine's table, fail included."""
    code, out = run("diagram", command)
    assert code == 0
    assert "stateDiagram-v2" in out
    for edge in [*edges, "received --> failed: fail"]:
        assert edge in out


def test_sandbox_demo(tmp_path: Path) -> None:
    """The README's first command: a real xenstored, the agent, and the host's calls, end to end."""
    code, out = run("sandbox", "--demo", "--dir", str(tmp_path / "sandbox"))
    assert code == 0
    assert f"host -> version                agent ->   0 {__version__}" in out
    assert "host -> unknown command        agent -> 404 No such agent command 'reboot'" in out
    assert "host -> body without a name    agent -> 500 Request is missing 'name' key" in out
    assert "host -> keyinit + password     agent ->   0 \n" in out
    assert "root's shadow entry in the guest root" in out and ": $6$" in out
    assert "unlock   received  applying" in out
    listing = out.split("The journal (openstack-agent journal list):")[1].split("The password command")[0]
    assert len([line for line in listing.splitlines() if line.endswith("Z")]) == 7


class Slept(Exception):
    """Raised by the stand-in for time.sleep, so that a hang ends."""


def fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str) -> Path:
    """A marker holding ``content``, where the agent looks for its own."""
    marker = tmp_path / faults.STARTUP_FAULT
    marker.write_text(content)
    monkeypatch.setattr(faults, "MARKER", marker)
    return marker


def test_this_checkout_has_no_startup_fault() -> None:
    """The agent runs: the code it runs carries no marker."""
    assert not faults.MARKER.exists()
    faults.startup_fault()


@pytest.mark.parametrize("content", ["crash\n", "unknown\n"])
def test_crash_exits_3_before_anything_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], content: str) -> None:
    """With a 'crash' marker (or any marker but 'hang'), run exits 3 before it reads its configuration."""
    marker = fault(tmp_path, monkeypatch, content)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--config", str(tmp_path / "missing.toml")], io.StringIO())
    assert exited.value.code == 3
    assert capsys.readouterr().err == (f"fault injection: this release was built to {content.strip()} at start "
                                       f"({marker})\n")


def test_hang_never_gets_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 'hang' marker, run sleeps on and on, before it reads its configuration."""
    fault(tmp_path, monkeypatch, "hang\n")
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise Slept

    monkeypatch.setattr(faults.time, "sleep", sleep)
    with pytest.raises(Slept):
        main(["run", "--config", str(tmp_path / "missing.toml")], io.StringIO())
    assert naps == [3600, 3600, 3600]


def shipped_marker(bundle: Path) -> str | None:
    """The start-up fault marker in the bundle's own wheel, or None when it has none."""
    with tarfile.open(bundle, "r:gz") as archive:
        [member] = [m for m in archive.getmembers() if Path(m.name).name.startswith("openstack_agent-")]
        wheel = archive.extractfile(member)
        assert wheel is not None
        with zipfile.ZipFile(io.BytesIO(wheel.read())) as contents:
            name = f"agent/{faults.STARTUP_FAULT}"
            return contents.read(name).decode() if name in contents.namelist() else None


def test_the_checkout_holds_no_marker() -> None:
    """The source releases are built from never carries a start-up fault marker."""
    assert not (ROOT / "agent" / faults.STARTUP_FAULT).exists()


def test_only_the_faulty_test_releases_carry_a_marker(bundles) -> None:
    """The checkout's bundle and its 0.2.0 have no marker; the crash and hang test releases have theirs."""
    assert [shipped_marker(b) for b in (bundles.base, bundles.good, bundles.crash, bundles.hang)] == [
        None, None, "crash\n", "hang\n"]


def test_build_refuses_a_source_with_a_marker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A marker left in a source stops 'release build' (exit 10) before anything is built."""
    source = tmp_path / "source"
    (source / "agent").mkdir(parents=True)
    (source / "pyproject.toml").write_text("")
    (source / "agent" / faults.STARTUP_FAULT).write_text("crash\n")
    assert main(["release", "build", "--out", str(tmp_path / "out"), "--source", str(source)],
                io.StringIO()) == 10
    assert capsys.readouterr().err == (f"Error: {source}/agent/STARTUP_FAULT is a start-up fault marker, which "
                                       "makes a release crash or hang at start; remove it\n")
    assert not (tmp_path / "out").exists()


def test_build_refuses_an_unknown_fault(tmp_path: Path) -> None:
    """Only the faults the agent knows can be built in."""
    with pytest.raises(ReleaseError, match="no start-up fault 'explode'; choose one of crash, hang"):
        release.build(tmp_path, ROOT, "0.5.0", startup_fault="explode")
