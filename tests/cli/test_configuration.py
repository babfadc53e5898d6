"""``config check`` and ``config show``: a file validated and the effective configuration shown, touching nothing."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from agent.cli import main
from agent.machines import host_commands
from tests.cli.conftest import run

FILE = '[daemon]\nlog_level = "debug"\n[update]\nprobation = "10s"\nmax_download_size = "64MiB"\n'
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"


def tree(root: Path) -> list[str]:
    """Every path below ``root``, to show that a command created nothing."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def default_file(root: Path, text: str) -> Path:
    """``text`` as the default configuration file inside ``root``."""
    path = root / "etc/openstack-agent/agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def run_err(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run a command; its exit code, standard output and standard error."""
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue(), capsys.readouterr().err


def test_check_a_valid_file(tmp_path: Path) -> None:
    """'config check FILE' says the file is valid and names the keys it sets, in its order."""
    file = tmp_path / "agent.toml"
    file.write_text(FILE)
    assert run("config", "check", str(file)) == (
        0, f"{file}: valid; sets 3 keys (daemon.log_level, update.probation, update.max_download_size)\n")


@pytest.mark.parametrize(("text", "says"), [
    ('[daemon]\nlog_level = "debug"\n', "sets 1 key (daemon.log_level)"),
    ("# nothing set yet\n", "sets no key (every value is its default)"),
])
def test_check_counts_the_keys(tmp_path: Path, text: str, says: str) -> None:
    """One key is one key; a file that sets nothing is valid and says the defaults apply."""
    file = tmp_path / "agent.toml"
    file.write_text(text)
    assert run("config", "check", str(file)) == (0, f"{file}: valid; {says}\n")


def test_check_the_default_file_inside_root(tmp_path: Path) -> None:
    """Without FILE, the default file inside --root is checked."""
    file = default_file(tmp_path, FILE)
    code, out = run("config", "check", "--root", str(tmp_path), "--json")
    assert code == 0
    assert json.loads(out) == {"file": str(file), "exists": True, "valid": True,
                               "keys": ["daemon.log_level", "update.probation", "update.max_download_size"]}


def test_a_missing_default_file_is_valid(tmp_path: Path) -> None:
    """No file at the default path is valid (the agent runs on its defaults), says so, and creates nothing."""
    assert run("config", "check", "--root", str(tmp_path)) == (
        0, f"{tmp_path}/etc/openstack-agent/agent.toml: no such file; that is valid: the agent runs on its defaults\n")
    code, out = run("config", "check", "--root", str(tmp_path), "--json")
    assert (code, json.loads(out)) == (0, {"file": f"{tmp_path}/etc/openstack-agent/agent.toml", "exists": False,
                                           "valid": True, "keys": []})
    assert tree(tmp_path) == []


