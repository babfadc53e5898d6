"""``openstack-agent collect-logs``: one private archive with every part, failures recorded instead of fatal,
nothing changed, and never a secret."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from agent import crypto
from agent.cli import collect
from agent.host import Host
from agent.install import COMPLETE, Layout
from tests.cli.conftest import run
from tests.cli.test_status import snapshot
from tests.conftest import STATE_DIR, open_journal, wait_for

PASSWORD = "Collect-me-not 7%q"


def members(archive: Path) -> dict[str, bytes]:
    """The archive's members by name below its top directory, read whole."""
    with tarfile.open(archive, "r:gz") as tar:
        found = {}
        for info in tar.getmembers():
            top, _, name = info.name.partition("/")
            assert top.startswith("openstack-agent-logs-") and info.isfile() and info.mode == 0o600, info.name
            extracted = tar.extractfile(info)
            assert extracted is not None
            found[name] = extracted.read()
    return found


def manifest_results(manifest: bytes) -> dict[str, str]:
    """Each member's result column, from the manifest's table."""
    lines = manifest.decode().split("\n\n")[1].splitlines()
    start = lines[0].index("result")
    return {line.split()[0]: line[start:] for line in lines[1:]}


def layout_with(root: Path, *versions: str) -> Layout:
    """Releases installed as far as the layout can tell (their markers), the last one current."""
    layout = Layout(root / "opt/openstack-agent")
    for version in versions:
        layout.release_dir(version).mkdir(parents=True)
        (layout.release_dir(version) / COMPLETE).write_text(f"{version}\n")
        layout.activate(version)
    return layout


def collect_in(root: Path, *flags: str) -> tuple[int, str]:
    return run("collect-logs", "--root", str(root), "--state-dir", "/state", *flags)


def test_every_part_is_in_the_archive(journal_dir: Path, tmp_path: Path) -> None:
    """The archive (0600) holds the journal export, verify, status and the release layout exactly as those
    commands give them, the agent's log file, and a manifest saying what each member is; the command prints
    the archive's path and a summary."""
    layout_with(tmp_path, "0.0.9", "0.1.0")
    log_file = tmp_path / "agent-file.log"
    log_file.write_text("2026-11-23T10:00:00.000Z INFO agent.daemon: openstack-agent starting\n")
    archive = tmp_path / "out" / "bug.tar.gz"
    archive.parent.mkdir()
    code, text = collect_in(tmp_path, "--log-file", str(log_file), "--out", str(archive))
    found = members(archive)
    results = manifest_results(found["MANIFEST.txt"])
    config_collected = results["config.json"] == "collected"
    assert code == 0
    assert (archive.stat().st_mode & 0o777) == 0o600
    assert text == (f"{archive}\n{6 if config_collected else 5} parts collected, 1 absent (journalctl.txt)"
                    f"{'' if config_collected else ', 1 failed (config.json)'}; see MANIFEST.txt in the archive\n")
    flags = ("--root", str(tmp_path), "--state-dir", "/state")
    assert found["journal-export.jsonl"].decode() == run("journal", "export", *flags)[1]
    assert found["journal-verify.json"].decode() == run("journal", "verify", "--json", *flags)[1]
    assert found["status.json"].decode() == run("status", "--json", *flags, "--log-file", str(log_file))[1]
    assert found["agent.log"] == log_file.read_bytes()
    assert found["releases.txt"].decode() == (
        f"install root {tmp_path}/opt/openstack-agent\n"
        "current -> releases/0.1.0\n"
        "previous -> releases/0.0.9\n"
        "releases/\n"
        "releases/0.0.9: complete (marker says 0.0.9); installed package version not found\n"
        "releases/0.1.0: complete (marker says 0.1.0); installed package version not found\n")
    assert {k: v for k, v in results.items() if k != "config.json"} == {
        "journal-export.jsonl": "collected", "journal-verify.json": "collected",
        "status.json": "collected (exit status 20)", "releases.txt": "collected", "agent.log": "collected",
        "journalctl.txt": f"absent: --root {tmp_path} given; the service log is this machine's, not the root's"}
    if config_collected:
        json.loads(found["config.json"])
    else:
        assert "config.json" not in found and results["config.json"].startswith("failed: exit status 2: ")
    assert set(found) == {"MANIFEST.txt", "journal-export.jsonl", "journal-verify.json", "status.json",
                          "releases.txt", "agent.log", *(["config.json"] if config_collected else [])}


