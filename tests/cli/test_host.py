"""host: calls to a running agent through XenStore, as nova's dom0 plugin makes them."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import __version__, host, protocol
from agent.cli import main
from agent.cli.app import build_parser
from agent.errors import NetworkDataError
from agent.network.description import FORMAT
from agent.xenstore import XenStore
from tests.cli.conftest import run
from tests.conftest import wait_for

PUBLIC = {"label": "public", "mac": "fa:16:3e:0a:1b:2c", "gateway": "203.0.113.1",
          "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1", "gateway": "203.0.113.1"}],
          "dns": ["198.51.100.53"]}
PRIVATE = {"label": "private", "mac": "FA:16:3E:99:88:77",
           "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0", "enabled": "1"}]}


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
    """When the domain's name node disappears while a call waits (a reboot), the call fails with REBOOT, as
    nova's plugin does."""
    def reboot() -> None:
        with XenStore(xenstored.address, domain) as toolstack:
            wait_for(lambda: toolstack.list("data/host"))
            toolstack.delete("name")

    rebooting = threading.Thread(target=reboot)
    rebooting.start()
    code = main(["host", "--xenstore", xenstored.address, "--domain-path", domain, "version"], io.StringIO())
    rebooting.join(10)
    assert code == 7
    assert capsys.readouterr().err.startswith(f"Error: REBOOT: domain {domain} no longer present")


@pytest.mark.parametrize("call", [["version"], ["resetnetwork", "--input", "{description}"]])
def test_host_refuses_a_domain_that_does_not_exist(xenstored, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   call: list[str]) -> None:
    """A domain path with no domain there fails at once, exit 7, naming the path and how to find the domid,
    and writes nothing (dom0 would otherwise create that domain's tree)."""
    description = tmp_path / "network.json"
    description.write_text(json.dumps([PUBLIC]))
    argv = ["host", "--xenstore", xenstored.address, "--domain-path", "/local/domain/99",
            *(a.format(description=description) for a in call)]
    assert main(argv, io.StringIO()) == 7
    assert capsys.readouterr().err == (
        "Error: no domain at /local/domain/99: its 'name' node does not exist; check the domid ('xenstore-ls "
        "/local/domain' lists the domains, 'xl list' their ids)\n")
    with XenStore(xenstored.address, "") as dom0:
        assert not dom0.exists("/local/domain/99")


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


class Guest(threading.Thread):
    """The guest's side of one call, played by the test where no agent runs resetnetwork: it answers the first
    request with ``reply`` and records the request and what ``vm-data`` held when it arrived."""

    def __init__(self, address: str, domain: str, reply: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.address, self.domain, self.reply = address, domain, reply
        self.request: Any = None
        self.networking: dict[str, str] = {}
        self.hostname: bytes | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        with XenStore(self.address, self.domain) as xs:
            while not self.stopping.is_set():
                pending = xs.list("data/host")
                if pending:
                    request_id = pending[0]
                    self.request = json.loads(xs.read(f"data/host/{request_id}") or b"null")
                    self.networking = {key: (xs.read(f"vm-data/networking/{key}") or b"").decode()
                                       for key in xs.list("vm-data/networking")}
                    self.hostname = xs.read("vm-data/hostname")
                    xs.write(f"data/guest/{request_id}", json.dumps(self.reply))
                    xs.delete(f"data/host/{request_id}")
                    return
                time.sleep(0.01)


@pytest.fixture
def answer(xenstored, domain: str) -> Iterator[Any]:
    """``answer(reply)`` starts a Guest that answers the next call with ``reply``."""
    started: list[Guest] = []

    def start(reply: dict[str, str]) -> Guest:
        guest = Guest(xenstored.address, domain, reply)
        guest.start()
        started.append(guest)
        return guest

    yield start
    for guest in started:
        guest.stopping.set()
        guest.join(10)


@pytest.mark.parametrize(("document", "hostname"), [
    pytest.param({"networking": {"fa163e0a1b2c": PUBLIC, "FA163E998877": PRIVATE}, "hostname": "web-1"}, "web-1",
                 id="keyed-with-hostname"),
    pytest.param([PUBLIC, PRIVATE], None, id="bare-list-without-hostname"),
])
def test_host_resetnetwork_writes_vm_data_as_nova_does(xenstored, domain: str, guest, answer, tmp_path: Path,
                                                       document: Any, hostname: str | None) -> None:
    """'host resetnetwork --input' replaces vm-data/networking with one JSON entry per MAC-without-colons key,
    written as nova's jsonutils.dumps writes it, puts the plain host name in vm-data/hostname (or removes an old
    one), sends {"name": "resetnetwork", "value": ""}, prints the reply, and removes the host name after it."""
    guest.write("vm-data/networking/fa163e000001", json.dumps({"label": "stale", "mac": "fa:16:3e:00:00:01"}))
    guest.write("vm-data/hostname", "old-name")
    description = tmp_path / "network.json"
    description.write_text(json.dumps(document))
    responder = answer({"returncode": "0", "message": ""})
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "resetnetwork", "--input",
                    str(description))
    responder.join(10)
    assert (code, out) == (0, "returncode  0\nmessage     \n")
    assert responder.request == {"name": "resetnetwork", "value": ""}
    assert responder.networking == {"fa163e0a1b2c": json.dumps(PUBLIC), "FA163E998877": json.dumps(PRIVATE)}
    assert responder.hostname == (hostname.encode() if hostname else None)
    assert guest.read("vm-data/hostname") is None
    assert sorted(guest.list("vm-data/networking")) == ["FA163E998877", "fa163e0a1b2c"]


