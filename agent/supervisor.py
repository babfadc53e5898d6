"""``openstack-agent supervise``: the stable process the service manager starts.

It runs the ``current`` release's agent as a child and keeps it running:

- Health is the child signalling ``READY=1`` on the supervisor's notify socket, then staying up.
- A crashed child is restarted with backoff. An exit with status 75 is a restart the agent asked for
  (agentupdate switched releases): the current release is started at once, and nothing is counted.
- A release not yet known good (a new one, on probation) that crashes ``update.crash_limit`` times within
  ``update.crash_window`` seconds, or does not signal ready within ``update.ready_deadline`` seconds, is
  marked bad in the journal with the reason; ``current`` is switched back to ``previous`` and that release
  is started. The release leaves probation once the journal marks it good (the agent tells the supervisor
  when it has committed the update).
- The switch back is made under the pointers' lock, and only while ``current`` still names the bad release: a
  release an operator installed meanwhile stays current. When the pointers cannot be switched (their lock is
  held or is a directory), ``previous`` is served from ``releases/`` all the same, the log and the status say
  that ``current`` still names the bad release, and the switch is tried again before each start: a current
  release the journal marks bad is never served while there is a previous one (this also covers a supervisor
  that died between the verdict and the switch), so a pointer that cannot be switched is no crash loop.
- Toward the service manager it speaks the notify protocol: ``READY=1`` once the first child is ready, and
  ``WATCHDOG=1`` pings when ``WATCHDOG_USEC`` asks for them.

- One supervisor per install root (it locks that directory, as the agent locks its state directory). A
  child that exits with AlreadyRunning's status found another agent serving the state directory: not the
  supervisor's to restart, so it stops with that status too.
- The child dies with the supervisor: it is started with the kernel's parent-death signal (SIGKILL), so a
  supervisor killed outright does not leave an agent serving under PID 1 beside the next supervisor's.

Lifecycle as in the daemon: startup (lock, journal, notify socket, signals), the main loop (one child at a
time, woken by the child's exit through a pidfd, by notifications and by signals, never polling), shutdown
(SIGTERM to the child, SIGKILL after ``daemon.shutdown_timeout``). SIGHUP is passed on to the agent (which
reopens its log and reloads its configuration) and reopens the supervisor's own log; SIGUSR1 and SIGUSR2 are
logged and ignored.

``ServiceSupervisor`` is the same contract for a service that hosts the supervisor in its own process, as the
Windows service does: no pidfd, no signals, no notify socket (Windows has neither AF_UNIX datagrams nor
sd_notify). Each child's exit is waited for in a thread that posts it to a queue, beside ``stop`` (thread-safe,
from the service's control handler), so the loop still never polls. Without a ready notification, probation is
judged on the journal alone: a release not yet good must be marked good by its agent (agentupdate's commit,
``update.probation`` seconds after it is ready) within ``update.ready_deadline`` + ``update.probation`` seconds
of its start, and crash fewer than ``update.crash_limit`` times, else it is stopped, marked bad and rolled back.
With no signal to send, the supervisor asks its child to stop by closing the child's standard input (the agent
stops on its end, as on SIGTERM: ``notify.STOP_ON_EOF_ENV``); only a child still running after
``daemon.shutdown_timeout`` is terminated (TerminateProcess on Windows: the journal makes that a crash the agent
recovers from, never a lost command). Each child is handed to ``contain`` as soon as it is started: the
Windows service puts it in a job object that ends it when the service's process ends, however that ends (the
parent-death signal's counterpart; ``agent.winservice.ChildJob``).

The service's own build is a release too. A service that runs a frozen build (the MSI's, under Program Files)
passes it as ``build``; on start, under the install root's lock, the supervisor copies it into
``releases/<version>`` and makes it current when there is no current release (the first start after the MSI
installed the agent; a pointer file naming no release counts as none), or when the build is newer than the
current release (an MSI upgrade: the release it replaces becomes previous). It is then marked good, as
``openstack-agent install`` marks a release an administrator installed: no agentupdate will confirm it. A build
the journal marks bad, or one older than the current release (which agentupdate brought), is left alone.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent import logs, notify, signals
from agent.config import Config
from agent.errors import AlreadyRunning, ConfigError, ReleaseError, RestartRequested
from agent.install import Layout, newer
from agent.journal import Journal, releases
from agent.lock import StateLock
from agent.signals import SignalInbox

if TYPE_CHECKING:
    from agent.runtime import Runtime

log = logging.getLogger(__name__)

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: A child that ran this long is no longer crash-looping: the backoff starts again from the shortest.
STABLE_AFTER = 60.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> Callable[[], None]:
    """What the child runs between fork and exec: ask the kernel for SIGKILL when its parent dies.

    The request outlives exec, so it covers whichever release's agent runs. A parent that died before the
    request was made is caught by comparing the parent's pid afterwards.
    """
    if sys.platform == "win32":
        raise ReleaseError("a parent-death signal is Linux's; on Windows the service runs ServiceSupervisor")
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up now: after fork only async-safe work is done

    def prepare() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return prepare


class _Probation:
    """What both supervisors share: the install root, its lock, the journal's verdicts, crash counting, rollback."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.layout = Layout(config.install_path)
        self.lock = StateLock(config.install_path, "supervisor", what="install root")
        self.journal: Journal | None = None
        self.exit_code = 0
        self._crashes: collections.deque[float] = collections.deque()
        self._backoff = 0
        #: The release a rollback chose to serve next (``_release``), and the bad release ``current`` still names
        #: when a rollback could not switch it.
        self._next: str | None = None
        self._unswitched: str | None = None

    def _current(self) -> str:
        version = self.layout.current
        if version is None:
            raise ReleaseError(f"no current release under {self.layout.root}; install one with "
                               "'openstack-agent install BUNDLE'")
        return version

    def _judge(self, version: str, probation: bool, code: int | None, ran: float) -> bool:
        """After a child of ``version`` ended with ``code`` (None: stopped for missing its deadline) having run
        ``ran`` seconds: act on it (restart at once, roll back, or pause); whether the supervisor must stop."""
        if code == RestartRequested.exit_code:
            log.info("the agent asked for a restart; starting the current release")
            return False
        if code == AlreadyRunning.exit_code:
            log.error("the agent found another agent serving %s; that one is not this supervisor's, so "
                      "nothing is restarted", self.config.state_path)
            self.exit_code = code
            return True
        if probation and not self._good(version):
            reason = (self._deadline_missed() if code is None else self._crashed(code))
            if reason:
                self.roll_back(version, reason)
                return False
        self._pause(ran)
        return False

    def _deadline_missed(self) -> str:
        return f"did not signal ready within {self.config.ready_deadline:g} s"

    def _pause(self, ran: float) -> None:
        """Wait before the next restart (``_delay``), waking early for a stop."""
        raise NotImplementedError

    def _good(self, version: str) -> bool:
        verdict = releases.verdict(self._journal(), version)
        return verdict is not None and verdict.state == releases.GOOD

    def _crashed(self, code: int) -> str:
        """Count a crash of a release on probation; the reason to roll back once there are too many."""
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.config.crash_window:
            self._crashes.popleft()
        log.warning("the agent on probation exited with status %d (%d of %d crashes allowed in %g s)", code,
                    len(self._crashes), self.config.crash_limit, self.config.crash_window)
        if len(self._crashes) < self.config.crash_limit:
            return ""
        return (f"crashed {len(self._crashes)} times within {self.config.crash_window:g} s "
                f"(last exit status {code})")

    def roll_back(self, version: str, reason: str) -> None:
        """Mark ``version`` bad and make the previous release current again (``_leave``): it is served next."""
        releases.mark(self._journal(), version, releases.BAD, reason)
        self._crashes.clear()
        if self._previous(version) is None:
            log.critical("release %s is bad (%s) and there is no previous release to go back to", version, reason)
            self._pause(0.0)
            return
        self._next = self._leave(version, reason)

    def _release(self) -> str:
        """The release to serve next: the current one, unless the journal marks it bad and there is a previous
        one. ``current`` then still names the bad release because a rollback could not switch it (or the
        supervisor died between the verdict and the switch): the switch is tried again, and the release to go
        back to is served even if it fails, so that a pointer that cannot be switched is no crash loop."""
        chosen, self._next = self._next, None
        if chosen is not None:
            return chosen
        self._unswitched = None
        version = self._current()
        verdict = releases.verdict(self._journal(), version)
        if verdict is None or not verdict.bad or self._previous(version) is None:
            return version
        return self._leave(version, verdict.reason)

    def _previous(self, bad: str) -> str | None:
        """The installed release ``previous`` names, other than ``bad``, read without the pointers' lock."""
        try:
            previous = self.layout.previous
        except ReleaseError as exc:  # a pointer file naming no release: as if there were none
            log.error("%s", exc)
            return None
        return previous if previous not in (None, bad) and self.layout.installed(previous) else None

    def _leave(self, bad: str, reason: str) -> str:
        """Switch ``current`` from the bad release back to the previous one (``Layout.roll_back``); the release to
        serve now. What was done is logged as it is: switched, left to a release another writer made current
        meanwhile, or, when the pointers cannot be switched, the previous release served without them."""
        self._unswitched = None
        try:
            now = self.layout.roll_back(bad)
        except ReleaseError as exc:
            previous = self._previous(bad)
            if previous is None:
                log.critical("release %s is bad (%s), and current cannot be switched back: %s", bad, reason, exc)
                return bad
            self._unswitched = bad
            log.error("release %s is bad (%s), but current cannot be switched back to %s: %s; serving %s from %s "
                      "all the same, while current still names %s; the switch is tried again before the agent's "
                      "next start", bad, reason, previous, exc, previous, self.layout.release_dir(previous), bad)
            return previous
        if now is None:
            now = self._current()
            log.warning("release %s marked bad (%s), but current was switched to %s meanwhile (not by the "
                        "supervisor); that release stays current", bad, reason, now)
            return now
        log.error("release %s marked bad (%s); rolled back to %s", bad, reason, now)
        return now

    def _status(self, version: str) -> str:
        """What the service manager is told the supervisor does, serving ``version``."""
        if self._unswitched is None:
            return f"supervising openstack-agent {version}"
        return (f"supervising openstack-agent {version}; current still names the bad release {self._unswitched}, "
                "which could not be switched back (see the log)")

    def _journal(self) -> Journal:
        assert self.journal is not None, "startup() opens the journal"
        return self.journal

    def _stop(self, child: subprocess.Popen[bytes] | None) -> None:
        """Stop a running child: terminate it, and kill it after ``daemon.shutdown_timeout``."""
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(self.config.shutdown_timeout)
        except subprocess.TimeoutExpired:
            log.warning("the agent did not stop within %g s; killing it", self.config.shutdown_timeout)
            child.kill()
            child.wait()

    def _delay(self, ran: float) -> float:
        """The next restart's delay, from the backoff (reset by a child that ran long enough)."""
        if ran >= STABLE_AFTER:
            self._backoff = 0
        delay = RESTART_BACKOFF[min(self._backoff, len(RESTART_BACKOFF) - 1)]
        self._backoff += 1
        log.info("restarting the agent in %g s", delay)
        return delay


