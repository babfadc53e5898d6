"""kmsactivate, replayed step by step on a real journal and the licensing port running a fake cscript that
answers as slmgr does: each state, every interruption resumed, refusals before anything runs, failures of
each step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import from_overrides
from agent.journal import Journal
from agent.machines import REGISTRY
from agent.machines.base import Command, Context, Event, stored_value
from agent.machines.kmsactivate import KmsActivate
from agent.platform.windows_kms import Licensing
from agent.ports import Ports
from agent.protocol import Request
from tests.fakes.slmgr import (
    ACTIVATING,
    NO_KMS_QUITS,
    NO_KMS_TEXT,
    NO_PRODUCT,
    Answer,
    FakeCscript,
    FakeLicensingWmi,
    Product,
)
from tests.machines import stopping_at

SERVER = "kms.example.com:1688"
SKMS = f"/skms {SERVER}"
SET = f"Key Management Service machine name set to {SERVER} successfully."


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path / "state")


@pytest.fixture
def cscript(tmp_path: Path) -> FakeCscript:
    return FakeCscript(tmp_path / "cscript")


def port(fake: FakeCscript, wmi: FakeLicensingWmi | None = None) -> Licensing:
    return Licensing(cscript=str(fake.path), slmgr=r"C:\Windows\System32\slmgr.vbs",
                     modules=(wmi or FakeLicensingWmi()).modules())


def command(journal: Journal, machine: type[Command], value: Any, licensing: Licensing | None) -> Command:
    """The journaled command (one request id per test), as the daemon makes it."""
    record = journal.find_request("r")
    if record is None:
        record = journal.receive("r", "", machine.NAME, machine.NAME, "0" * 64, stored_value(machine, value))
    ctx = Context(journal=journal, config=from_overrides(), ports=Ports(licensing=licensing),
                  request=Request("r", machine.NAME, value, "0" * 64))
    return machine(record, ctx)


def resume(journal: Journal, cmd: Command, licensing: Licensing) -> Command:
    """The next process: the command as journaled, run in recovery by the real machine."""
    resumed = command(journal, REGISTRY[cmd.NAME], cmd.ctx.request.value, licensing)
    resumed.run(recovery=True)
    return resumed


def reply(journal: Journal, cmd: Command) -> dict[str, str | None]:
    """The reply the journal holds for ``cmd``."""
    record = journal.get(cmd.record.id)
    return {"returncode": record.reply_code, "message": record.reply_message}


def test_each_step(journal: Journal, cscript: FakeCscript) -> None:
    """received runs nothing; setting_server runs /skms alone; activating runs /ato and answers."""
    licensing = port(cscript)
    cmd = command(journal, stopping_at(KmsActivate, "setting_server"), SERVER, licensing)
    cmd.run()
    assert cmd.state == "setting_server" and (cmd.data.host, cmd.data.port) == ("kms.example.com", 1688)
    assert cscript.options() == []
    cmd = command(journal, stopping_at(KmsActivate, "activating"), SERVER, licensing)
    cmd.run(recovery=True)
    assert cmd.state == "activating" and cmd.data.set_message == SET
    assert cscript.options() == [SKMS]
    done = resume(journal, cmd, licensing)
    assert done.state == "done"
    assert cscript.options() == [SKMS, "/ato"]
    assert reply(journal, done) == {"returncode": "0", "message": f"KMS server set to {SERVER}; Windows activated "
                                                                  "(Product activated successfully.)"}


def test_the_journal_shows_each_step(journal: Journal, cscript: FakeCscript) -> None:
    """The transitions name the server and slmgr's answer to each step."""
    cmd = command(journal, KmsActivate, SERVER, port(cscript))
    cmd.run()
    rows = journal.transitions(cmd.record.id)
    assert [row.trigger for row in rows if row.trigger != "receive"][-3:] == ["configure", "server_set", "activated"]
    details = [json.loads(row.detail) for row in rows if row.detail]
    assert {"server": SERVER} in details
    assert {"slmgr": SET, "again": False} in details


@pytest.mark.parametrize(("value", "why"), [
    ("kms.example.com", "has no port"),
    ("kms&calc:1688", "a character other than"),
    ({"activation_key": "k", "profile": "p", "domains": []}, "the Red Hat form"),
])
def test_a_bad_value_runs_nothing(journal: Journal, cscript: FakeCscript, value: Any, why: str) -> None:
    """A bad value is a 500 naming what is wrong, and slmgr never runs."""
    cmd = command(journal, KmsActivate, value, port(cscript))
    cmd.run()
    answer = reply(journal, cmd)
    message = answer["message"] or ""
    assert cmd.state == "failed" and answer["returncode"] == "500"
    assert message.startswith("Invalid kmsactivate value: ") and why in message
    assert cscript.options() == []