def test_host_resetnetwork_reads_stdin_and_reports_an_error_reply(xenstored, domain: str, answer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With '--input -' the description comes from standard input; an error reply is printed (here as JSON)
    and exits 1."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps([PUBLIC]).encode())))
    answer({"returncode": "500", "message": "no interface with MAC fa:16:3e:0a:1b:2c"})
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "--json", "resetnetwork",
                    "--input", "-")
    assert (code, json.loads(out)) == (1, {"returncode": "500", "message": "no interface with MAC fa:16:3e:0a:1b:2c"})


def test_host_resetnetwork_to_an_agent_that_does_not_run_it(run_agent, xenstored, domain: str, guest,
                                                            tmp_path: Path) -> None:
    """A real agent that refuses resetnetwork (by policy, or because it lacks it) answers an error, which is
    printed with exit 1; the data stays in vm-data but the host name is removed after the reply."""
    run_agent(deny="resetnetwork")
    description = tmp_path / "network.json"
    description.write_text(json.dumps({"networking": [PUBLIC], "hostname": "web-1"}))
    code, out = run("host", "--xenstore", xenstored.address, "--domain-path", domain, "--json", "resetnetwork",
                    "--input", str(description))
    assert (code, json.loads(out)) in [
        (1, {"returncode": "403", "message": "Agent command 'resetnetwork' is refused by this agent's policy"}),
        (1, {"returncode": "404", "message": "No such agent command 'resetnetwork'"})]
    assert guest.list("vm-data/networking") == ["fa163e0a1b2c"]
    assert guest.read("vm-data/hostname") is None


def test_host_resetnetwork_refuses_a_bad_description_before_writing(xenstored, domain: str, guest, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A description that is not valid network data exits 2 naming the file, and XenStore is left untouched."""
    description = tmp_path / "network.json"
    description.write_text(json.dumps([{**PUBLIC, "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.300"}]}]))
    code = main(["host", "--xenstore", xenstored.address, "--domain-path", domain, "resetnetwork", "--input",
                 str(description)], io.StringIO())
    assert (code, capsys.readouterr().err) == (2, f"Error: {description}: vm-data/networking/fa163e0a1b2c: the "
                                                  "netmask of 203.0.113.10 is not a dotted netmask "
                                                  "(got '255.255.255.300')\n")
    assert guest.list("vm-data") == []
    assert guest.list("data/host") == []


@pytest.mark.parametrize(("argv", "timeout"), [
    (["resetnetwork", "--input", "-"], 60.0),
    (["version"], 30.0),
    (["--timeout", "5", "resetnetwork", "--input", "-"], 5.0),
    (["--timeout", "90", "version"], 90.0),
])
def test_host_timeout_defaults_per_call(argv: list[str], timeout: float) -> None:
    """--timeout defaults to how long nova waits for the call (60 s for resetnetwork, 30 s otherwise), and a
    given --timeout wins."""
    args = build_parser().parse_args(["host", "--domain-path", "/local/domain/5", *argv])
    assert (args.call_timeout if args.timeout is None else args.timeout) == timeout


def test_host_resetnetwork_help_states_the_description_format(capsys: pytest.CaptureFixture[str]) -> None:
    """The help of 'host resetnetwork' quotes the format from agent.network.description, as render's does."""
    with pytest.raises(SystemExit):
        main(["host", "--domain-path", "/local/domain/5", "resetnetwork", "--help"], io.StringIO())
    assert "".join(FORMAT.split()) in "".join(capsys.readouterr().out.split())  # argparse rewraps it


def test_the_host_sides_constants_are_one_set() -> None:
    """The command line takes nova's timeouts from agent.host and '-' from the network command line; the
    vm-data paths are the protocol's."""
    from agent.cli import host as cli_host
    from agent.cli import network as cli_network

    assert (cli_host.CALL_TIMEOUT, cli_host.RESET_NETWORK_TIMEOUT) == (host.CALL_TIMEOUT, host.RESET_NETWORK_TIMEOUT)
    assert (host.CALL_TIMEOUT, host.RESET_NETWORK_TIMEOUT) == (30.0, 60.0)
    assert cli_host.FROM_STDIN is cli_network.FROM_STDIN == "-"
    assert (protocol.NETWORKING, protocol.HOSTNAME) == ("vm-data/networking", "vm-data/hostname")


class Untouchable:
    """A XenStore that fails the test if anything is written or deleted."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"XenStore touched ({name})")


@pytest.mark.parametrize("key", ["fa:16:3e:0a:1b:2c", "fa163e0a1b2", "eth0"])
def test_reset_network_refuses_a_key_that_is_no_mac_before_writing(key: str) -> None:
    """Host.reset_network checks every key as the description does before touching XenStore."""
    with pytest.raises(NetworkDataError, match="is not a MAC without colons"):
        host.Host(Untouchable()).reset_network({key: PUBLIC})  # type: ignore[arg-type]