def test_a_part_that_fails_is_recorded_and_the_archive_is_made(tmp_path: Path) -> None:
    """No journal and a log file that cannot be read: those parts are failures named in the manifest with
    the command's error, every other part is still collected."""
    archive = tmp_path / "bug.tar.gz"
    code, text = collect_in(tmp_path, "--log-file", str(tmp_path / "missing.log"), "--out", str(archive))
    found = members(archive)
    results = manifest_results(found["MANIFEST.txt"])
    assert code == 0
    assert "failed (journal-export.jsonl, journal-verify.json, " in text
    assert results["journal-export.jsonl"] == (
        f"failed: exit status 4: Error: no journal at {tmp_path}/state/journal.sqlite3; has the agent run here? "
        "Point --state-dir (or journal.state_dir in the configuration) at the agent's state directory")
    assert results["agent.log"] == f"failed: cannot read {tmp_path}/missing.log: No such file or directory"
    assert results["status.json"] == "collected (exit status 20)"
    assert results["releases.txt"] == "collected"
    assert found["releases.txt"].decode() == f"install root {tmp_path}/opt/openstack-agent: absent\n"
    assert "stderr of 'openstack-agent journal export':\n  Error: no journal at " in found["MANIFEST.txt"].decode()


@pytest.mark.parametrize(("systemd", "note"), [
    ("missing", "absent: systemd is not the init system here (no {dir})"),
    ("present", "absent: systemctl cannot tell whether systemd knows openstack-agent.service: "),
])
def test_the_service_log_note_says_why_it_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    systemd: str, note: str) -> None:
    """Without systemd as init the journalctl part is a note saying so; with its runtime directory but no
    systemd answering (this machine), the note carries systemctl's own reason."""
    runtime = tmp_path / "run-systemd"
    if systemd == "present":
        runtime.mkdir()
    monkeypatch.setattr(collect, "SYSTEMD_RUNTIME", runtime)
    (tmp_path / "agent.toml").write_text("")
    archive = tmp_path / "bug.tar.gz"
    run("collect-logs", "--config", str(tmp_path / "agent.toml"), "--state-dir", str(tmp_path / "state"),
        "--install-root", str(tmp_path / "opt"), "--out", str(archive))
    result = manifest_results(members(archive)["MANIFEST.txt"])["journalctl.txt"]
    expected = note.format(dir=runtime)
    # systemctl's reason follows the colon; it is this machine's words, not the agent's.
    assert result == expected if not expected.endswith(": ") else result.startswith(expected) and result != expected