class Supervisor(_Probation):
    """The supervisor process of Linux and FreeBSD, under systemd (``openstack-agent supervise``)."""

    def __init__(self, config: Config, agent_args: list[str], reload: Callable[[], Config] | None = None) -> None:
        super().__init__(config)
        self.agent_args = agent_args
        self._reload = reload
        self.should_exit = False
        self._hangup = False
        self._child_ready = False
        self.child: subprocess.Popen[bytes] | None = None
        self.listener: notify.Listener | None = None
        self.signals = SignalInbox(self.note_signal)
        self._told_ready = False

    # -- lifecycle ------------------------------------------------------------------------------------

    def run(self) -> int:
        self.signals.install()
        try:
            self.startup()
            self.main_loop()
        finally:
            self.shutdown()
        return self.exit_code

    def note_signal(self, sig: int) -> None:
        """In the signal handler: set flags, nothing else (see ``agent.signals``)."""
        if sig in signals.STOP:
            self.should_exit = True
        elif sys.platform != "win32" and sig == signal.SIGHUP:
            self._hangup = True

    def take_signals(self) -> None:
        """Log the signals received, and act on SIGHUP: pass it on to a ready agent, reopen the log."""
        for sig in self.signals.take():
            if sig in signals.STOP:
                log.info("%s received: stopping the agent and the supervisor", sig.name)
            elif sig in signals.IGNORED:
                log.info("%s received: it means nothing to the supervisor; ignored", sig.name)
        if self._hangup:
            child = self.child
            # An agent that has not signalled ready may not have its handlers yet: SIGHUP would kill it (and
            # count as a crash of a release on probation). It reads the configuration as it starts anyway.
            if sys.platform != "win32" and child is not None and child.poll() is None and self._child_ready:
                child.send_signal(signal.SIGHUP)
            self.reopen_log()

    def reopen_log(self) -> None:
        """SIGHUP, in the main loop: reopen the supervisor's log where the configuration now says."""
        self._hangup = False
        config = self.config
        try:
            if self._reload is not None:
                config = self._reload()
        except ConfigError as exc:
            log.error("configuration not re-read, the log is reopened where it was: %s", exc)
        if not logs.reopen(config.log_level, config.log_file, self.config.log_level, self.config.log_file):
            return
        self.config = dataclasses.replace(self.config, log_level=config.log_level, log_file=config.log_file)
        log.info("SIGHUP received: passed on to a ready agent; log reopened")

    def startup(self) -> None:
        os.umask(0o077)
        self.lock.acquire()
        self.journal = Journal.open(self.config.state_path)
        self.listener = notify.Listener(self.config.state_path / "supervisor.sock")
        log.info("supervisor starting: releases in %s, current %s", self.layout.root, self.layout.current)

    def main_loop(self) -> None:
        while not self.should_exit:
            version = self._release()
            probation = not self._good(version)
            started = time.monotonic()
            code = self._serve(version, probation)
            if self.should_exit or self._judge(version, probation, code, time.monotonic() - started):
                break

    def shutdown(self) -> None:
        self.take_signals()
        self._stop_child()
        if self.listener is not None:
            self.listener.close()
        if self.journal is not None:
            self.journal.close()
        self.lock.release()
        log.info("supervisor stopped")

    # -- one child ------------------------------------------------------------------------------------

    def _serve(self, version: str, probation: bool) -> int | None:
        """Run one child of ``version`` until it exits (its status), or misses its ready deadline (None)."""
        listener = self._listener()
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update({notify.ENV: str(listener.path), notify.SUPERVISED_ENV: "1"})
        command = [str(self.layout.program(version)), "run", *self.agent_args]
        log.info("starting openstack-agent %s%s", version, " (on probation)" if probation else "")
        self._child_ready = False
        self.child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                      # Safe here: the supervisor runs no threads that fork could break.
                                      preexec_fn=die_with_parent(os.getpid()))
        if sys.platform == "win32":
            raise ReleaseError("the pidfd is Linux's; on Windows the service runs ServiceSupervisor")
        pidfd = os.pidfd_open(self.child.pid)
        deadline = time.monotonic() + self.config.ready_deadline if probation else None
        ping = notify.watchdog_interval()
        next_ping = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if ping is not None and now >= next_ping:
                    notify.send("WATCHDOG=1")
                    next_ping = now + ping
                waits = [w for w in (deadline, next_ping if ping else None) if w is not None]
                timeout = max(0.0, min(waits) - now) if waits else None
                readable, _, _ = select.select([listener.fileno(), pidfd, self.signals.fileno()], [], [], timeout)
                if self.signals.fileno() in readable:
                    self.signals.drain()
                self.take_signals()
                if listener.fileno() in readable and self._notified(listener.receive(), version):
                    deadline = None
                if pidfd in readable:
                    return self.child.wait()
                if self.should_exit:
                    self._stop_child()
                    return self.child.returncode
                if deadline is not None and time.monotonic() >= deadline:
                    log.error("openstack-agent %s did not signal ready within %g s; stopping it", version,
                              self.config.ready_deadline)
                    self._stop_child()
                    return None
        finally:
            os.close(pidfd)

    def _notified(self, fields: dict[str, str], version: str) -> bool:
        """Handle the child's notification; True once it is ready."""
        if notify.COMMITTED in fields:
            log.info("openstack-agent %s confirmed its update", fields[notify.COMMITTED])
        if fields.get("READY") == "1":
            log.info("openstack-agent %s is ready", version)
            self._child_ready = True
            # The status names the release that serves: after a rollback it is another one.
            status = f"STATUS={self._status(version)}"
            if not self._told_ready:
                self._told_ready = notify.send("READY=1", status)
            else:
                notify.send(status)
            return True
        return False

    def _stop_child(self) -> None:
        self._stop(self.child)

    def _pause(self, ran: float) -> None:
        readable, _, _ = select.select([self.signals.fileno()], [], [], self._delay(ran))
        if readable:
            self.signals.drain()

    def _listener(self) -> notify.Listener:
        assert self.listener is not None, "startup() opens the notify socket"
        return self.listener