def test_a_missing_explicit_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FILE that does not exist is an error (exit 2) naming it and the default path."""
    assert run_err(capsys, "config", "check", str(tmp_path / "agnet.toml"), "--root", str(tmp_path)) == (
        2, "", f"Error: configuration file {tmp_path}/agnet.toml does not exist; check the path (without FILE, "
               f"'config check' checks {tmp_path}/etc/openstack-agent/agent.toml, where no file means the defaults)\n")


COMMANDS = ", ".join(host_commands())
REFUSED = [
    pytest.param('[update]\ndownload_timeout = "10 seconds"\n',
                 "{file}: update.download_timeout: '10 seconds' is not a duration; write seconds as a number (30) "
                 "or with a unit (500ms, 30s, 5m, 1h)", id="duration"),
    pytest.param('[update]\nmax_download_size = "200MB"\n',
                 "{file}: update.max_download_size: '200MB' is ambiguous (MB is 1000 to some and 1024 to others); "
                 "write 200MiB (1024-based) or a number of bytes", id="size"),
    pytest.param('[policy]\nallow = ["verison"]\n',
                 "{file}: policy.allow: 'verison' is not a command of this agent (did you mean 'version'?); the "
                 f"commands are {COMMANDS}", id="allow"),
    pytest.param('[policy]\ndeny = ["reboot"]\n',
                 f"{{file}}: policy.deny: 'reboot' is not a command of this agent; the commands are {COMMANDS}",
                 id="deny"),
    pytest.param('[update]\nrequire_signature = true\ntrusted_keys = ["/etc/openstack-agent/release.pub"]\n',
                 "{file}: update.trusted_keys: the key file {root}/etc/openstack-agent/release.pub does not exist; "
                 "put the public key that signs releases there (openssl pkey -in release.pem -pubout -out "
                 "release.pub) or correct the path", id="missing-key"),
    pytest.param("[update]\nrequire_signature = true\n",
                 "{file}: update.require_signature: true, but update.trusted_keys names no key file, so every "
                 "release would be refused; list the public keys that sign releases in update.trusted_keys "
                 "(--trusted-keys), or set update.require_signature = false", id="no-keys"),
    pytest.param("[update]\nprobaton = 5\n",
                 "{file}: unknown key update.probaton (did you mean update.probation?); 'openstack-agent run "
                 "--help' lists every key", id="unknown-key"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_check_refuses_what_the_agent_would(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                            message: str) -> None:
    """A file the agent would refuse exits 2 with one 'Error: ...' naming the file, the key, the value and the fix,
    and nothing is created."""
    file = default_file(tmp_path, text)
    before = tree(tmp_path)
    assert run_err(capsys, "config", "check", "--root", str(tmp_path)) == (
        2, "", f"Error: {message.format(file=file, root=tmp_path)}\n")
    assert tree(tmp_path) == before


def test_check_accepts_keys_that_exist_inside_root(tmp_path: Path) -> None:
    """Trusted key files are looked for inside --root, where the agent will read them."""
    file = default_file(tmp_path, '[update]\nrequire_signature = true\n'
                                  'trusted_keys = ["/etc/openstack-agent/release.pub"]\n')
    (tmp_path / "etc/openstack-agent/release.pub").write_text(PUBLIC_KEY)
    assert run("config", "check", "--root", str(tmp_path)) == (
        0, f"{file}: valid; sets 2 keys (update.require_signature, update.trusted_keys)\n")


def test_check_touches_nothing(tmp_path: Path) -> None:
    """Checking a file that names a state directory and an install root creates neither, nor a journal."""
    default_file(tmp_path, '[journal]\nstate_dir = "/var/lib/agent"\n[update]\ninstall_root = "/opt/agent"\n')
    before = tree(tmp_path)
    assert run("config", "check", "--root", str(tmp_path))[0] == 0
    assert run("config", "show", "--root", str(tmp_path))[0] == 0
    assert tree(tmp_path) == before


SHOWN = """\
Configuration file: {file}

