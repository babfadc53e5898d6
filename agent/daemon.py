"""The service: recover from the journal, watch ``data/host``, dispatch each request to its machine.

The lifecycle: ``startup`` (lock the state directory, open and migrate the journal, connect to XenStore and
watch ``data/host``, finish what a crash interrupted, signal ready), ``main_loop`` (block on the watch; never
poll: the watch's first event scans ``data/host``, and housekeeping, which collects old replies and prunes the
journal, follows), ``shutdown`` (bounded by a timeout). SIGTERM or SIGINT asks for a clean
stop, a second one forces it; SIGHUP reopens the log and reloads the configuration; SIGUSR1 and SIGUSR2 are
logged and ignored.

Nothing a request holds may stop the agent: a body it cannot read is answered as malformed, a defect met
while handling one request fails that request alone, and a request that kills the process before it is
journaled is answered unread once it has done so ``recovery.max_attempts`` times (``agent.intake``).

The reply protocol: a request is journaled ``received`` before anything else; its machine runs,
journaling every transition; the terminal transition journals the reply; then the reply is written to
``data/guest/<id>``, the request is deleted from ``data/host/<id>``, and the delivery is journaled. A crash
between any two steps is finished from the journal at the next start; nothing runs twice.

Two ways of committing keep that contract at the cost of as few disk flushes as it allows:

- **Pure commands in one commit.** A command with no effect outside the journal (``version``, ``features``,
  every rejection: ``Command.PURE``) is journaled ``received`` and answered in one transaction. A crash before
  that commit leaves nothing a second run could repeat; commands with effects still commit ``received`` before
  their work starts.
- **Group commit.** Requests that arrive together (the watch events queued by the time the agent looks, or a
  scan of ``data/host``) are taken in together, up to ``GROUP`` at a time: one transaction journals them all
  and answers the pure ones, and one more journals their deliveries. Deliveries are committed without
  waiting for the disk: a delivery lost in a power cut is only made again at the next start.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent import __version__, logs, notify, platform, protocol, signals, status
from agent import runtime as runtime_module
from agent.config import Config, reloaded, validate
from agent.errors import (
    AgentError,
    CommandFailed,
    ConfigError,
    JournalError,
    RequestRejected,
    RestartRequested,
    XenStoreError,
    XenStoreUnavailable,
    where,
)
from agent.faults import crash_point
from agent.intake import NAME as INTAKE
from agent.intake import Intake
from agent.journal import CommandRecord, Journal, iso, retention, wall_clock
from agent.journal.engine import DATABASE_NAME
from agent.lock import StateLock
from agent.machines import REGISTRY, Command, Context, Rejected, host_commands
from agent.machines.base import stored_value
from agent.platform import Platform
from agent.platform.files import Files
from agent.platform.network import LiveNetwork
from agent.ports import HostData, Ports
from agent.protocol import GUEST_DIR, HOST_DIR, Request
from agent.runtime import Runtime
from agent.signals import SignalInbox
from agent.xenstore import Transport, open_transport

if TYPE_CHECKING:
    from agent.platform.windows_files import WindowsFiles
    from agent.platform.windows_kms import Licensing
    from agent.platform.windows_network import WindowsNetwork

log = logging.getLogger(__name__)

WATCH_TOKEN = "openstack-agent"  # noqa: S105 - a XenStore watch token, not a secret
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: Seconds between retries of a wipe a reader held off: a wiped secret must not wait for housekeeping
#: (minutes) to leave the WAL.
WIPE_RETRY = 1.0
#: Seconds a prune or collection under way waits before its next batch while the WAL checkpoints ask work that
#: can wait to hold back (``Journal.checkpoints_behind``): a million-command journal's prune otherwise outruns
#: them, and requests wait behind their writes to the disk.
CATCH_UP_PAUSE = 0.05
#: Seconds at least from one batch of a prune or reply collection under way to the next of either
#: (``housekeeping_batch``). Each batch writes pages all over a large journal, which are checkpointed at once
#: (``checkpoint_soon``), in the pause: a pass with the pages of many batches to sync held requests up for
#: 20-60 ms (their own syncs wait behind it on the disk), one with a batch's holds them a few milliseconds. A
#: prune then removes at most ``retention.PER_CALL`` commands per pause (1,600 a second); a flood's is not
#: paced (see ``handle``).
HOUSEKEEPING_PACE = 0.01
#: Replies one ``collect_more`` removes from data/guest at most: one pipelined XenStore call and one short
#: transaction.
COLLECT_PER_CALL = 128
#: During a flood the journal is pruned on the spot once it holds this many times ``journal.max_commands``
#: (housekeeping prunes it to the limit every few minutes anyway).
PRUNE_AT = 1.02
#: The reply nova never gets, rather than an error every few seconds: the reply path would be too long.
UNWRITABLE = (errno.EINVAL, errno.ENAMETOOLONG, errno.E2BIG)
#: Seconds after an error before timers run again and housekeeping rescans data/host.
RETRY = 5.0
#: Requests taken in together at most (group commit): enough to amortise a commit over a flood, few enough
#: that the first reply of a flood does not wait for all of it.
GROUP = 128


class Agent:
    """The guest agent daemon.

    Built from its parts, each replaceable: the XenStore ``transport`` (the pyxs one; an in-memory one in
    tests), the operating system's ``accounts``, the ``files`` port, and the service ``runtime``. Each
    defaults to the real one for this system.
    """

    def __init__(self, config: Config, on_ready: Callable[[], None] | None = None,
                 reload: Callable[[], Config] | None = None, *, transport: Transport | None = None,
                 accounts: Platform | None = None, files: Files | WindowsFiles | None = None,
                 network: LiveNetwork | WindowsNetwork | None = None, licensing: Licensing | None = None,
                 runtime: Runtime | None = None) -> None:
        self.config = config
        self.xenstore: Transport = transport if transport is not None else open_transport(
            config.xenstore_address, config.domain_path, config.xenstore_timeout)
        self.journal: Journal | None = None
        self.lock = StateLock(config.state_path, "agent")
        #: What ``openstack-agent status`` reads of this process (written only while it holds the lock).
        self.status = status.Publisher(config.state_path)
        self.intake: Intake | None = None
        #: Re-reads the configuration file and flags, for SIGHUP; None where there is nothing to re-read.
        self._reload = reload
        self._reload_requested = False
        self.signals = SignalInbox(self.note_signal)
        self.runtime = runtime if runtime is not None else runtime_module.for_this_process()
        self._files = files
        self.ports = Ports(accounts=accounts if accounts is not None else platform.for_system(config.root),
                           files=files or self.files_port(), network=network or self.network_port(),
                           host_data=HostData(self.xenstore), runtime=self.runtime,
                           licensing=licensing if licensing is not None else self.licensing_port())
        #: Commands waiting in a state (agentupdate's probation, resetnetwork's verification or turn): command
        #: id -> when to run them again.
        self._waiting: dict[int, float] = {}
        #: Commands this process has run (or recovered): seen again unfinished, they are resumed, not recovered.
        self._ran: set[int] = set()
        self.should_exit = False
        self._on_ready = on_ready
        self._next_housekeeping = 0.0
        # Each request we delete fires our own watch once more; skipping that one event per delete saves a
        # XenStore round trip per request. Counting (not a flag) keeps a re-sent request with the same id
        # from being missed: the host's write fires an event of its own, which is not skipped.
        self._own_deletes: Counter[str] = Counter()
        #: Marks of time for collecting replies: (monotonic time, the journal's newest transition row then),
        #: one per housekeeping run, oldest first. Rows are appended in time order, so a reply whose delivery
        #: row is at or below a mark's row was delivered before that mark's time.
        self._marks: deque[tuple[float, int]] = deque()
        self._started, self._start_row = time.monotonic(), 0
        #: Whether retention has more commands to remove (see ``prune``), and how many it removed so far.
        self._pruning, self._pruned = False, 0
        #: A reply collection with more replies to remove (see ``start_reply_collection``): the bounds it goes by
        #: (delivered at or before this transition row, or by an earlier process before this wall-clock time);
        #: None when none is under way. And how many it removed so far.
        self._collection: tuple[int, str] | None = None
        self._collected = 0
        #: When (``time.monotonic``) the last batch of a prune or collection began (see ``HOUSEKEEPING_PACE``),
        #: and whether it was a prune's (the two take turns, ``housekeeping_batch``).
        self._batch_at = float("-inf")
        self._last_batch_pruned = False
        #: No timer runs before this (``time.monotonic``): set after an error (see ``_retry_soon``).
        self._timers_held_until = 0.0

    # -- lifecycle ------------------------------------------------------------------------------------

    def run(self) -> None:
        """Start, serve until asked to stop, shut down."""
        self.install_signal_handlers()
        try:
            self.startup()
            self.main_loop()
        finally:
            self.shutdown()

    def install_signal_handlers(self) -> None:
        """Signals are only noted by their handler (see ``agent.signals``); a relay thread turns each into a
        wake-up of the main loop, which acts on them. Under a supervisor that has no signals to send (the
        Windows service's), the end of standard input is the stop request instead (``notify.STOP_ON_EOF_ENV``)."""
        if os.environ.get(notify.STOP_ON_EOF_ENV) == "1" and sys.stdin is not None:
            threading.Thread(target=self._stop_at_end_of_input, args=(sys.stdin.buffer,), name="agent-input",
                             daemon=True).start()
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only (tests run the agent in threads)
        threading.Thread(target=self._relay_signals, name="agent-signals", daemon=True).start()
        self.signals.install()

    def _stop_at_end_of_input(self, stream: Any) -> None:
        """Read ``stream`` (the supervisor's pipe, which says nothing) until it ends, then stop as on SIGTERM."""
        try:
            while stream.read(4096):
                pass
        except (OSError, ValueError):
            pass  # a pipe that broke or closed is the same request: the supervisor is done with this agent
        log.info("the supervisor closed the agent's input: shutting down")
        self.stop()

    def note_signal(self, sig: int) -> None:
        """In the signal handler: set flags, nothing else."""
        if sig in signals.STOP:
            if self.should_exit:
                os.write(2, b"second signal: exiting without waiting\n")
                os._exit(1)
            self.should_exit = True
        elif sig == signals.RELOAD:
            self._reload_requested = True

    def _relay_signals(self) -> None:
        while self.signals.drain():
            self.xenstore.wake()

    def take_signals(self) -> None:
        """Log the signals received since the last look (the handlers themselves must not log)."""
        for sig in self.signals.take():
            if sig in signals.STOP:
                log.info("%s received: shutting down", sig.name)
            elif sig in signals.IGNORED:
                # Their default action would end the agent without a word; nothing is defined for them.
                log.info("%s received: it means nothing to the agent; ignored", sig.name)

    def request_reload(self) -> None:
        """Ask the main loop to reopen the log and re-read the configuration (thread-safe; what SIGHUP does)."""
        self._reload_requested = True
        self.xenstore.wake()

    def stop(self) -> None:
        """Ask the main loop to finish (thread-safe; what SIGTERM does)."""
        self.should_exit = True
        self.xenstore.wake()

    def startup(self) -> None:
        os.umask(0o077)
        # What a value alone cannot show (a policy naming no command, a missing release key) stops the start
        # here, before the lock or the journal, as a bad value in the file does.
        validate(self.config, host_commands())
        # A supervised agent may be starting while its predecessor, killed with the old supervisor, is still
        # on its way out: give it the time a clean stop takes. Run by hand, a second agent stops at once.
        self.lock.acquire(wait=self.config.shutdown_timeout if self.runtime.supervised else 0.0)
        self.status.starting()
        if not (self.config.state_path / DATABASE_NAME).exists() and (self.config.state_path / INTAKE).exists():
            log.error("the journal %s is missing although an agent ran here (its intake note is there): its "
                      "audit trail is gone; starting a new journal", self.config.state_path / DATABASE_NAME)
        self.journal = Journal.open(self.config.state_path)
        self.journal.checkpoint_in_background()  # a request never waits for a checkpoint of the WAL
        self.intake = Intake(self.config.state_path)
        self._started, self._start_row = time.monotonic(), self.journal.last_transition()
        log.info("openstack-agent %s starting: journal %s, XenStore %s%s", __version__, self.journal.path,
                 self.config.xenstore_address,
                 f", domain {self.config.domain_path}" if self.config.domain_path else "")
        self.connect(first=True)
        self.runtime.ready(f"openstack-agent {__version__} serving")
        self.status.ready()
        if self._on_ready is not None:
            self._on_ready()

    def main_loop(self) -> None:
        while not self.should_exit:
            try:
                # A reload asked for while a burst was drained has had its wake-up taken: do not block then.
                wait = 0.0 if self._reload_requested else max(0.0, self._next_timer() - time.monotonic())
                event = self.xenstore.next_event(timeout=wait)
                self.take_signals()
                if self.should_exit:
                    break
                if self._reload_requested:
                    self.reload()
                if event is not None:
                    self.on_events(self._burst(event[0]))
                if time.monotonic() >= self._next_timer():
                    self.timers()
            except RestartRequested:
                raise
            except XenStoreUnavailable as exc:
                if self.should_exit:
                    break
                log.warning("XenStore connection lost (%s); reconnecting", exc)
                self.status.xenstore(connected=False)
                self.connect()
            except AgentError as exc:
                # The daemon keeps serving; the request stays in data/host and is retried on the next scan.
                log.error("%s", exc)
                self._retry_soon()
            except Exception as exc:
                # A defect of the agent's own, outside any one command (those are contained where they run).
                # It must not stop the service: log where it happened (never its text, which could quote a
                # request) and go on; what was interrupted is found again by the next scan.
                log.error("internal error: %s at %s; the agent goes on", type(exc).__name__, where(exc))
                self._retry_soon()

    def _retry_soon(self) -> None:
        """After an error: housekeeping (which rescans data/host) within RETRY seconds, and no timer before then,
        so a timer whose work keeps failing (a full disk under a key exchange's expiry) is not run again at
        once, in a loop that would fill the log."""
        now = time.monotonic()
        self._next_housekeeping = min(self._next_housekeeping, now + RETRY)
        self._timers_held_until = now + RETRY

    def reload(self) -> None:
        """SIGHUP: reopen the log, and take on the configuration's new values where a running agent can."""
        self._reload_requested = False
        new = self.config
        if self._reload is not None:
            try:
                new = self._reload()
                validate(new, host_commands())
            except ConfigError as exc:
                log.error("configuration not reloaded, the agent keeps its current one: %s", exc)
                new = self.config
        config, applied, fixed = reloaded(self.config, new)
        if not logs.reopen(config.log_level, config.log_file, self.config.log_level, self.config.log_file):
            config = dataclasses.replace(config, log_level=self.config.log_level, log_file=self.config.log_file)
        self.config = config
        if self._files is None:  # the [inject] policy may have changed
            self.ports = dataclasses.replace(self.ports, files=self.files_port())
        log.info("SIGHUP: log reopened%s", f"; configuration reloaded: {', '.join(applied)} changed" if applied
                 else "; configuration unchanged")
        if fixed:
            log.warning("changed in the configuration but only taken on at the next start: %s", ", ".join(fixed))

    def shutdown(self) -> None:
        """Close XenStore and the journal, giving up after ``shutdown_timeout``."""
        self.take_signals()
        if self.should_exit:
            self.runtime.stopping()
        closer = threading.Thread(target=self._close, name="agent-shutdown", daemon=True)
        closer.start()
        closer.join(self.config.shutdown_timeout)
        if closer.is_alive():
            log.warning("shutdown did not finish in %g s; exiting anyway", self.config.shutdown_timeout)
        else:
            log.info("openstack-agent stopped")

    def _close(self) -> None:
        self.xenstore.close()
        if self.journal is not None:
            self.journal.close()
        if self.intake is not None:
            if self.should_exit:
                self.intake.clear()  # a stop that was asked for: no request killed this process
            self.intake.close()
        self.status.stopped()  # before the lock goes: the next agent's file is its own
        self.lock.release()

    # -- XenStore connection --------------------------------------------------------------------------

    def connect(self, first: bool = False) -> None:
        """(Re)connect with backoff, watch ``data/host`` and finish interrupted work; the watch's first event
        then makes the main loop scan, and housekeeping is due at once."""
        attempt = 0
        while not self.should_exit:
            try:
                self.xenstore.connect()
                self.xenstore.watch(HOST_DIR, WATCH_TOKEN)
                break
            except XenStoreError as exc:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                if attempt == 0 or delay == RECONNECT_DELAYS[-1]:
                    log.warning("%s; retrying", exc)
                attempt += 1
                self.xenstore.close()
                time.sleep(delay)
        if self.should_exit:
            return
        self.status.xenstore(connected=True)
        if attempt or not first:
            log.info("connected to XenStore again")
        self._own_deletes.clear()  # events of the old connection are gone with it
        self.recover(count_attempt=first)
        # The watch's first event scans data/host as soon as the main loop runs; housekeeping (old replies, old
        # commands) comes right after, so requests waiting since before the start are not held up by it.
        self._next_housekeeping = time.monotonic()

    # -- requests -------------------------------------------------------------------------------------

    def _burst(self, first: str) -> list[str]:
        """The path of ``first`` and of every watch event already queued behind it (at most ``GROUP``): the
        requests that arrived together, to be taken in together."""
        paths = [first]
        while len(paths) < GROUP:
            event = self.xenstore.next_event(timeout=0.0)
            if event is None:
                break
            paths.append(event[0])
        return paths

    def on_events(self, paths: list[str]) -> None:
        """Handle the requests a run of watch events names, each once, in the order they came."""
        if HOST_DIR in paths:
            # The directory itself: whatever it holds, these requests included. Events still to come for
            # our own deletes need no skipping then (a request already gone reads as missing), and a transport
            # whose events always name the directory (WMI's name the watched path) would otherwise count
            # every answered request here for ever.
            self._own_deletes.clear()
            self.scan()
            return
        request_ids: dict[str, None] = {}
        for path in paths:
            if not path.startswith(HOST_DIR + "/"):
                continue
            # A host that writes below a request (data/host/<id>/<child>) still made a request: <id>.
            request_id, _, below = path[len(HOST_DIR) + 1:].partition("/")
            if not below and self._own_deletes[request_id]:
                self._own_deletes[request_id] -= 1
                if not self._own_deletes[request_id]:
                    del self._own_deletes[request_id]
            elif request_id:
                request_ids[request_id] = None
        self.handle(list(request_ids))

    def scan(self) -> None:
        """Handle every request waiting in ``data/host`` (at start, after a reconnect, periodically)."""
        self.handle(self.xenstore.list(HOST_DIR))

    def handle(self, request_ids: list[str]) -> None:
        """Take requests through the reply protocol, ``GROUP`` at a time (group commit)."""
        for start in range(0, len(request_ids), GROUP):
            if self.should_exit:
                return
            taken = self._handle_batch(request_ids[start:start + GROUP])
            # A backlog of thousands must not take the journal far past its bound: past it, retention keeps
            # pace, removing as many commands as the batch added (a few milliseconds) before the next batch.
            # Below it, a prune under way goes on from the timers (``_more_housekeeping_due``), between
            # requests and at the pace of the WAL checkpoints.
            removed = 0
            while removed < taken and self._journal().command_count() > self.config.max_commands * PRUNE_AT:
                count = self.prune()
                removed += count
                if not count:
                    break

    def _handle_batch(self, request_ids: list[str]) -> int:
        """Journal the batch's new requests in one transaction, answering the pure ones in it; then deliver
        those answers, run the other new commands one by one, and see to requests the journal already has.
        How many new commands the batch journaled."""
        journal = self._journal()
        answered: list[CommandRecord] = []
        received: list[tuple[CommandRecord, Request]] = []
        known: list[tuple[CommandRecord, bytes]] = []
        bodies = self.xenstore.read_many([f"{HOST_DIR}/{request_id}" for request_id in request_ids])
        with journal.batch():
            for request_id, body in zip(request_ids, bodies, strict=True):
                if self.should_exit:
                    break
                if body is None:
                    continue  # already handled and deleted (our own delete fires the watch too)
                body_digest = protocol.digest(body)
                journaled = journal.find_request(request_id)
                if journaled is not None and journaled.digest == body_digest:
                    known.append((journaled, body))
                    continue
                record, request = self.take_in(request_id, body, body_digest)
                if REGISTRY[record.machine].PURE:
                    command = self.run_command(record, request)
                    if command is not None:
                        answered.append(command.record)
                else:
                    received.append((record, request))
            # From here on nothing is taken in: a crash in the commit is no request's doing.
            self._intake().clear()
        # Logged once committed: a line never names a command that a failed commit left out of the journal.
        for record in (*answered, *(record for record, _ in received)):
            log.info("request %s received: command %d %s", protocol.for_log(record.request_id), record.id,
                     protocol.for_log(record.name) if record.name is not None else "(unnamed)")
        if answered or received:
            self.crash_point("after_received")
        # One request XenStore refuses (a reply it will not take, a request it will not let go) must not hold
        # up the others taken in with it: each goes on, and the first such error is raised at the end.
        failures: list[XenStoreError] = []
        steps: list[Callable[[], None]] = []
        if answered:
            self.crash_point("after_reply_journaled")
            steps.append(lambda: self.deliver(answered, fresh=True))
        steps += [functools.partial(self.execute, record, request, fresh=True) for record, request in received]
        steps += [functools.partial(self._handle_known, journaled, body) for journaled, body in known]
        for step in steps:
            if self.should_exit:
                break  # journaled: the next start finishes them (a stop asked for does not wait for their work)
            try:
                step()
            except XenStoreUnavailable:
                raise
            except XenStoreError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        return len(answered) + len(received)

    def _handle_known(self, journaled: CommandRecord, body: bytes) -> None:
        """A request the journal already has (a re-sent one, or one an earlier process left)."""
        shown_id = protocol.for_log(journaled.request_id)
        if journaled.finished:
            log.info("request %s already answered by command %d; delivering its reply again", shown_id,
                     journaled.id)
            self.deliver([journaled])
        elif journaled.id in self._waiting:
            # Waiting in this process (a probation, a verification, its turn): its timer resumes it.
            log.debug("request %s is command %d, waiting in state %s", shown_id, journaled.id, journaled.state)
        else:
            # Only a command an earlier process left is a recovery: one this process ran and lost to an error
            # (a journal write that failed) is resumed, so a ROLL_BACK state does not claim that the agent
            # stopped.
            self.execute(journaled, self.reload_request(journaled, body), recovery=journaled.id not in self._ran)

    def take_in(self, request_id: str, body: bytes, body_digest: str) -> tuple[CommandRecord, Request]:
        """Journal a new request as ``received``, the first durable fact about it, whatever its body.

        Nothing a body holds may stop the agent: a request it cannot make sense of is journaled as rejected
        and answered. One that stopped the process ``recovery.max_attempts`` times before it was journaled
        (see ``agent.intake``) is answered without being read again.
        """
        attempts = self._intake().begin(request_id, body_digest)
        self.crash_point("before_received")
        if attempts > self.config.max_attempts:
            log.error("request %s stopped the agent %d times before it could be journaled; answering it "
                      "without reading it again", protocol.for_log(request_id), attempts - 1)
            request = self._bare(request_id, body_digest, f"Request stopped the agent {attempts - 1} times "
                                                          "before it could be journaled; not handling it again")
        elif not protocol.answerable(request_id):
            log.warning("request id %s is too long for its reply path; removing the request unanswered",
                        protocol.for_log(request_id))
            request = self._bare(request_id, body_digest, protocol.UNANSWERABLE)
        else:
            try:
                request = self.admit(protocol.parse(request_id, body))
            except Exception as exc:  # a defect of the agent's: contained to this request
                log.error("request %s could not be read: %s at %s", protocol.for_log(request_id),
                          type(exc).__name__, where(exc))
                request = self._bare(request_id, body_digest, internal_error("reading the request", exc))
        try:
            return self._receive(request), request
        except (JournalError, XenStoreError):
            raise
        except Exception as exc:  # the body broke the journal write itself: keep only what is known safe
            log.error("request %s could not be journaled as read: %s at %s; journaling it without its content",
                      protocol.for_log(request_id), type(exc).__name__, where(exc))
            request = self._bare(request_id, body_digest, internal_error("journaling the request", exc))
            return self._receive(request), request

    @staticmethod
    def _bare(request_id: str, body_digest: str, message: str) -> Request:
        """A request rejected without its content: no name, no value, only the body's digest."""
        return Request(request_id, None, None, body_digest, RequestRejected("500", message))

    def _receive(self, request: Request) -> CommandRecord:
        rejection = request.rejection
        if rejection is None and request.name:
            machine, value = REGISTRY[request.name], stored_value(REGISTRY[request.name], request.value)
        else:
            machine, value = Rejected, None if rejection is None else Rejected.journaled(rejection)
        return self._journal().receive(request.request_id, self.config.domain_path, request.name, machine.NAME,
                                       request.digest, value, detail=self._receive_detail(request))

    def admit(self, request: Request) -> Request:
        """Attach the rejection of a command this agent does not run: unknown, or refused by the policy.
        (A request that could not be parsed carries its rejection already.)"""
        if request.rejection is not None or request.name is None:
            return request
        if request.name not in REGISTRY or not REGISTRY[request.name].HOST_COMMAND:
            rejection = protocol.unknown_command(request.name)
        elif not self.config.command_allowed(request.name):
            rejection = protocol.refused_command(request.name)
        else:
            return request
        return Request(request.request_id, request.name, None, request.digest, rejection)

    @staticmethod
    def _receive_detail(request: Request) -> dict[str, Any]:
        detail: dict[str, Any] = {"digest": request.digest[:16]}
        if request.rejection is not None:
            detail["rejected"] = request.rejection.returncode
        return detail

    def execute(self, record: CommandRecord, request: Request, recovery: bool = False,
                give_up: bool = False, fresh: bool = False) -> None:
        """Run the command (``run_command``); once it has its reply, deliver it.

        ``fresh``: the request was read from XenStore at the start of this handling (see ``deliver``).
        """
        command = self.run_command(record, request, recovery=recovery, give_up=give_up)
        if command is not None:
            self.crash_point("after_reply_journaled")
            self.deliver([command.record], fresh=fresh)

    def run_command(self, record: CommandRecord, request: Request, recovery: bool = False,
                    give_up: bool = False) -> Command | None:
        """Run the command's machine to a terminal state or a wait (or end a crash-looping one): the
        finished command, or None when it waits or only a newer release can run it.

        ``recovery``: an earlier process left the command unfinished.
        """
        machine = self.machine_for(record)
        if machine is None:
            return None
        self._ran.add(record.id)
        command = machine(record, self.context(request))
        if give_up:
            command.give_up(record.attempts)
        else:
            command.run(recovery=recovery)
        if not command.finished and command.waiting is not None:
            self._waiting[record.id] = time.monotonic() + command.waiting
            return None
        self._waiting.pop(record.id, None)
        self._ran.discard(record.id)  # finished: only unfinished ones need telling apart
        return command

    @staticmethod
    def machine_for(record: CommandRecord) -> type[Command] | None:
        """The machine that can run this journaled command, or None (a newer release journaled it).

        After an update is rolled back, the older release may find commands of a machine, or in a state,
        that only the newer one knows. It leaves them as they are rather than failing or mis-running them.
        """
        machine = REGISTRY.get(record.machine)
        if machine is None or record.state not in machine.states():
            log.warning("command %d (%s, state %s) was journaled by a newer release; leaving it as it is",
                        record.id, record.machine, record.state)
            return None
        return machine

    def deliver(self, records: list[CommandRecord], fresh: bool = False) -> None:
        """Write the commands' journaled replies, delete their requests (each one still this command's), then
        journal the deliveries. Each step is taken for all of them at once (``write_many``, ``delete_many``),
        and the deliveries are journaled in one commit that does not wait for the disk (see the module
        docstring). A reply xenstored refuses for good is noted and its request removed unanswered; one refused
        otherwise stays undelivered, its error raised once the others are journaled."""
        for record in records:
            if record.reply is None:
                raise JournalError(f"command {record.id} finished without a journaled reply")
        answerable = [r for r in records if protocol.answerable(r.request_id)]  # if not, take_in said so already
        outcomes = self.xenstore.write_many([(f"{GUEST_DIR}/{r.request_id}", protocol.encode(r.reply or {}))
                                             for r in answerable])
        written: set[int] = set()
        failure: XenStoreError | None = None
        stuck: set[int] = set()
        for record, error in zip(answerable, outcomes, strict=True):
            if error is None:
                written.add(record.id)
            elif error.code in UNWRITABLE:
                # Retrying could never succeed; an error every few seconds forever would help nobody.
                log.warning("the reply to request %s cannot be written (%s); removing the request unanswered",
                            protocol.for_log(record.request_id), error)
            else:
                failure = failure or error
                stuck.add(record.id)
        self.crash_point("after_reply_written")
        done = [r for r in records if r.id not in stuck]
        ours = [r for r in done if self._still_ours(r, fresh)]
        self.xenstore.delete_many([f"{HOST_DIR}/{r.request_id}" for r in ours])
        for record in ours:
            self._own_deletes[record.request_id] += 1
        self.crash_point("after_request_deleted")
        journal = self._journal()
        with journal.batch(durable=False):
            for record in done:
                journal.mark_replied(record, written=record.id in written)
        for record in done:
            log.info("request %s answered: %s", protocol.for_log(record.request_id),
                     record.reply_code if record.id in written else "(not written)")
        self.crash_point("after_replied")
        if failure is not None:
            raise failure

    def _still_ours(self, record: CommandRecord, fresh: bool) -> bool:
        """Whether ``data/host/<id>`` still holds this command's request, so deleting it loses nothing.

        The host may rewrite a request id while its command runs; the new content is a new request, to be
        answered in its turn, not deleted with the old one. A fresh request needs no read to know: any
        change to its node since it was read fired our watch, and that event arrived before the answer to the
        reply's write did (xenstored sends both on this connection in order), so it is queued by now.
        """
        path = f"{HOST_DIR}/{record.request_id}"
        if fresh and not self.xenstore.event_pending(path):
            return True
        body = self.xenstore.read(path)
        if body is None:
            return False  # withdrawn by the host: nothing to delete
        if protocol.digest(body) == record.digest:
            return True
        log.info("request %s was rewritten while command %d ran; the new content is a request of its own",
                 protocol.for_log(record.request_id), record.id)
        return False

    def context(self, request: Request) -> Context:
        return Context(journal=self._journal(), config=self.config, request=request, ports=self.ports,
                       offered=self.offered)

    def files_port(self) -> Files | WindowsFiles | None:
        """The files port under the current configuration (built at start and again at each reload): POSIX paths,
        or on Windows drive paths (``C:\\...``)."""
        config = self.config
        if sys.platform == "win32":
            from agent.platform.windows_files import WindowsFiles, native, under

            return WindowsFiles(allowed_paths=config.inject_allowed_paths, max_size=config.inject_max_size,
                                keep_backups=config.inject_keep_backups,
                                drives=under(config.root) if config.root else native)
        return Files(config.root or "/", allowed_paths=config.inject_allowed_paths, max_size=config.inject_max_size,
                     keep_backups=config.inject_keep_backups)

    def network_port(self) -> LiveNetwork | WindowsNetwork | None:
        """The live network port: the guest's own network, or under ``--root`` that root's files (which it applies
        only from a network namespace of its own: see ``LiveNetwork.refusal``); on Windows its adapters, through
        WMI."""
        if sys.platform == "win32":
            from agent.platform.windows_network import WindowsNetwork

            return WindowsNetwork(self.config.state_path / NETWORK_BACKUPS)
        return LiveNetwork(self.config.root or "/", timeout=NETWORK_TOOL_TIMEOUT,
                           backups=self.config.state_path / NETWORK_BACKUPS)

    @staticmethod
    def licensing_port() -> Licensing | None:
        """Windows licensing (KMS), which only a Windows agent has: ``kmsactivate`` is offered there alone."""
        if sys.platform != "win32":
            return None
        from agent.platform.windows_kms import Licensing

        return Licensing()

    def offered(self) -> list[str]:
        """Implemented commands that the policy allows and whose ports this agent has, for ``features``."""
        return [name for name in host_commands() if self.config.command_allowed(name)
                and all(getattr(self.ports, port) is not None for port in REGISTRY[name].NEEDS)]

    # -- recovery -------------------------------------------------------------------------------------

    def recover(self, count_attempt: bool) -> None:
        """Finish what an earlier run (or a dropped connection) left: unfinished commands, undelivered replies.

        After a restart each resumption counts as an attempt; past ``max_attempts`` the command fails
        instead of running again, so a command that crashes the agent cannot crash it forever.
        """
        journal = self._journal()
        for record in journal.unfinished():
            machine = self.machine_for(record)
            if machine is None:
                continue
            if count_attempt and record.state not in machine.PLANNED_RESTARTS:
                record = journal.record_attempt(record)
            log.info("recovering command %d %s from state %s (attempt %d)", record.id, record.machine,
                     record.state, record.attempts)
            self.execute(record, self.reload_request(record), recovery=True,
                         give_up=record.attempts > self.config.max_attempts)
        undelivered = journal.undelivered()
        for record in undelivered:
            log.info("delivering the journaled reply of command %d", record.id)
        if undelivered:
            self.deliver(undelivered)

    def reload_request(self, record: CommandRecord, body: bytes | None = None) -> Request:
        """The request of an interrupted command: from the journal, or re-read when its value is secret.

        A rejected command answers with the rejection it journaled, without reading the body again (the
        body may be one that killed the agent). ``body``: the request's content, when just read.
        """
        if record.machine == Rejected.NAME and record.value is not None:
            return Request(record.request_id, record.name, None, record.digest, Rejected.from_journal(record.value))
        if record.value is not None:
            return self.admit(Request(record.request_id, record.name, json.loads(record.value), record.digest))
        if body is None:
            body = self.xenstore.read(f"{HOST_DIR}/{record.request_id}")
        if body is not None and protocol.digest(body) == record.digest:
            return self.admit(protocol.parse(record.request_id, body))
        vanished = CommandFailed("500", "Request was withdrawn by the host before the agent could finish it")
        return Request(record.request_id, record.name, None, record.digest, vanished)

    # -- timers -------------------------------------------------------------------------------------

    def _next_timer(self) -> float:
        """When the main loop must wake without an event: housekeeping, a waiting command, a command type's
        own timer (a key exchange's expiry), a deferred wipe, the next batch of collecting or pruning
        (``_more_housekeeping_due``)."""
        journal = self._journal()
        due = (machine.next_due(journal) for machine in REGISTRY.values())
        soonest = min(self._next_housekeeping, self._wipe_due(), *self._waiting.values(),
                      *(d for d in due if d is not None),
                      self._more_housekeeping_due(journal))
        return max(soonest, self._timers_held_until)

    def _more_housekeeping_due(self, journal: Journal) -> float:
        """When the next batch of a prune or reply collection under way is due: ``HOUSEKEEPING_PACE`` after the
        last one began (after any waiting request); not while the WAL checkpoints are behind or, with only a
        prune under way, while a reader holds them back (the prune's pages would pile up in the WAL until the
        reader is done; a collection writes few): then the main loop looks again every ``CATCH_UP_PAUSE``."""
        if not (self._pruning or self._collection):
            return float("inf")
        paced = self._batch_at + HOUSEKEEPING_PACE
        if journal.checkpoints_behind() or (not self._collection and journal.checkpoints_held_by_reader()):
            return max(paced, time.monotonic() + CATCH_UP_PAUSE)
        return paced

    def _wipe_due(self) -> float:
        deferred = self._journal().wipe_deferred_at
        return float("inf") if deferred is None else deferred + WIPE_RETRY

    def timers(self) -> None:
        now = time.monotonic()
        for command_id in [c for c, due in self._waiting.items() if due <= now]:
            del self._waiting[command_id]
            record = self._journal().get(command_id)
            if not record.finished:  # a re-sent request may have finished it meanwhile
                self.execute(record, self.reload_request(record))
        if now >= self._next_housekeeping:
            self.housekeeping()
        else:
            self.command_timers()
            self.housekeeping_batch()

    def command_timers(self) -> None:
        """Run every command type's due timer (key exchanges expire), then any wipe a reader held off."""
        journal = self._journal()
        now = time.monotonic()
        for machine in REGISTRY.values():
            due = machine.next_due(journal)
            if due is not None and due <= now:
                machine.when_due(journal, now)
        if journal.wipe_deferred_at is not None and time.monotonic() >= self._wipe_due():
            journal.wipe()

    # -- housekeeping ---------------------------------------------------------------------------------

    def housekeeping(self) -> None:
        """Command types' timers; start removing our old replies from ``data/guest`` and old commands; rescan."""
        now = time.monotonic()
        self._next_housekeeping = now + self.config.housekeeping_interval
        self.command_timers()
        # Both go a batch at a time from here, one batch a turn of the main loop when due.
        self.start_reply_collection(now)
        self._pruning = True  # until a batch finds nothing more due
        done = self.housekeeping_batch()
        log.debug("housekeeping done: reply collection and pruning started (%d removed at once)", done)
        # Also a safety net: a request whose handling failed (a full disk, say) is tried again here.
        self.scan()

    def housekeeping_batch(self) -> int:
        """One batch of the reply collection or the prune under way (turn about when both are; the collection
        only, while a reader holds the checkpoints back), if it is due
        (``_more_housekeeping_due``): how many replies or commands it removed. The main loop calls this on its
        turns, after any waiting request, so that neither ever holds a request up for long."""
        journal = self._journal()
        if not (self._collection or self._pruning) or time.monotonic() < self._more_housekeeping_due(journal):
            return 0
        # Collection first would starve the prune when housekeeping runs (each starts a collection) come closer
        # together than HOUSEKEEPING_PACE: with both under way, they alternate. A reader holding the checkpoints
        # back holds only the prune: then the collection takes every turn.
        if self._pruning and (not self._collection or (not self._last_batch_pruned and
                                                       not journal.checkpoints_held_by_reader())):
            self._last_batch_pruned = True
            return self.prune()
        self._last_batch_pruned = False
        return self.collect_more()

    def start_reply_collection(self, now: float) -> None:
        """Start removing our replies from ``data/guest`` once nova can no longer be waiting for them.

        A reply goes ``replies.max_age`` after its delivery by the monotonic clock, which no setting of the
        wall clock moves. Replies an earlier process delivered go by the wall clock (the only one that spans
        processes), or once this process has itself run ``replies.max_age``. ``collect_more`` removes
        ``COLLECT_PER_CALL`` at a time, as retention's batches go (``housekeeping_batch``), so the replies of a
        flood never hold a request up.
        """
        journal = self._journal()
        max_age = self.config.reply_max_age
        by_this_process = self._delivered_before(now - max_age, journal.last_transition())
        if now - self._started >= max_age:
            by_earlier = iso(datetime.max.replace(tzinfo=UTC))  # all of them: they are older than this process
        else:
            by_earlier = iso(wall_clock() - timedelta(seconds=max_age))
        self._collection = (by_this_process, by_earlier)

    def collect_more(self) -> int:
        """One batch of the reply collection ``start_reply_collection`` started: how many replies it removed."""
        assert self._collection is not None
        (by_this_process, by_earlier), journal = self._collection, self._journal()
        self._collection = None  # a batch that fails is tried again by housekeeping, not in a tight loop
        self._batch_at = time.monotonic()
        old = retention.replies_to_collect(journal, by_this_process, by_earlier, self._start_row,
                                           limit=COLLECT_PER_CALL + 1)
        batch = old[:COLLECT_PER_CALL]
        if batch:
            # A reply place a newer command holds (a request id the host used again) keeps that one's reply.
            left = retention.superseded(journal, [record.id for record in batch])
            self.xenstore.delete_many([f"{GUEST_DIR}/{record.request_id}" for record in batch
                                       if record.id not in left])
            # Without waiting for the disk, as a prune: a collection a power cut undoes is only done again (the
            # replies are gone already, and deleting a missing node is no error).
            with journal.batch(durable=False):
                retention.mark_replies_removed(journal, [record.id for record in batch], left)
            journal.checkpoint_soon()
        self._collected += len(batch)
        if len(old) > len(batch):
            self._collection = (by_this_process, by_earlier)
        elif self._collected:
            log.info("removed %d old replies from %s", self._collected, GUEST_DIR)
            self._collected = 0
        return len(batch)

    def _delivered_before(self, moment: float, newest_row: int) -> int:
        """The newest transition row journaled before the monotonic time ``moment`` (as far as the marks
        tell, which are taken at each housekeeping run), or -1 when none is known to be that old."""
        self._marks.append((time.monotonic(), newest_row))
        while len(self._marks) > 1 and self._marks[1][0] <= moment:
            self._marks.popleft()
        taken, row = self._marks[0]
        return row if taken <= moment else -1

    def prune(self) -> int:
        """Journal retention: age (``journal.retention_days``) and size (``journal.max_commands``), never
        below the newest ``journal.keep_min`` commands, never an unfinished or undelivered one."""
        config = self.config
        cutoff = iso(wall_clock() - timedelta(days=config.retention_days))
        journal = self._journal()
        # One short batch per call (retention.PER_CALL commands); while more are due, the main loop calls again
        # when it has no request waiting, HOUSEKEEPING_PACE after this batch began and later while the
        # checkpoints ask it to hold back (``housekeeping_batch``), so pruning a large journal never holds a
        # request up for long.
        self._pruning = False  # a batch that fails is tried again by housekeeping, not in a tight loop
        self._batch_at = time.monotonic()
        # Without waiting for the disk: a prune that a power cut undoes is only done again (see Journal.batch).
        with journal.batch(durable=False):
            pruned = retention.prune(journal, cutoff, keep_min=config.keep_min, max_commands=config.max_commands)
        if pruned.count:
            journal.checkpoint_soon()
        if pruned.replies:
            self.xenstore.delete_many([f"{GUEST_DIR}/{request_id}" for request_id in pruned.replies])
        self._pruning, self._pruned = pruned.more, self._pruned + pruned.count
        if self._pruned and not self._pruning:
            log.info("removed %d commands from the journal (older than %g days, or past %d commands)",
                     self._pruned, config.retention_days, config.max_commands)
            self._pruned = 0
        return pruned.count

    def _journal(self) -> Journal:
        if self.journal is None:
            raise JournalError("the journal is not open")
        return self.journal

    def _intake(self) -> Intake:
        if self.intake is None:
            raise JournalError("the state directory is not open")
        return self.intake

    def crash_point(self, name: str) -> None:
        crash_point(self.config, name)


#: Where resetnetwork keeps the contents of the files it changes until it ends, in the state directory.
NETWORK_BACKUPS = "network-backups"
#: Seconds one network tool (ifup, netplan apply, ...) may take: an apply and its rollback together still fit
#: the 60 s nova waits for resetnetwork's reply.
NETWORK_TOOL_TIMEOUT = 15.0


def internal_error(doing: str, exc: BaseException) -> str:
    """The reply for a defect met while handling a request: what failed, never the exception's text."""
    return f"Agent error while {doing} ({type(exc).__name__}); see the agent's log"