#: What the queue of ServiceSupervisor carries besides a child's exit: a stop request.
_STOP = object()


class ServiceSupervisor(_Probation):
    """The supervisor hosted by a service in its own process (the Windows service): ``run`` until ``stop``.

    It has the agent's face toward the service (``run``, a thread-safe ``stop``, the ``runtime`` told when a
    child is started), so that the service can host it where it hosts the agent. See the module's docstring.
    """

    def __init__(self, config: Config, runtime: Runtime, agent_args: list[str] | None = None, *,
                 build: tuple[Path, str] | None = None,
                 contain: Callable[[subprocess.Popen[bytes]], None] | None = None) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.agent_args = agent_args or []
        #: The service's own frozen build, its folder and version, to adopt as a release (module docstring).
        self.build = build
        #: Called with each child once started (the Windows service's job object).
        self.contain = contain
        self._events: queue.Queue[object] = queue.Queue()
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._child_lock = threading.Lock()

    def run(self) -> None:
        self.lock.acquire()
        try:
            self.journal = Journal.open(self.config.state_path)
            if self.build is not None:
                self.adopt(*self.build)
            log.info("supervisor starting: releases in %s, current %s", self.layout.root, self.layout.current)
            while not self._stopping.is_set():
                version = self._release()
                probation = not self._good(version)
                started = time.monotonic()
                code = self._serve(version, probation)
                if self._stopping.is_set() or self._judge(version, probation, code, time.monotonic() - started):
                    break
        finally:
            self._stop_child()
            if self.journal is not None:
                self.journal.close()
            self.lock.release()
            log.info("supervisor stopped")

    def adopt(self, folder: Path, version: str) -> bool:
        """Make the service's own build in ``folder`` release ``version`` and current, when it should be (see the
        module's docstring); whether it did."""
        verdict = releases.verdict(self._journal(), version)
        if verdict is not None and verdict.state == releases.BAD:
            log.warning("the service's own build %s is marked bad (%s); it is not made current", version,
                        verdict.reason or "no reason given")
            return False
        try:
            current = self.layout.current
        except ReleaseError as exc:
            log.warning("%s; the service's own build %s takes its place", exc, version)
            current = None
        if current is not None and not newer(version, current):
            if current != version:
                log.info("the service's own build %s is older than the current release %s, which stays",
                         version, current)
            return False
        self.layout.stage_build(folder, version)
        self.layout.activate(version)
        releases.mark(self._journal(), version, releases.GOOD, "the service's own build, installed with it")
        log.info("the service's own build %s is now the current release%s", version,
                 f" (previous: {current})" if current else "")
        return True

    def stop(self) -> None:
        """From any thread (the service's control handler): stop the agent, then the supervisor."""
        self._stopping.set()
        self._events.put(_STOP)

    def _serve(self, version: str, probation: bool) -> int | None:
        """Run one child of ``version`` until it exits (its status), misses its deadline (None) or a stop."""
        env = {**os.environ, notify.SUPERVISED_ENV: "1", notify.STOP_ON_EOF_ENV: "1"}
        env.pop(notify.ENV, None)
        command = [str(self.layout.program(version)), "run", *self.agent_args]
        log.info("starting openstack-agent %s%s", version, " (on probation)" if probation else "")
        with self._child_lock:
            if self._stopping.is_set():
                return None
            # Windows has no SIGTERM: closing the child's input asks it to stop (``_stop_child``), and it ends
            # as it does on SIGTERM elsewhere: the command under way finished or journaled, the journal closed.
            # A service has no console: what the child prints before its own log is set up (a configuration
            # error, a traceback) would be lost, so it is read here and logged in the service's log.
            child = self._child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if self.contain is not None:
                self.contain(child)
        threading.Thread(target=_relay, args=(child, version), name="agent-output", daemon=True).start()
        threading.Thread(target=lambda: self._events.put(child.wait()), name="agent-exit", daemon=True).start()
        self.runtime.ready(self._status(version))
        deadline = time.monotonic() + self.config.ready_deadline + self.config.probation if probation else None
        while True:
            try:
                event = self._events.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if self._good(version):
                    deadline = None  # its agent committed the update: off probation
                    continue
                log.error("openstack-agent %s was not confirmed within %g s; stopping it", version,
                          self.config.ready_deadline + self.config.probation)
                self._stop_child()
                self._drain_exit()
                return None
            if event is _STOP:
                return None
            assert isinstance(event, int)
            return event

    def _drain_exit(self) -> None:
        """Take the stopped child's exit from the queue, keeping a stop request that came meanwhile."""
        event = self._events.get()
        if event is _STOP:
            self._events.put(_STOP)

    def _deadline_missed(self) -> str:
        return (f"was not confirmed healthy within {self.config.ready_deadline + self.config.probation:g} s "
                f"(update.ready_deadline and update.probation)")

    def _stop_child(self) -> None:
        with self._child_lock:
            child = self._child
        self._stop(child)

    def _stop(self, child: subprocess.Popen[bytes] | None) -> None:
        """Ask a running child to stop by closing its input; terminate it (TerminateProcess on Windows, which the
        journal recovers from as from a crash) only after ``daemon.shutdown_timeout``."""
        if child is None or child.poll() is not None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(self.config.shutdown_timeout)
        except subprocess.TimeoutExpired:
            log.warning("the agent did not stop within %g s of its input closing; terminating it",
                        self.config.shutdown_timeout)
            child.terminate()
            child.wait()

    def _pause(self, ran: float) -> None:
        try:
            event = self._events.get(timeout=self._delay(ran))
        except queue.Empty:
            return
        if event is _STOP:
            self._events.put(_STOP)


#: The longest line of a child's output the service logs (a runaway print must not fill its log with one line).
MAX_RELAYED_LINE = 2000


def _relay(child: subprocess.Popen[bytes], version: str) -> None:
    """Log each line the child prints, until it closes its output (it exits); lines are bounded and decoded
    leniently, since they come from a program that may be failing."""
    assert child.stdout is not None
    with child.stdout:
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                log.warning("openstack-agent %s printed: %s", version, line[:MAX_RELAYED_LINE])