def test_without_the_licensing_port_it_fails_clearly(journal: Journal) -> None:
    """An agent without the port (not Windows) answers that it has none."""
    cmd = command(journal, KmsActivate, SERVER, None)
    cmd.run()
    assert reply(journal, cmd) == {"returncode": "500", "message": "this agent has no licensing backend"}


def test_a_failed_skms_does_not_activate(journal: Journal, cscript: FakeCscript) -> None:
    """/skms failing ends the command with its error; /ato is not run."""
    cscript.answer("/skms", Answer(("Error: 0xC004F069 On a computer running Microsoft Windows non-core edition, "
                                    "run 'slui.exe 0x2a 0xC004F069' to display the error text.",), status=0xC004F069))
    cmd = command(journal, KmsActivate, SERVER, port(cscript))
    cmd.run()
    answer = reply(journal, cmd)
    assert answer["returncode"] == "500"
    assert (answer["message"] or "").startswith(f"Setting the KMS server to {SERVER} failed: slmgr /skms {SERVER} "
                                                "failed with exit status 105: Error: 0xC004F069 ")
    assert cscript.options() == [SKMS]


@pytest.mark.parametrize(("answer", "why"), [
    (NO_KMS_QUITS, f"slmgr /ato failed with exit status 116: {NO_KMS_TEXT[:100]}"),
    (NO_PRODUCT, "slmgr /ato failed (exit status 0): Error: product not found."),
], ids=["unreachable", "no-product"])
def test_a_failed_activation_says_the_server_was_set(journal: Journal, cscript: FakeCscript, answer: Answer,
                                                     why: str) -> None:
    """/ato failing is a 500 that says the server was set, then slmgr's error."""
    cscript.answer("/ato", answer)
    cmd = command(journal, KmsActivate, SERVER, port(cscript))
    cmd.run()
    message = reply(journal, cmd)["message"] or ""
    assert message.startswith(f"The KMS server was set to {SERVER}, but activation failed: {why}")
    assert cmd.state == "failed" and cscript.options() == [SKMS, "/ato"]


def test_an_ato_that_exits_0_unlicensed_is_a_500_saying_so(journal: Journal, cscript: FakeCscript) -> None:
    """/ato exiting 0 with a failure in another language (no English "Error:") while Windows stays unlicensed is
    a 500 with the license state WMI reads, not "activated"."""
    cscript.answer("/ato", Answer((ACTIVATING, "Fehler: Die Produktaktivierung ist fehlgeschlagen.")))
    wmi = FakeLicensingWmi([Product("Windows(R), ServerStandard edition", status=5)])
    cmd = command(journal, KmsActivate, SERVER, port(cscript, wmi))
    cmd.run()
    assert reply(journal, cmd) == {"returncode": "500", "message": (
        f"The KMS server was set to {SERVER}, but activation failed: slmgr /ato reported no error, but Windows is not "
        "activated: Windows(R), ServerStandard edition is in notification mode")}
    assert cmd.state == "failed"


class DiesAfterSkms(KmsActivate):
    """The process dies after slmgr /skms ran, before ``server_set`` was journaled."""

    def on_enter_setting_server(self, event: Event) -> None:
        self._licensing().set_server(self.data.server)
        self.wait(0)


@pytest.mark.parametrize(("machine", "runs"), [
    (stopping_at(KmsActivate, "setting_server"), [SKMS, "/ato"]),
    (DiesAfterSkms, [SKMS, SKMS, "/ato"]),
    (stopping_at(KmsActivate, "activating"), [SKMS, "/ato"]),
], ids=["before-skms", "after-skms", "before-ato"])
def test_an_interrupted_command_resumes_and_answers_once(journal: Journal, cscript: FakeCscript,
                                                         machine: type[Command], runs: list[str]) -> None:
    """A resume re-runs only the step that was under way (/skms again is harmless: same name and port) and
    answers "0" once."""
    licensing = port(cscript)
    cmd = command(journal, machine, SERVER, licensing)
    cmd.run()
    done = resume(journal, cmd, licensing)
    assert done.state == "done" and reply(journal, done)["returncode"] == "0"
    assert cscript.options() == runs


def test_giving_up_while_activating_says_the_server_was_set(journal: Journal, cscript: FakeCscript) -> None:
    """The crash-loop reply in activating tells how far the command got."""
    cmd = command(journal, stopping_at(KmsActivate, "activating"), SERVER, port(cscript))
    cmd.run()
    again = command(journal, KmsActivate, SERVER, port(cscript))
    again.give_up(4)
    assert reply(journal, again) == {
        "returncode": "500", "message": f"Agent command 'kmsactivate' was interrupted 3 times; the KMS server was "
                                        f"set to {SERVER}, but activation was not confirmed; not retrying it, to "
                                        "stop a crash loop"}
    assert cscript.options() == [SKMS]
