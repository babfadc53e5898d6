"""Signals for a main loop to act on, received without doing anything in the handler that could deadlock.

A Python signal handler runs in the main thread between two bytecodes of whatever it interrupted, which may
hold a lock (a queue's, the logging module's). So the handler here only notes the signal, lets the owner set
its flags (``note``, which must do nothing else), and writes a byte to a pipe whose read end the owner
waits on (``select``) or relays (a thread). The main loop then ``take``s the signals and does the work.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable
from types import FrameType

#: What the agent and the supervisor handle: stop, reload, and two that would otherwise kill them silently.
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
STOP = (signal.SIGINT, signal.SIGTERM)
IGNORED = (signal.SIGUSR1, signal.SIGUSR2)


class SignalInbox:
    """The signals received since the main loop last looked, and a pipe that becomes readable on each."""

    def __init__(self, note: Callable[[int], None]) -> None:
        self._note = note
        self._pending: list[int] = []
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def install(self, signals: Iterable[signal.Signals] = HANDLED) -> None:
        """Handle ``signals`` (call from the main thread)."""
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, sig: int, _frame: FrameType | None) -> None:
        self._note(sig)
        self._pending.append(sig)
        with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
            os.write(self._write, b"s")

    def fileno(self) -> int:
        """The pipe's read end: readable once a signal arrived (``drain`` it)."""
        return self._read

    def drain(self) -> bool:
        """Read what the pipe holds (blocking until something does); False once it is closed."""
        try:
            return bool(os.read(self._read, 64))
        except OSError:
            return False

    def take(self) -> list[signal.Signals]:
        """The signals received since the last call, oldest first."""
        taken = []
        while self._pending:
            taken.append(signal.Signals(self._pending.pop(0)))
        return taken
