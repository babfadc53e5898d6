"""The journaled machine: every command is a ``transitions`` state machine whose state is in the journal.

A command type is a subclass of ``JournaledCommand`` that declares its machine as data::

    STATES      the states, in the order a command passes through them
    TRANSITIONS the transitions, as dicts for ``transitions.Machine``
    RECOVERY    per non-terminal state: "resume" (re-enter it and go on) or "rollback"
                (take the ``rollback`` trigger to the compensating path)

and then one ``on_enter_<state>`` callback per state, in state order, that does the state's work and fires
the next trigger. The base adds what every machine shares: the terminal ``failed`` state, reachable from
every other non-terminal state through ``fail``, with the error reply.

Validate, then act: a trigger is first checked by ``transitions`` (an illegal one raises and leaves the state
unchanged); the new state is then committed to the journal by the ``state`` property's setter, together
with the trigger, the redacted detail and, for a terminal state, the reply. Only when that commit has
succeeded does the in-memory state change and ``on_enter_<state>`` run. A restart re-enters the journaled
state, so every ``on_enter`` must be idempotent or guarded by what the journal already says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from transitions import Machine, MachineError

from agent.config import Config
from agent.errors import CommandError, JournalError, RestartRequested, XenStoreError, where
from agent.faults import crash_point
from agent.journal import TERMINAL_STATES, CommandRecord, Journal, SideWrite
from agent.platform import Platform
from agent.protocol import Request, reply

log = logging.getLogger(__name__)

FAILED = "failed"
RESUME = "resume"
ROLLBACK = "rollback"


@dataclasses.dataclass
class Context:
    """What the daemon hands a machine: its journal, its request and the agent's configuration."""

    journal: Journal
    config: Config
    request: Request
    #: Names of the commands this agent offers (implemented and allowed), for ``features``.
    offered: Callable[[], Sequence[str]] = tuple
    #: The operating system's effects (passwords, ...); None where a command needs none (tests).
    platform: Platform | None = None
    #: Seconds since this agent process signalled ready, or None before that.
    uptime: Callable[[], float | None] = lambda: None
    #: Whether a supervisor runs this agent (and so restarts it when a command asks).
    supervised: bool = False


