"""The journaled machine: every command is a ``transitions`` state machine whose state is in the journal.

A command type is a subclass of ``Command`` that declares its machine as data::

    STATES      the states, in the order a command passes through them
    TERMINAL    the states it ends in (the base adds ``failed``)
    TRANSITIONS the transitions, as dicts for ``transitions.Machine``
    RECOVERY    per working (non-terminal) state: RESUME or ROLL_BACK (see below)
    Data        optional: a dataclass of the command's working data

and then one ``on_enter_<state>`` callback per working state, in state order, that does the state's work and, as
its last act, fires the next trigger with ``advance`` or ``finish``. The base adds what every machine
shares: the terminal ``failed`` state, reachable from every working state through ``fail`` with the error
reply, and the ``resume`` trigger.

Validate, then act. ``transitions`` checks a trigger first (an illegal one raises ``MachineError`` and
nothing moves). The machine's ``before_state_change`` callback then commits the transition to the journal,
with the audit detail, the working data, the reply and any rows of the command type's own tables, in one
transaction; if that raises, the state stays as it was. Only then does the state change and
``on_enter_<state>`` run. Triggers fired from inside a callback are queued and taken one after the other
when the callback returns, so a long machine is a loop, not a nested call stack.

The one exception is a ``PURE`` command (no effect outside the journal: ``version``, ``features``,
``rejected``). The daemon runs it inside the group commit that journals its ``received`` (``Journal.batch``),
so its transitions are savepoints of that transaction, committed with it: a crash before that commit leaves
no trace of the command (the intake note counts it), and there is no work a second run could repeat.

The words of recovery, which every machine shares:

- **recovery**: at start, the daemon finds a command the previous process left unfinished and runs it again
  (``run(recovery=True)``); each such start counts as an attempt (``recovery.max_attempts``), except in the
  states where the agent is restarted on purpose (``PLANNED_RESTARTS``).
- **RESUME** (a state's policy): take the ``resume`` trigger, which re-enters the journaled state through the
  library, so its ``on_enter`` does the state's work again. Every such callback must therefore be idempotent,
  or guarded by what the journal and the command's records already say; ``resumed`` tells it that the state
  was re-entered rather than reached. The end of a wait resumes the same way, and so does a re-sent request
  for a command this process already ran (one waiting here is left to its timer).
- **ROLL_BACK** (a state's policy): take the ``rollback`` trigger instead, to the machine's compensating path,
  through ``roll_back_after_stop`` (which resetnetwork overrides to journal why).
- **wait**: a state that must come back later (agentupdate's probation, resetnetwork's verification) calls
  ``wait(seconds)``; the daemon resumes it then.
- **give up**: a command that keeps being interrupted is not run again; ``give_up`` ends it with a reply
  that says what actually happened (``on_give_up``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from transitions import EventData, Machine, MachineError

from agent.config import Config
from agent.errors import CommandError, JournalError, RestartRequested, XenStoreError, where
from agent.faults import crash_point
from agent.journal import CommandRecord, Journal, RecordWrite
from agent.journal.chain import canonical
from agent.ports import Ports
from agent.protocol import Request, reply

log = logging.getLogger(__name__)

FAILED = "failed"
#: Recovery policies (see the module docstring).
RESUME = "resume"
ROLL_BACK = "rollback"
#: The trigger to ``failed``, which the base adds to every machine (with ``resume``).
FAIL = "fail"
#: ``resume`` re-enters the journaled state: it changes nothing the journal would record (recovery counts
#: its attempts with rows of its own).
_NOT_JOURNALED = frozenset({RESUME})
#: Errors no command may turn into a reply: without the journal or XenStore the daemon can neither record nor
#: deliver one, and a requested restart is not a failure.
MUST_PROPAGATE = (JournalError, XenStoreError, RestartRequested)

Event = EventData


@dataclasses.dataclass
class Context:
    """What the daemon hands a command: its journal, its request, the configuration, and the ports through
    which alone it reaches the world (``agent.ports``)."""

    journal: Journal
    config: Config
    request: Request
    ports: Ports = dataclasses.field(default_factory=Ports)
    #: Names of the commands this agent offers (implemented and allowed), for ``features``.
    offered: Callable[[], Sequence[str]] = tuple


def _sources(transition: dict[str, Any]) -> list[str]:
    source = transition["source"]
    return [source] if isinstance(source, str) else list(source)


class Command:
    """One command row, run by its type's machine (which fires its events on it; see ``advance``)."""

    NAME: ClassVar[str]
    STATES: ClassVar[Sequence[str]]
    TERMINAL: ClassVar[frozenset[str]]
    TRANSITIONS: ClassVar[Sequence[dict[str, Any]]]
    RECOVERY: ClassVar[dict[str, str]]
    #: The working data's dataclass; None for a machine that keeps none.
    Data: ClassVar[type[Any] | None] = None
    #: Whether the host can name this command (``rejected`` is the agent's own).
    HOST_COMMAND: ClassVar[bool] = True
    #: The ports (``agent.ports.Ports`` fields) the command cannot work without: an agent that lacks one
    #: does not offer the command in ``features``.
    NEEDS: ClassVar[frozenset[str]] = frozenset()
    #: Whether the command has no effect outside the journal (it only answers): then it is journaled
    #: ``received`` and answered in one transaction, since a crash before that commit leaves nothing that a
    #: second run could repeat. A command with any effect of its own commits ``received`` before it.
    PURE: ClassVar[bool] = False
    #: Whether the request's value is a secret: if so it is never stored, only its digest.
    SECRET_VALUE: ClassVar[bool] = False
    #: States the agent is restarted in on purpose: finding a command there at start is not a crash.
    PLANNED_RESTARTS: ClassVar[frozenset[str]] = frozenset()
    _machine: ClassVar[Machine]
    _running: ClassVar[threading.RLock]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the declared machine and build it once, when the class is defined."""
        super().__init_subclass__(**kwargs)
        if not hasattr(cls, "STATES"):
            return  # an abstract intermediate class
        terminal = set(cls.TERMINAL)
        if not terminal <= set(cls.STATES):
            raise TypeError(f"{cls.__name__}: terminal states {sorted(terminal - set(cls.STATES))} are not states")
        missing = set(cls.STATES) - terminal - set(cls.RECOVERY)
        if missing:
            raise TypeError(f"{cls.__name__}: no recovery policy for {sorted(missing)}")
        if cls.STATES[0] != "received":
            raise TypeError(f"{cls.__name__}: the first state must be 'received', where the journal puts a request")
        table = cls.transition_table()
        for state, policy in cls.RECOVERY.items():
            rolls_back = any(t["trigger"] == ROLL_BACK and state in _sources(t) for t in table)
            if policy == ROLL_BACK and not rolls_back:
                raise TypeError(f"{cls.__name__}: {state!r} rolls back on recovery but has no 'rollback' transition")
        # queued: a trigger fired from a callback waits for that callback to return. The queue belongs to
        # the machine, which every command of the type shares, so ``_one_at_a_time`` lets one command of a
        # type run at a time in a process (the daemon runs one anyway; tests run agents in threads).
        # A command is never added to the machine as a model: it fires the machine's events on itself
        # (``advance``). Adding and removing each command as a model would cost, per command, binding every
        # trigger onto it and looking up its callbacks.
        # So every state calls ``_entered``, which looks up the state's ``on_enter_<state>`` on the command
        # when the state is entered: a callback added to the class later (a decorator, a test) is found too.
        if any(name.startswith("on_exit_") for name in dir(cls)):
            raise TypeError(f"{cls.__name__}: on_exit_ callbacks are not supported; do the work in the "
                            "on_enter_ callback of the state that follows")
        strays = sorted(name for name in dir(cls) if name.startswith("on_enter_")
                        and name.removeprefix("on_enter_") not in cls.states())
        if strays:
            raise TypeError(f"{cls.__name__}: {', '.join(strays)} name no state of the machine")
        states = [{"name": state, "on_enter": ["_entered"]} for state in cls.states()]
        cls._machine = Machine(model=None, states=states, transitions=table, initial=cls.STATES[0],
                               auto_transitions=False, send_event=True, queued=True,
                               model_attribute="journaled_state", before_state_change="_journal")
        cls._running = threading.RLock()

    def __init__(self, record: CommandRecord, ctx: Context) -> None:
        self.record = record
        self.ctx = ctx
        self.journaled_state = record.state
        #: Whether the current state was re-entered by ``resume`` rather than reached by a transition.
        self.resumed = False
        #: Seconds after which a waiting state wants to be resumed (see ``wait``), else None.
        self.waiting: float | None = None
        if record.state not in self.states():
            raise JournalError(f"command {record.id} is in state {record.state!r}, unknown to the "
                               f"{self.NAME} machine of this agent version")

    # -- the machine as data --------------------------------------------------------------------------

    @classmethod
    def states(cls) -> list[str]:
        return [*cls.STATES, FAILED]

    @classmethod
    def terminal(cls) -> frozenset[str]:
        return cls.TERMINAL | {FAILED}

    @classmethod
    def working(cls) -> list[str]:
        return [s for s in cls.STATES if s not in cls.TERMINAL]

    @classmethod
    def transition_table(cls) -> list[dict[str, Any]]:
        working = cls.working()
        return [*cls.TRANSITIONS, {"trigger": FAIL, "source": working, "dest": FAILED},
                {"trigger": RESUME, "source": working, "dest": "="}]

    # -- the journaled state --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The command's state; it changes only through a journaled transition."""
        return self.journaled_state

    @property
    def finished(self) -> bool:
        return self.journaled_state in self.terminal()

    @property
    def data(self) -> Any:
        """The working data, as the last transition that set it journaled it (a fresh ``Data()`` before)."""
        if self.Data is None:
            raise TypeError(f"the {self.NAME} machine keeps no working data")
        if self.record.data is None:
            return self.legacy_data()
        fields = {f.name for f in dataclasses.fields(self.Data)}
        return self.Data(**{k: v for k, v in json.loads(self.record.data).items() if k in fields})

    def legacy_data(self) -> Any:
        """The working data of a command journaled before working data existed; by default, none yet."""
        assert self.Data is not None
        return self.Data()

    def _entered(self, event: Event) -> None:
        """Every state's ``on_enter``: the state's own callback, if the command type has one."""
        callback = getattr(self, f"on_enter_{self.journaled_state}", None)
        if callback is not None:
            callback(event)

    def _journal(self, event: Event) -> None:
        """``before_state_change``: journal the transition before the state changes and its work starts (its
        own commit; for a ``PURE`` command, a savepoint of the batch that commits its receipt too)."""
        if event.event.name in _NOT_JOURNALED:
            self.resumed = True
            return
        assert event.transition is not None and event.transition.dest is not None
        source, dest, args = event.transition.source, event.transition.dest, event.kwargs
        data = args.get("data")
        self.record = self.ctx.journal.transition(
            self.record, event.event.name, dest, detail=args.get("detail"), reply=args.get("reply"),
            records=args.get("records"), data=None if data is None else canonical(dataclasses.asdict(data)))
        # A pure command's one step is in the "received" and "answered" lines already.
        log.log(logging.DEBUG if self.PURE else logging.INFO, "command %d %s: %s -> %s (%s)", self.record.id,
                self.NAME, source, dest, event.event.name)
        self.resumed = False
        crash_point(self.ctx.config, f"enter:{dest}")

    def advance(self, trigger: str, detail: dict[str, Any] | None = None, data: Any = None,
                reply: dict[str, str] | None = None, records: RecordWrite | None = None) -> None:
        """Fire ``trigger``: its transition is journaled, with ``detail`` (the audit record: never a secret,
        record digests, sizes and names instead), ``data`` (the new working data), ``reply`` and ``records``,
        in one transaction, before the next state's work starts.

        From inside a callback the trigger is queued: it is taken when the callback returns, so it must be the
        callback's last act.
        """
        event = self._machine.events.get(trigger)
        if event is None:
            raise MachineError(f"the {self.NAME} machine has no trigger {trigger!r}")
        with self._one_at_a_time():
            event.trigger(self, detail=detail, data=data, reply=reply, records=records)

    def finish(self, trigger: str, returncode: str, message: str, detail: dict[str, Any] | None = None,
               records: RecordWrite | None = None) -> None:
        """Take the terminal transition ``trigger``, journaling the reply with it."""
        self.advance(trigger, detail=detail, reply=reply(returncode, message), records=records)

    def wait(self, seconds: float) -> None:
        """Stay in this state and be resumed after ``seconds`` (the daemon's timer does it)."""
        self.waiting = max(0.0, seconds)

    # -- running --------------------------------------------------------------------------------------

    def run(self, recovery: bool = False) -> None:
        """Drive the command from its journaled state to a terminal one, or to a wait.

        A request that carries a rejection is failed with it before the first state's work runs. In
        recovery, a state whose policy is ROLL_BACK takes ``rollback``; any other working state is resumed. A
        CommandError ends the command with its reply; any other error ends it with a generic 500 that names
        the failure's type but never its text, which could hold a secret. Journal and XenStore errors
        propagate: the daemon cannot record or deliver anything without them.
        """
        self.waiting = None
        with self._one_at_a_time(), self._contained():
            if self.finished:
                return
            rejection = self.ctx.request.rejection
            if rejection is not None and self.journaled_state == self.STATES[0]:
                # Malformed, unknown, refused by policy, or withdrawn before a recovery could re-read it.
                # Past the first state, only a state that needs the request fails with it (see
                # ``request_value``): work already done, such as a password already set, is finished truthfully.
                raise rejection
            if recovery and self.RECOVERY.get(self.journaled_state) == ROLL_BACK:
                self.roll_back_after_stop()
            else:
                crash_point(self.ctx.config, "in_machine")
                self.advance(RESUME)
            if not self.finished and self.waiting is None:
                raise MachineError(f"{self.NAME} stopped in working state {self.journaled_state!r}")

    def roll_back_after_stop(self) -> None:
        """Take ``rollback`` from a state whose recovery policy is ROLL_BACK; a machine whose compensating path
        needs to know why (in its working data) overrides this."""
        self.advance(ROLL_BACK, detail={"from": self.journaled_state})

    def give_up(self, attempts: int) -> None:
        """End a command that keeps being interrupted, instead of running it again (crash-loop stop).

        The reply must say what actually happened: a machine whose work may be done by now overrides
        ``on_give_up`` to find out. Contained like ``run``: giving up itself never stops the agent.
        """
        with self._one_at_a_time(), self._contained():
            if not self.finished:
                self.on_give_up(attempts)

    def on_give_up(self, attempts: int) -> None:
        """The crash-loop reply; by default a failure saying so."""
        self._fail("500", self.interrupted(attempts) + "; not retrying it, to stop a crash loop",
                   {"error": "crash_loop", "attempts": attempts})

    def interrupted(self, attempts: int) -> str:
        return f"Agent command '{self.NAME}' was interrupted {attempts - 1} times"

    @contextlib.contextmanager
    def _one_at_a_time(self) -> Iterator[None]:
        """Run while no other command of this type runs in the process: they share the machine and its queue
        of triggers. Re-entrant, for the triggers a callback fires."""
        with self._running:
            yield

    @contextlib.contextmanager
    def _contained(self) -> Iterator[None]:
        """Any error ends the command with a reply, except the ones the daemon must see."""
        try:
            yield
        except MUST_PROPAGATE:
            raise
        except CommandError as exc:
            self._fail(exc.returncode, exc.message, {"error": type(exc).__name__})
        except Exception as exc:
            log.error("command %d %s failed in state %s: %s at %s", self.record.id, self.NAME,
                      self.journaled_state, type(exc).__name__, where(exc))
            self._fail("500", f"Agent error in '{self.NAME}' ({type(exc).__name__}); see the agent's log",
                       {"error": type(exc).__name__})

    def _fail(self, returncode: str, message: str, detail: dict[str, Any]) -> None:
        if not self.finished:
            self.finish(FAIL, returncode, message, detail)

    # -- helpers for machines -------------------------------------------------------------------------

    def request_value(self) -> Any:
        """The request's value; raises the request's rejection instead when it has one (such as "withdrawn
        by the host", when a recovery could not read it again)."""
        if self.ctx.request.rejection is not None:
            raise self.ctx.request.rejection
        return self.ctx.request.value

    # -- timers of the command type ---------------------------------------------------------------------

    @classmethod
    def next_due(cls, journal: Journal) -> float | None:
        """When (``time.monotonic``) this command type has work of its own to do, outside any request (a key
        exchange's lifetime ends, say); None when it has none. The daemon asks every type."""
        return None

    @classmethod
    def when_due(cls, journal: Journal, now: float) -> None:
        """Do the command type's timed work that is due at ``now``."""


MAX_STORED_VALUE = 1024


def stored_value(command: type[Command], value: Any) -> str | None:
    """What the journal keeps of a request's value: the JSON of a small non-secret value, else nothing.

    Without a stored value, recovery re-reads the request from XenStore (checked against its digest);
    a cut-off JSON text could not be parsed back, so a large value is not stored at all.
    """
    if command.SECRET_VALUE:
        return None
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= MAX_STORED_VALUE else None
