"""The journaled machine: events replayed step by step, illegal events, failures and recovery policies."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from transitions import MachineError

from agent.config import Config
from agent.errors import CommandFailed, JournalError
from agent.journal import Journal
from agent.journal.engine import DATABASE_NAME
from agent.machines.base import RESUME, ROLL_BACK, Command, Context, Event, stored_value
from agent.machines.rejected import Rejected
from agent.protocol import Request

SECRET = "hunter2-must-never-appear"
WITHDRAWN = CommandFailed("500", "Request was withdrawn by the host before the agent could finish it")


class Sample(Command):
    """A machine with a working state that rolls back on recovery, and a compensating path."""

    NAME = "sample"
    STATES = ["received", "working", "undoing", "done", "rolled_back"]
    TRANSITIONS = [
        {"trigger": "start", "source": "received", "dest": "working"},
        {"trigger": "complete", "source": "working", "dest": "done"},
        {"trigger": "rollback", "source": "working", "dest": "undoing"},
        {"trigger": "undone", "source": "undoing", "dest": "rolled_back"},
    ]
    TERMINAL = frozenset({"done", "rolled_back"})
    RECOVERY = {"received": RESUME, "working": ROLL_BACK, "undoing": RESUME}
    behaviour: dict[str, Any] = {}  # set per test

    def __init__(self, *args: Any) -> None:
        self.entered: list[str] = []
        super().__init__(*args)

    def on_enter_received(self, event: Event) -> None:
        self.entered.append("received")
        self.advance("start", detail={"size": 3})

    def on_enter_working(self, event: Event) -> None:
        self.entered.append("working")
        if "raise" in self.behaviour:
            raise self.behaviour["raise"]
        if not self.behaviour.get("stop"):
            self.finish("complete", "0", "finished")

    def on_enter_undoing(self, event: Event) -> None:
        self.entered.append("undoing")
        self.finish("undone", "500", "rolled back")


class FailingJournal(Journal):
    """A journal whose transition commits fail, as on a full disk."""

    def transition(self, *args: Any, **kwargs: Any) -> None:
        raise JournalError("disk full")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    journal = Journal.open(tmp_path)
    yield journal
    journal.close()


@pytest.fixture(autouse=True)
def _reset_behaviour() -> None:
    Sample.behaviour = {}


def new_command(journal: Journal, state: str | None = None) -> Sample:
    record = journal.receive("r1", "", "sample", "sample", "0" * 64, None)
    if state is not None:  # put the journal where a crash would have left it
        record = journal.transition(record, "start", state)
    ctx = Context(journal=journal, config=Config(), request=Request("r1", "sample", SECRET, "0" * 64))
    return Sample(record, ctx)


def path(journal: Journal) -> list[tuple[str, str | None, str]]:
    return [(t.trigger, t.source, t.dest) for t in journal.transitions(1)]


def test_replay_each_event_and_its_journal_row(journal: Journal) -> None:
    """Each event moves the state one step, and the journal holds that step before the next runs."""
    Sample.behaviour = {"stop": True}
    command = new_command(journal)
    assert command.state == "received"
    command.advance("start")
    assert command.state == "working"
    assert journal.get(1).state == "working"
    assert path(journal)[-1] == ("start", "received", "working")
    command.finish("complete", "0", "finished")
    assert command.state == "done"
    assert journal.get(1).reply == {"returncode": "0", "message": "finished"}
    assert path(journal) == [("receive", None, "received"), ("start", "received", "working"),
                             ("complete", "working", "done")]


@pytest.mark.parametrize(("state", "event"), [("received", "complete"), ("received", "undone"),
                                              ("received", "no-such-trigger"), ("done", "start"),
                                              ("done", "fail"), ("failed", "fail")])
def test_illegal_event_leaves_state_unchanged(journal: Journal, state: str, event: str) -> None:
    """An event not allowed from the current state raises, and neither the model nor the journal moves."""
    command = new_command(journal, None if state == "received" else state)
    rows = len(path(journal))
    with pytest.raises(MachineError):
        command.advance(event)
    assert command.state == state
    assert journal.get(1).state == state
    assert len(path(journal)) == rows


def test_state_cannot_be_assigned_around_the_journal(journal: Journal) -> None:
    """Only advance() changes state: a direct assignment is refused."""
    command = new_command(journal)
    with pytest.raises(AttributeError):
        command.state = "done"  # type: ignore[misc]
    assert command.state == "received"


def test_failed_commit_changes_nothing_and_runs_no_callback(tmp_path: Path) -> None:
    """If the journal cannot commit a transition, the state stays and its on_enter never runs."""
    journal = FailingJournal.open(tmp_path)
    command = new_command(journal)
    with pytest.raises(JournalError):
        command.run()
    assert command.state == "received"
    assert command.entered == ["received"]


def test_run_drives_to_a_terminal_state(journal: Journal) -> None:
    """run() goes through every state in order and ends with the journaled reply."""
    command = new_command(journal)
    command.run()
    assert command.entered == ["received", "working"]
    assert (command.state, journal.get(1).reply_code) == ("done", "0")


def test_command_error_fails_with_its_reply(journal: Journal) -> None:
    """A CommandError raised by a state ends the command in failed with exactly its reply."""
    Sample.behaviour = {"raise": CommandFailed("500", "Invalid password data received")}
    command = new_command(journal)
    command.run()
    assert command.state == "failed"
    assert journal.get(1).reply == {"returncode": "500", "message": "Invalid password data received"}
    assert path(journal)[-1] == ("fail", "working", "failed")


def test_unexpected_error_fails_without_its_text(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    """Any other exception fails the command with a generic reply; its text, maybe secret, goes nowhere."""
    Sample.behaviour = {"raise": ValueError(f"bad value {SECRET}")}
    command = new_command(journal)
    command.run()
    record = journal.get(1)
    assert record.state == "failed"
    assert record.reply == {"returncode": "500",
                            "message": "Agent error in 'sample' (ValueError); see the agent's log"}
    everything = caplog.text + repr(record) + repr(journal.transitions(1))
    assert SECRET not in everything


def test_recovery_resumes_a_resume_state(journal: Journal) -> None:
    """A command found in a 'resume' state re-enters it and carries on."""
    command = new_command(journal)
    command.run(recovery=True)
    assert command.entered == ["received", "working"]
    assert command.state == "done"


def test_recovery_rolls_back_a_rollback_state(journal: Journal) -> None:
    """A command found in a 'rollback' state takes the compensating path instead of re-entering."""
    command = new_command(journal, "working")
    command.run(recovery=True)
    assert command.entered == ["undoing"]
    assert command.state == "rolled_back"
    assert path(journal)[-2:] == [("rollback", "working", "undoing"), ("undone", "undoing", "rolled_back")]


def test_give_up_fails_with_the_attempt_count(journal: Journal) -> None:
    """A crash-looping command is failed, naming how often it was interrupted."""
    command = new_command(journal)
    command.give_up(4)
    assert journal.get(1).reply == {"returncode": "500", "message": "Agent command 'sample' was interrupted 3 "
                                                                    "times; not retrying it, to stop a crash loop"}


def test_unknown_journaled_state_is_refused(journal: Journal) -> None:
    """A state this agent version does not know (for example from a newer one) is not silently adopted."""
    record = journal.receive("r1", "", "sample", "sample", "0" * 64, None)
    record = journal.transition(record, "start", "teleporting")
    ctx = Context(journal=journal, config=Config(), request=Request("r1", "sample", None, "0" * 64))
    with pytest.raises(JournalError, match="unknown to the sample machine"):
        Sample(record, ctx)


def test_every_state_needs_a_recovery_policy() -> None:
    """A machine that forgets to say how a state recovers is rejected when it is built."""

    with pytest.raises(TypeError, match="busy"):
        class Careless(Command):
            NAME = "careless"
            STATES = ["received", "busy", "done"]
            TERMINAL = frozenset({"done"})
            TRANSITIONS = [{"trigger": "go", "source": "received", "dest": "busy"}]
            RECOVERY = {"received": RESUME}


@pytest.mark.parametrize("trigger", ["finish", "state", "data", "run"])
def test_a_trigger_named_like_an_attribute_takes_its_transition(journal: Journal, trigger: str) -> None:
    """Triggers are fired on the machine, not bound onto the command, so one named like an attribute of the
    class neither hides that attribute nor is hidden by it."""

    class Named(Command):
        NAME = "named"
        STATES = ["received", "done"]
        TERMINAL = frozenset({"done"})
        TRANSITIONS = [{"trigger": trigger, "source": "received", "dest": "done"}]
        RECOVERY = {"received": RESUME}

        def on_enter_received(self, event: Event) -> None:
            self.finish(trigger, "0", "named")

    record = journal.receive("req-named", "/local/domain/5", "named", "named", "d" * 64, None)
    command = Named(record, Context(journal, Config(), Request("req-named", "named", None, "d" * 64)))
    command.run()
    assert command.state == "done"
    assert journal.get(record.id).reply == {"returncode": "0", "message": "named"}
    assert [(t.trigger, t.dest) for t in journal.transitions(record.id)] == [("receive", "received"),
                                                                            (trigger, "done")]


@pytest.mark.parametrize(("method", "message"), [("on_enter_wroking", "on_enter_wroking name no state"),
                                                  ("on_exit_received", "on_exit_ callbacks are not supported")])
def test_a_callback_the_machine_would_never_call_is_refused(method: str, message: str) -> None:
    """A state callback with a misspelt state, or an on_exit_ one, is an error when the class is defined,
    not a callback that silently never runs."""
    with pytest.raises(TypeError, match=message):
        type("Careless", (Command,), {
            "NAME": "careless", "STATES": ["received", "working", "done"], "TERMINAL": frozenset({"done"}),
            "TRANSITIONS": [{"trigger": "go", "source": "received", "dest": "working"}],
            "RECOVERY": {"received": RESUME, "working": RESUME}, method: lambda self, event: None})


def test_a_callback_added_to_the_class_later_runs(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """State callbacks are looked up when the state is entered, so one set on the class after it was defined
    (a decorator, a test's monkeypatch) runs like one written in it."""
    entered: list[str] = []

    def on_enter_done(self: Sample, event: Event) -> None:
        entered.append(self.state)

    monkeypatch.setattr(Sample, "on_enter_done", on_enter_done, raising=False)
    command = new_command(journal)
    command.run()
    assert (command.state, entered) == ("done", ["done"])


def test_terminal_states_must_be_states() -> None:
    """A machine that declares a terminal state it does not have is rejected when it is built."""
    with pytest.raises(TypeError, match="finished"):
        class Confused(Command):
            NAME = "confused"
            STATES = ["received", "done"]
            TERMINAL = frozenset({"finished"})
            TRANSITIONS = [{"trigger": "go", "source": "received", "dest": "done"}]
            RECOVERY = {"received": RESUME}


def test_request_with_a_rejection_fails_before_any_work(journal: Journal) -> None:
    """A command whose request was withdrawn (or refused) fails with that reply; no state's work runs."""
    record = journal.receive("r1", "", "sample", "sample", "0" * 64, None)
    ctx = Context(journal=journal, config=Config(), request=Request("r1", "sample", None, "0" * 64, WITHDRAWN))
    command = Sample(record, ctx)
    command.run(recovery=True)
    assert command.entered == []
    assert journal.get(1).reply == {"returncode": "500", "message": WITHDRAWN.message}


@pytest.mark.parametrize(("needs_value", "state", "reply"), [
    (False, "done", {"returncode": "0", "message": "finished"}),
    (True, "failed", {"returncode": "500", "message": WITHDRAWN.message}),
])
def test_withdrawn_request_past_the_first_state(journal: Journal, needs_value: bool, state: str,
                                                reply: dict[str, str]) -> None:
    """Past the first state, a withdrawn request fails the command only if the state needs its value: work
    already done (a password already set) is finished truthfully."""
    record = journal.transition(journal.receive("r1", "", "sample", "sample", "0" * 64, None), "start", "working")
    ctx = Context(journal=journal, config=Config(), request=Request("r1", "sample", None, "0" * 64, WITHDRAWN))

    class Resuming(Sample):
        RECOVERY = {**Sample.RECOVERY, "working": RESUME}

        def on_enter_working(self, event: Event) -> None:
            if needs_value:
                assert self.request_value() is not None
            self.finish("complete", "0", "finished")

    Resuming(record, ctx).run(recovery=True)
    assert (journal.get(1).state, journal.get(1).reply) == (state, reply)


@pytest.mark.parametrize(("value", "stored"), [("agent", '"agent"'), ({"a": [1]}, '{"a": [1]}'),
                                               ("x" * 2000, None)])
def test_stored_value_is_whole_json_or_nothing(value: Any, stored: str | None) -> None:
    """A non-secret value is kept as parseable JSON; one too large is not kept (recovery re-reads it)."""
    assert stored_value(Sample, value) == stored


def test_secret_values_are_never_stored() -> None:
    """A machine that declares its value secret keeps only the digest."""
    assert stored_value(Rejected, "hunter2") is None


def test_resumed_tells_reentry_from_a_transition(journal: Journal) -> None:
    """A state's work knows whether a transition just entered it or the command was resumed in it."""
    seen: list[tuple[str, bool]] = []

    class Watching(Sample):
        RECOVERY = {**Sample.RECOVERY, "working": RESUME}

        def on_enter_working(self, event: Event) -> None:
            seen.append(("working", self.resumed))
            self.finish("complete", "0", "finished")

    command = Watching(journal.receive("r1", "", "sample", "sample", "0" * 64, None),
                       Context(journal=journal, config=Config(), request=Request("r1", "sample", "v", "0" * 64)))
    command.run()
    record = journal.transition(journal.receive("r2", "", "sample", "sample", "1" * 64, None), "start", "working")
    resumed = Watching(record, Context(journal=journal, config=Config(), request=Request("r2", "sample", "v",
                                                                                       "1" * 64)))
    resumed.run(recovery=True)
    assert seen == [("working", False), ("working", True)]


def test_triggers_from_callbacks_are_queued_not_nested(journal: Journal) -> None:
    """A trigger fired inside a state's work is taken after that work returns: the next state's work never
    runs inside the previous one's call."""
    order: list[str] = []

    class Queued(Sample):
        def on_enter_received(self, event: Event) -> None:
            self.advance("start")
            order.append("received returns")

        def on_enter_working(self, event: Event) -> None:
            order.append("working starts")
            self.finish("complete", "0", "finished")

    command = Queued(journal.receive("r1", "", "sample", "sample", "0" * 64, None),
                     Context(journal=journal, config=Config(), request=Request("r1", "sample", "v", "0" * 64)))
    command.run()
    assert order == ["received returns", "working starts"]
    assert command.state == "done"


@dataclasses.dataclass(frozen=True)
class Counted:
    size: int = 0
    name: str = ""


class WithData(Sample):
    Data = Counted

    def on_enter_received(self, event: Event) -> None:
        self.advance("start", detail={"audit": "only"}, data=Counted(3, "three"))

    def on_enter_working(self, event: Event) -> None:
        self.finish("complete", "0", f"{self.data.size} {self.data.name}")


def test_working_data_is_journaled_with_its_transition_and_read_back_typed(journal: Journal, tmp_path: Path) -> None:
    """Working data is written in the transition that sets it, kept on the command, read back as its
    dataclass by a later state (and by a later process), and covered by the chain."""
    record = journal.receive("r1", "", "sample", "sample", "0" * 64, None)
    ctx = Context(journal=journal, config=Config(), request=Request("r1", "sample", "v", "0" * 64))
    WithData(record, ctx).run()
    stored = journal.get(1)
    assert stored.reply == {"returncode": "0", "message": "3 three"}  # the later state read it typed
    assert stored.data == '{"name":"three","size":3}'
    assert [t.data for t in journal.transitions(1)] == [None, stored.data, None]
    assert WithData(stored, ctx).data == Counted(3, "three")  # as a later process reads it
    assert journal.verify().ok
    with sqlite3.connect(tmp_path / DATABASE_NAME) as conn:
        conn.execute("UPDATE commands SET data = '{\"name\":\"three\",\"size\":4}' WHERE id = 1")
    assert "working data" in journal.verify().problem


def test_a_machine_without_working_data_has_none(journal: Journal) -> None:
    """Reading working data from a machine that declares none is a clear error, not a silent dict."""
    with pytest.raises(TypeError, match="keeps no working data"):
        _ = new_command(journal).data


def test_commands_of_one_type_in_two_threads_each_finish(tmp_path: Path) -> None:
    """Two commands of the same type run from two threads (agents in one process) each get their own reply:
    the machine's trigger queue, shared by the type, never carries one command's trigger into the other."""
    a_working, b_starting = threading.Event(), threading.Event()

    class Slow(Sample):
        def on_enter_working(self, event: Event) -> None:
            if self.record.request_id == "a":
                a_working.set()
                b_starting.wait(10)  # the other command starts while this one is mid-transition
            self.finish("complete", "0", self.record.request_id)

    def run(journal: Journal, request_id: str) -> None:
        record = journal.receive(request_id, "", "sample", "sample", "0" * 64, None)
        command = Slow(record, Context(journal=journal, config=Config(),
                                       request=Request(request_id, "sample", "v", "0" * 64)))
        if request_id == "b":
            b_starting.set()
        command.run()

    journals = [Journal.open(tmp_path / "a"), Journal.open(tmp_path / "b")]
    first = threading.Thread(target=run, args=(journals[0], "a"))
    first.start()
    assert a_working.wait(10)
    second = threading.Thread(target=run, args=(journals[1], "b"))
    second.start()
    first.join(10)
    second.join(10)
    assert [j.get(1).reply for j in journals] == [{"returncode": "0", "message": "a"},
                                                  {"returncode": "0", "message": "b"}]