class JournaledCommand:
    """One command row, as a model of its type's machine."""

    NAME: ClassVar[str]
    STATES: ClassVar[Sequence[str]]
    TRANSITIONS: ClassVar[Sequence[dict[str, Any]]]
    RECOVERY: ClassVar[dict[str, str]]
    #: Whether the request's value is a secret: if so it is never stored, only its digest.
    SECRET_VALUE: ClassVar[bool] = False
    #: States the agent is restarted in on purpose: a recovery there is not counted as a crash.
    RESTART_STATES: ClassVar[frozenset[str]] = frozenset()
    _machine: ClassVar[Machine | None] = None

    def __init__(self, record: CommandRecord, ctx: Context) -> None:
        self.record = record
        self.ctx = ctx
        self._state = record.state
        self._restoring = True
        self._trigger: str | None = None
        self._detail: dict[str, Any] | None = None
        self._reply: dict[str, str] | None = None
        self._also: SideWrite | None = None
        self._resumed_in: str | None = None
        #: Set by a state that must wait (agentupdate's probation): re-run it after this many seconds.
        self.resume_after: float | None = None
        machine = type(self).machine()
        if record.state not in machine.states:
            raise JournalError(f"command {record.id} is in state {record.state!r}, unknown to the "
                               f"{self.NAME} machine of this agent version")
        machine.add_model(self, initial=record.state)
        self._restoring = False

    # -- the machine as data --------------------------------------------------------------------------

    @classmethod
    def states(cls) -> list[str]:
        return [*cls.STATES, FAILED]

    @classmethod
    def transition_table(cls) -> list[dict[str, Any]]:
        working = [s for s in cls.STATES if s not in TERMINAL_STATES]
        return [*cls.TRANSITIONS, {"trigger": "fail", "source": working, "dest": FAILED}]

    @classmethod
    def machine(cls) -> Machine:
        """The one ``transitions.Machine`` of this command type; commands join it with ``add_model``."""
        machine = cls.__dict__.get("_machine")
        if machine is None:
            missing = set(cls.STATES) - TERMINAL_STATES - set(cls.RECOVERY)
            if missing:
                raise TypeError(f"{cls.__name__}: no recovery policy for {sorted(missing)}")
            # initial is a declared state: the constructor would otherwise invent one. Commands are added
            # with their journaled state, which add_model checks against the declared states.
            machine = cls._machine = Machine(model=None, states=cls.states(), transitions=cls.transition_table(),
                                             initial=cls.STATES[0], auto_transitions=False, send_event=False,
                                             model_attribute="state")
        return machine

    # -- the journaled state --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, dest: str) -> None:
        if self._restoring:  # add_model assigns the state already in the journal
            self._state = dest
            return
        if self._trigger is None:
            raise MachineError("state changes go through JournaledCommand.advance()")
        self.record = self.ctx.journal.transition(self.record, self._trigger, dest, detail=self._detail,
                                                  reply=self._reply, also=self._also)
        log.info("command %d %s: %s -> %s (%s)", self.record.id, self.NAME, self._state, dest, self._trigger)
        self._state = dest
        self._resumed_in = None
        crash_point(self.ctx.config, f"enter:{dest}")

    def advance(self, trigger: str, detail: dict[str, Any] | None = None,
                reply: dict[str, str] | None = None, also: SideWrite | None = None) -> None:
        """Fire ``trigger``; its transition is journaled (with ``detail``, ``reply`` and ``also``'s rows, in
        one transaction) before it acts.

        ``detail`` must never hold a secret: record digests, sizes and names instead.
        """
        self._trigger, self._detail, self._reply, self._also = trigger, detail, reply, also
        try:
            getattr(self, trigger)()
        finally:
            self._trigger = self._detail = self._reply = self._also = None

    @property
    def finished(self) -> bool:
        return self._state in TERMINAL_STATES

    @property
    def resumed(self) -> bool:
        """Whether the current state's work runs because the command was resumed in it (a recovery, a
        re-sent request, a waiting state's timer), rather than because a transition just entered it."""
        return self._resumed_in == self._state

    def finish(self, trigger: str, returncode: str, message: str, detail: dict[str, Any] | None = None,
               also: SideWrite | None = None) -> None:
        """Take the terminal transition ``trigger``, journaling the reply with it."""
        self.advance(trigger, detail=detail, reply=reply(returncode, message), also=also)

    # -- running --------------------------------------------------------------------------------------

    def run(self, recovering: bool = False) -> None:
        """Drive the command from its journaled state to a terminal one.

        A request that carries a rejection is failed with it before the first state's work runs. On recovery, a
        state whose policy is ``rollback`` takes the ``rollback`` trigger instead of re-entering. A
        CommandError ends the command with its reply; any other error ends it with a generic 500 that names
        the failure's type but never its text, which could hold a secret.
        Journal and XenStore errors propagate: the daemon cannot record or deliver anything without them.
        """
        self.resume_after = None
        with self._contained():
            if self.finished:
                return
            if self.ctx.request.rejection is not None and self._state == self.STATES[0]:
                # Malformed, unknown, refused by policy, or withdrawn before a recovery could re-read it.
                # Past the first state, only a state that needs the request fails with it (see ``value``):
                # work already done, such as a password already set, is still finished truthfully.
                raise self.ctx.request.rejection
            if recovering and self.RECOVERY.get(self._state) == ROLLBACK:
                self.advance("rollback", detail={"from": self._state})
            else:
                callback = getattr(self, f"on_enter_{self._state}", None)
                self._resumed_in = self._state
                crash_point(self.ctx.config, "in_machine")
                if callback is not None:
                    callback()
            if not self.finished and self.resume_after is None:
                raise MachineError(f"{self.NAME} stopped in non-terminal state {self._state!r}")

    def give_up(self, attempts: int) -> None:
        """End a command that keeps being interrupted, instead of running it again (crash-loop stop).

        The reply must say what actually happened: a machine whose work may be done by now overrides
        ``on_give_up`` to find out. Contained like ``run``: giving up itself never stops the agent.
        """
        with self._contained():
            if not self.finished:
                self.on_give_up(attempts)

    def on_give_up(self, attempts: int) -> None:
        """The crash-loop reply; by default a failure saying so."""
        self._fail("500", self.interrupted(attempts) + "; not retrying it, to stop a crash loop",
                   {"error": "crash_loop", "attempts": attempts})

    def interrupted(self, attempts: int) -> str:
        return f"Agent command '{self.NAME}' was interrupted {attempts - 1} times"

    @contextlib.contextmanager
    def _contained(self) -> Iterator[None]:
        """Any error ends the command with a reply, except the ones the daemon must see."""
        try:
            yield
        except (JournalError, XenStoreError, RestartRequested):
            raise
        except CommandError as exc:
            self._fail(exc.returncode, exc.message, {"error": type(exc).__name__})
        except Exception as exc:
            log.error("command %d %s failed in state %s: %s at %s", self.record.id, self.NAME, self._state,
                      type(exc).__name__, where(exc))
            self._fail("500", f"Agent error in '{self.NAME}' ({type(exc).__name__}); see the agent's log",
                       {"error": type(exc).__name__})

    def _fail(self, returncode: str, message: str, detail: dict[str, Any]) -> None:
        if not self.finished:
            self.finish("fail", returncode, message, detail)

    # -- helpers for machines -------------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The request's value; raises the request's rejection (such as "withdrawn") if it has one."""
        if self.ctx.request.rejection is not None:
            raise self.ctx.request.rejection
        return self.ctx.request.value


MAX_STORED_VALUE = 1024


def stored_value(command: type[JournaledCommand], value: Any) -> str | None:
    """What the journal keeps of a request's value: the JSON of a small non-secret value, else nothing.

    Without a stored value, recovery re-reads the request from XenStore (checked against its digest);
    a cut-off JSON text could not be parsed back, so a large value is not stored at all.
    """
    if command.SECRET_VALUE:
        return None
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= MAX_STORED_VALUE else None