key                           value                     source
xenstore.address              (auto)                    default
xenstore.domain_path          (relative paths)          default
xenstore.timeout              10s                       default
journal.state_dir             /var/lib/openstack-agent  default
journal.retention_days        90d                       default
journal.keep_min              1000                      default
journal.max_commands          50000                     default
policy.allow                  (every command)           default
policy.deny                   password                  flag --deny
replies.max_age               1h                        default
recovery.max_attempts         3                         default
daemon.log_level              debug                     {file}
daemon.log_file               (stderr)                  default
daemon.housekeeping_interval  5m                        default
daemon.shutdown_timeout       10s                       default
password.user                 (root)                    default
password.exchange_lifetime    1h                        default
update.install_root           /opt/openstack-agent      default
update.keep_releases          3                         default
update.allow_http             true                      default
update.require_signature      false                     default
update.trusted_keys           (none)                    default
update.download_timeout       30s                       default
update.max_download_size      64MiB                     {file}
update.ready_deadline         20s                       default
update.crash_limit            3                         default
update.crash_window           1m                        default
update.probation              10s                       {file}
inject.keep_backups           true                      default
inject.allowed_paths          (none)                    flag --inject-allowed-paths
inject.max_size               1MiB                      default
network.renderer              auto                      default
network.verify                addresses                 default
network.verify_timeout        20s                       default
testing.crash_at              (none)                    default
"""


def test_show_every_key_with_its_value_and_source(tmp_path: Path) -> None:
    """'config show' prints every key, its value in the operator's units and its source: default, file or
    flag."""
    file = tmp_path / "agent.toml"
    file.write_text(FILE)
    assert run("config", "show", "--config", str(file), "--deny", "password", "--inject-allowed-paths", "") == (
        0, SHOWN.format(file=file))


def test_show_without_a_file(tmp_path: Path) -> None:
    """Without a file at the default path, 'config show' says so and every value is the default."""
    code, out = run("config", "show", "--root", str(tmp_path))
    assert code == 0
    header, _, table = out.partition("\n\n")
    assert header == f"Configuration file: {tmp_path}/etc/openstack-agent/agent.toml (no such file: defaults and " \
                     "flags only)"
    assert {line.split()[-1] for line in table.splitlines()[1:]} == {"default"}


def test_show_json(tmp_path: Path) -> None:
    """'config show --json' gives the file, the root and every key with its value as the agent holds it, its unit
    and its source (what collect-logs embeds)."""
    file = default_file(tmp_path, FILE)
    code, out = run("config", "show", "--root", str(tmp_path), "--allow", "version,features", "--json")
    document = json.loads(out)
    assert code == 0
    assert {k: v for k, v in document.items() if k != "options"} == {
        "file": str(file), "file_read": True, "root": str(tmp_path), "error": None}
    rows = {row["key"]: row for row in document["options"]}
    assert len(rows) == len(document["options"]) == 35
    assert rows["update.max_download_size"] == {"key": "update.max_download_size", "value": 64 * 1024 * 1024,
                                                "unit": "bytes", "source": str(file)}
    assert rows["update.probation"] == {"key": "update.probation", "value": 10.0, "unit": "seconds",
                                        "source": str(file)}
    assert rows["journal.retention_days"] == {"key": "journal.retention_days", "value": 90.0, "unit": "days",
                                              "source": "default"}
    assert rows["policy.allow"] == {"key": "policy.allow", "value": ["version", "features"], "unit": None,
                                    "source": "flag --allow"}


def test_show_still_shows_what_the_agent_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A configuration the agent would refuse is shown all the same (a bug report needs it), then refused with
    exit 2; --json carries the error too."""
    message = (f"flag --allow: 'verison' is not a command of this agent (did you mean 'version'?); the commands "
               f"are {COMMANDS}")
    code, out, err = run_err(capsys, "config", "show", "--root", str(tmp_path), "--allow", "verison")
    assert (code, err) == (2, f"Error: {message}\n")
    assert "policy.allow                  verison                   flag --allow\n" in out
    code, out, err = run_err(capsys, "config", "show", "--root", str(tmp_path), "--allow", "verison", "--json")
    assert (code, err, json.loads(out)["error"]) == (2, f"Error: {message}\n", message)


@pytest.mark.parametrize("command", ["run", "supervise", "config show"])
def test_help_shows_each_default_and_unit(command: str, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The help of every command taking the configuration flags shows each key's default in its unit."""
    monkeypatch.setenv("COLUMNS", "400")  # one line per flag, whatever the terminal
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"], io.StringIO())
    out = capsys.readouterr().out
    for line in ["seconds a download may stall (connecting or between reads) [update.download_timeout; default 30s]",
                 "largest release bundle agentupdate downloads, in bytes [update.max_download_size; default 200MiB]",
                 "days finished commands are kept in the journal [journal.retention_days; default 90d]",
                 "Durations are a number of seconds (of days for --retention-days) or a number with units: 250ms, "
                 "30s, 5m, 1h30m, 2d."]:
        assert line in out


def test_the_annotated_example_is_valid(tmp_path: Path) -> None:
    """The annotated configuration that ships in packaging/ passes 'config check' with every key uncommented."""
    example = Path(__file__).parents[2] / "packaging/agent.toml"
    assert run("config", "check", str(example))[0] == 0
    uncommented = tmp_path / "agent.toml"
    uncommented.write_text(re.sub(r"(?m)^# ?([a-z_]+ = )", r"\1", example.read_text()))
    code, out = run("config", "check", str(uncommented))
    assert code == 0
    assert out.startswith(f"{uncommented}: valid; sets ")
    assert "sets no key" not in out
