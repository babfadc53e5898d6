"""The service: recover from the journal, watch ``data/host``, dispatch each request to its machine.

Lifecycle, as in uvicorn's server: ``startup`` (open and migrate the journal, connect to XenStore, finish
what a crash interrupted, collect old replies, watch and scan), ``main_loop`` (block on the watch; never
poll), ``shutdown`` (bounded by a timeout). SIGTERM or SIGINT asks for a clean stop; a second one forces it.

The reply protocol (DESIGN.md): a request is journaled ``received`` before anything else; its machine runs,
journaling every transition; the terminal transition journals the reply; then the reply is written to
``data/guest/<id>``, the request is deleted from ``data/host/<id>``, and the delivery is journaled. A crash
between any two steps is finished from the journal at the next start; nothing runs twice.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from agent import __version__, notify, platform, protocol
from agent.config import Config
from agent.errors import (
    AgentError,
    CommandFailed,
    JournalError,
    RestartRequested,
    XenStoreError,
    XenStoreUnavailable,
)
from agent.faults import crash_point
from agent.journal import CommandRecord, Journal, iso, parse_iso
from agent.machines import COMMANDS, Context, JournaledCommand, Rejected
from agent.machines.base import stored_value
from agent.protocol import GUEST_DIR, HOST_DIR, Request
from agent.xenstore import XenStore

log = logging.getLogger(__name__)

WATCH_TOKEN = "openstack-agent"  # noqa: S105 - a XenStore watch token, not a secret
MACHINES: dict[str, type[JournaledCommand]] = {**COMMANDS, Rejected.NAME: Rejected}
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: Seconds between retries of a wipe a reader held off: a wiped secret must not wait for housekeeping
#: (minutes) to leave the WAL.
WIPE_RETRY = 1.0


class Agent:
    """The guest agent daemon."""

    def __init__(self, config: Config, on_ready: Callable[[], None] | None = None) -> None:
        self.config = config
        self.xenstore = XenStore(config.xenstore_address, config.domain_path, config.xenstore_timeout)
        self.journal: Journal | None = None
        self.platform = platform.for_system(config.root)
        self.supervised = bool(os.environ.get(notify.SUPERVISED_ENV))
        self.ready_at: float | None = None
        #: Commands waiting in a state (agentupdate's probation): command id -> when to run them again.
        self._waiting: dict[int, float] = {}
        self.should_exit = False
        self._on_ready = on_ready
        self._next_housekeeping = 0.0
        # Each request we delete fires our own watch once more; skipping that one event per delete saves a
        # XenStore round trip per request. Counting (not a flag) keeps a re-sent request with the same id
        # from being missed: the host's write fires an event of its own, which is not skipped.
        self._own_deletes: Counter[str] = Counter()

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
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only (tests run the agent in threads)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)

    def handle_exit(self, sig: int, _frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("second %s: exiting without waiting", signal.Signals(sig).name)
            os._exit(1)
        log.info("%s received: shutting down", signal.Signals(sig).name)
        self.stop()

    def stop(self) -> None:
        """Ask the main loop to finish (thread-safe; what SIGTERM does)."""
        self.should_exit = True
        self.xenstore.wake()

    def startup(self) -> None:
        os.umask(0o077)
        self.journal = Journal.open(self.config.state_path)
        log.info("openstack-agent starting: journal %s, XenStore %s%s", self.journal.path,
                 self.config.xenstore_address,
                 f", domain {self.config.domain_path}" if self.config.domain_path else "")
        self.connect(first=True)
        self.ready_at = time.monotonic()
        notify.send("READY=1", f"STATUS=openstack-agent {__version__} serving")
        if self._on_ready is not None:
            self._on_ready()

    def main_loop(self) -> None:
        while not self.should_exit:
            try:
                event = self.xenstore.next_event(timeout=max(0.0, self._next_timer() - time.monotonic()))
                if event is not None:
                    self.on_event(event[0])
                if time.monotonic() >= self._next_timer():
                    self.timers()
            except RestartRequested:
                raise
            except XenStoreUnavailable as exc:
                if self.should_exit:
                    break
                log.warning("XenStore connection lost (%s); reconnecting", exc)
                self.connect()
            except AgentError as exc:
                # The daemon keeps serving; the request stays in data/host and is retried on the next scan.
                log.error("%s", exc)
                self._next_housekeeping = min(self._next_housekeeping, time.monotonic() + 5.0)

    def shutdown(self) -> None:
        """Close XenStore and the journal, giving up after ``shutdown_timeout``."""
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

    # -- XenStore connection --------------------------------------------------------------------------

    def connect(self, first: bool = False) -> None:
        """(Re)connect with backoff, watch ``data/host``, finish interrupted work, then scan."""
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
        if attempt or not first:
            log.info("connected to XenStore again")
        self._own_deletes.clear()  # events of the old connection are gone with it
        self.recover(count_attempt=first)
        self.housekeeping()

    # -- requests -------------------------------------------------------------------------------------

    def on_event(self, path: str) -> None:
        if path == HOST_DIR:
            self.scan()
        elif path.startswith(HOST_DIR + "/"):
            request_id = path[len(HOST_DIR) + 1:]
            if self._own_deletes[request_id]:
                self._own_deletes[request_id] -= 1
                if not self._own_deletes[request_id]:
                    del self._own_deletes[request_id]
            elif "/" not in request_id:
                self.handle(request_id)

    def scan(self) -> None:
        """Handle every request waiting in ``data/host`` (at start, after a reconnect, periodically)."""
        for request_id in self.xenstore.list(HOST_DIR):
            if self.should_exit:
                return
            self.handle(request_id)

    def handle(self, request_id: str) -> None:
        """Take one request through the reply protocol, unless the journal already has it."""
        body = self.xenstore.read(f"{HOST_DIR}/{request_id}")
        if body is None:
            return  # already handled and deleted (our own delete fires the watch too)
        journal = self._journal()
        known = journal.find_request(request_id)
        if known is not None and known.digest == protocol.digest(body):
            if known.finished:
                log.info("request %s already answered by command %d; delivering its reply again",
                         request_id, known.id)
                self.deliver(known)
            else:
                self.execute(known, self.classify(protocol.parse(request_id, body)), recovering=True)
            return
        request = self.classify(protocol.parse(request_id, body))
        machine = MACHINES[request.name if request.rejection is None and request.name else Rejected.NAME]
        record = journal.receive(request_id, self.config.domain_path, request.name, machine.NAME,
                                 request.digest, stored_value(machine, request.value),
                                 detail=self._receive_detail(request))
        log.info("request %s received: command %d %s", request_id, record.id,
                 protocol.shown(request.name) if request.name is not None else "(unnamed)")
        self.crash_point("after_received")
        self.execute(record, request)

    def classify(self, request: Request) -> Request:
        """Attach the rejection of an unknown or refused command; parse errors are attached already."""
        if request.rejection is not None or request.name is None:
            return request
        if request.name not in COMMANDS:
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

    def execute(self, record: CommandRecord, request: Request, recovering: bool = False,
                give_up: bool = False) -> None:
        """Run the command's machine to a terminal state (or fail a crash-looping one), then deliver."""
        machine = self._machine_for(record)
        if machine is None:
            return
        command = machine(record, self.context(request))
        try:
            if give_up:
                command.give_up(record.attempts)
            else:
                command.run(recovering=recovering)
        finally:
            command.machine().remove_model(command)
        if not command.finished and command.resume_after is not None:
            self._waiting[record.id] = time.monotonic() + command.resume_after
            return
        self._waiting.pop(record.id, None)
        self.crash_point("after_reply_journaled")
        self.deliver(command.record)

    @staticmethod
    def _machine_for(record: CommandRecord) -> type[JournaledCommand] | None:
        """The machine that can run this journaled command, or None (a newer release journaled it).

        After an update is rolled back, the older release may find commands of a machine, or in a state,
        that only the newer one knows. It leaves them as they are rather than failing or mis-running them.
        """
        machine = MACHINES.get(record.machine)
        if machine is None or record.state not in machine.states():
            log.warning("command %d (%s, state %s) was journaled by a newer release; leaving it as it is",
                        record.id, record.machine, record.state)
            return None
        return machine

    def deliver(self, record: CommandRecord) -> None:
        """Write the journaled reply, delete the request, journal the delivery."""
        reply = record.reply
        if reply is None:
            raise JournalError(f"command {record.id} finished without a journaled reply")
        self.xenstore.write(f"{GUEST_DIR}/{record.request_id}", protocol.encode(reply))
        self.crash_point("after_reply_written")
        self.xenstore.delete(f"{HOST_DIR}/{record.request_id}")
        self._own_deletes[record.request_id] += 1
        self.crash_point("after_request_deleted")
        self._journal().mark_replied(record)
        log.info("request %s answered: %s", record.request_id, reply["returncode"])
        self.crash_point("after_replied")

    def context(self, request: Request) -> Context:
        return Context(journal=self._journal(), config=self.config, request=request, offered=self.offered,
                       platform=self.platform, uptime=self.uptime, supervised=self.supervised)

    def uptime(self) -> float | None:
        """Seconds since this process signalled ready (None before)."""
        return None if self.ready_at is None else time.monotonic() - self.ready_at

    def offered(self) -> list[str]:
        """Implemented commands that the policy allows, for ``features``."""
        return [name for name in COMMANDS if self.config.command_allowed(name)]

    # -- recovery -------------------------------------------------------------------------------------

    def recover(self, count_attempt: bool) -> None:
        """Finish what an earlier run (or a dropped connection) left: unfinished commands, undelivered replies.

        After a restart each resumption counts as an attempt; past ``max_attempts`` the command fails
        instead of running again, so a command that crashes the agent cannot crash it forever.
        """
        journal = self._journal()
        for record in journal.unfinished():
            machine = self._machine_for(record)
            if machine is None:
                continue
            if count_attempt and record.state not in machine.RESTART_STATES:
                record = journal.record_attempt(record)
            log.info("recovering command %d %s from state %s (attempt %d)", record.id, record.machine,
                     record.state, record.attempts)
            self.execute(record, self.reload_request(record), recovering=True,
                         give_up=record.attempts > self.config.max_attempts)
        for record in journal.undelivered():
            log.info("delivering the journaled reply of command %d", record.id)
            self.deliver(record)

    def reload_request(self, record: CommandRecord) -> Request:
        """The request of an interrupted command: from the journal, or re-read when its value is secret."""
        if record.value is not None:
            return self.classify(Request(record.request_id, record.name, json.loads(record.value), record.digest))
        body = self.xenstore.read(f"{HOST_DIR}/{record.request_id}")
        if body is not None and protocol.digest(body) == record.digest:
            return self.classify(protocol.parse(record.request_id, body))
        vanished = CommandFailed("500", "Request was withdrawn by the host before the agent could finish it")
        return Request(record.request_id, record.name, None, record.digest, vanished)

    # -- timers -------------------------------------------------------------------------------------

    def _next_timer(self) -> float:
        """When the main loop must wake without an event: housekeeping, a waiting command, an expiry, a
        deferred wipe."""
        return min(self._next_housekeeping, self._expiry_due(), self._wipe_due(), *self._waiting.values())

    def _expiry_due(self) -> float:
        expiry = self._journal().next_expiry()
        if expiry is None:
            return float("inf")
        return time.monotonic() + (parse_iso(expiry) - datetime.now(UTC)).total_seconds()

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
        elif now >= min(self._expiry_due(), self._wipe_due()):
            self.expire_exchanges()

    def expire_exchanges(self) -> None:
        """Wipe the secret of every key exchange whose lifetime is over (and any wipe still pending)."""
        journal = self._journal()
        expired = journal.expire_exchanges(iso(datetime.now(UTC)))
        if expired:
            log.info("%d key exchange(s) expired; their secrets were wiped", expired)
        elif journal.wipe_deferred_at is not None:
            journal.wipe()

    # -- housekeeping ---------------------------------------------------------------------------------

    def housekeeping(self) -> None:
        """Expire key exchanges; remove our old replies from ``data/guest`` and old commands; rescan."""
        self._next_housekeeping = time.monotonic() + self.config.housekeeping_interval
        self.expire_exchanges()
        journal = self._journal()
        now = datetime.now(UTC)
        old = journal.replies_older_than(iso(now - timedelta(seconds=self.config.reply_max_age)))
        for record in old:
            self.xenstore.delete(f"{GUEST_DIR}/{record.request_id}")
        journal.mark_replies_removed([r.id for r in old])
        if old:
            log.info("removed %d old replies from %s", len(old), GUEST_DIR)
        pruned = journal.prune(iso(now - timedelta(days=self.config.retention_days)))
        if pruned:
            log.info("removed %d commands older than %g days from the journal", pruned,
                     self.config.retention_days)
        # Also a safety net: a request whose handling failed (a full disk, say) is tried again here.
        self.scan()

    def _journal(self) -> Journal:
        if self.journal is None:
            raise JournalError("the journal is not open")
        return self.journal

    def crash_point(self, name: str) -> None:
        crash_point(self.config, name)
