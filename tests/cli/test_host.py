"""host: calls to a running agent through XenStore, as nova's dom0 plugin makes them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agent import __version__
from agent.cli import main
from tests.cli.conftest import run


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


@pytest.mark.parametrize("form", ["new", "legacy"])
def test_host_injectfile_writes_the_file(run_agent, xenstored, domain: str, system_root: Path, tmp_path: Path,
                                         form: str) -> None:
    """'host injectfile PATH FILE' sends the file as nova does, in either format, and the guest has it."""
    run_agent()
    local = tmp_path / "key.pub"
    local.write_bytes(b"ssh-ed25519 AAAA-cli-test operator@example\n")
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "injectfile",
                    "/root/.ssh/authorized_keys", str(local), "--format", form)
    assert (code, out) == (0, "returncode  0\nmessage     \n")
    assert (system_root / "root/.ssh/authorized_keys").read_bytes() == local.read_bytes()


def test_host_injectfile_of_a_missing_file_is_a_clear_error(xenstored, domain: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A local file that cannot be read is an error naming it and the fix, before anything is sent."""
    assert main(["host", "--xenstore", xenstored.address, "--domain-path", domain, "injectfile", "/etc/motd",
                 "/nonexistent/file"]) == 1
    assert capsys.readouterr().err == ("Error: cannot read /nonexistent/file: No such file or directory; give a "
                                       "readable file, or '-' for standard input\n")
