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