def test_the_default_name_is_in_the_current_directory(journal_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --out the archive is openstack-agent-logs-<UTC time>.tar.gz in the current directory, 0600."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, text = collect_in(tmp_path)
    [archive] = list(here.iterdir())
    assert code == 0 and text.splitlines()[0] == str(archive)
    assert re.fullmatch(r"openstack-agent-logs-\d{8}T\d{6}Z\.tar\.gz", archive.name)
    assert (archive.stat().st_mode & 0o777) == 0o600
    assert set(members(archive)) >= {"MANIFEST.txt", "journal-export.jsonl", "status.json"}


def test_collect_changes_nothing(journal_dir: Path, tmp_path: Path) -> None:
    """The state directory and the install root are byte-, mtime- and mode-identical after collect-logs."""
    layout = layout_with(tmp_path, "0.1.0")
    before = snapshot(journal_dir, layout.root)
    assert collect_in(tmp_path, "--out", str(tmp_path / "bug.tar.gz"))[0] == 0
    assert snapshot(journal_dir, layout.root) == before


def test_never_a_secret_after_a_password_flow(agent_process, host: Host, state_dir: Path, system_root: Path,
                                              tmp_path: Path) -> None:
    """After keyinit and password through a real agent, no member of the archive (taken while the agent
    runs, and after it stopped) holds the password, its base64, the ciphertext or the exchange's shared key;
    the search does see the password command and the agent's log lines."""
    agent = agent_process().start()
    secret = host.key_exchange(timeout=20)
    ciphertext = crypto.encrypt_password(PASSWORD, secret)
    assert host.call("password", ciphertext, timeout=20)["returncode"] == "0"
    wait_for(lambda: open_journal(state_dir).commands(name="password")[0].replied_at)
    values = {"password": PASSWORD, "base64": base64.b64encode(PASSWORD.encode()).decode(),
              "ciphertext": ciphertext, "shared key": secret}
    for moment in ("running", "stopped"):
        if moment == "stopped":
            agent.stop()
        archive = tmp_path / f"bug-{moment}.tar.gz"
        code, _ = run("collect-logs", "--root", str(system_root), "--state-dir", STATE_DIR, "--log-file",
                      str(agent.log_path), "--out", str(archive))
        assert code == 0
        found = members(archive)
        assert b'"name": "password"' in found["journal-export.jsonl"]
        assert b"answered" in found["agent.log"]
        with tarfile.open(archive, "r:gz") as tar:  # the compressed and the raw archive alike
            raw = io.BytesIO()
            for info in tar.getmembers():
                raw.write(info.name.encode())
        for member, data in [*found.items(), ("the archive's names", raw.getvalue()),
                             ("the compressed file", archive.read_bytes())]:
            for what, value in values.items():
                assert value.encode() not in data, f"the {what} is in {member} ({moment})"


def test_on_windows_the_services_own_log_is_a_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows the archive also holds the service process's log, the file beside the agent's."""
    monkeypatch.setattr("agent.cli.collect.WINDOWS", True)
    (tmp_path / "OpenStackAgent.log").write_text("agent line\n")
    (tmp_path / "OpenStackAgent-service.log").write_text("service line\n")
    archive = tmp_path / "bug.tar.gz"
    code, _ = collect_in(tmp_path, "--log-file", str(tmp_path / "OpenStackAgent.log"), "--out", str(archive))
    found = members(archive)
    assert code == 0
    assert (found["agent.log"], found["service.log"]) == (b"agent line\n", b"service line\n")
    assert manifest_results(found["MANIFEST.txt"])["service.log"] == "collected"


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_the_log_is_read_only_as_the_agents_regular_file(tmp_path: Path, kind: str) -> None:
    """daemon.log_file naming a link (to a secret) or a FIFO is refused as a part: nothing is read through the
    link, nothing hangs, and the archive is still made."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:19000::::::\n")
    log = tmp_path / "agent.log"
    if kind == "link":
        log.symlink_to(secret)
    else:
        os.mkfifo(log)
    archive = tmp_path / "bug.tar.gz"
    code, _ = collect_in(tmp_path, "--log-file", str(log), "--out", str(archive))
    found = members(archive)
    assert code == 0
    assert "agent.log" not in found
    assert manifest_results(found["MANIFEST.txt"])["agent.log"].startswith("failed: ")
    assert all(b"secret-hash" not in data for data in found.values())


def test_an_existing_out_is_never_written_over(journal_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--out naming a file that exists (the journal itself, say) is refused and the file is left as it was."""
    database = journal_dir / "journal.sqlite3"
    before = database.read_bytes()
    code, _ = run("collect-logs", "--state-dir", str(journal_dir), "--out", str(database))
    assert code == 9
    assert capsys.readouterr().err == (f"Error: {database} already exists; collect-logs never writes over a file: "
                                       "give --out a new name, or remove it first\n")
    assert database.read_bytes() == before
