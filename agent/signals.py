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
import sys
from collections.abc import Callable, Iterable
from types import FrameType


def _present(*names: str) -> tuple[signal.Signals, ...]:
    """The signals of these names that this system has (Windows has neither SIGHUP nor SIGUSR1/2)."""
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


#: What the agent and the supervisor handle: stop, reload, and two that would otherwise kill them silently.
HANDLED = _present("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
STOP = _present("SIGINT", "SIGTERM")
IGNORED = _present("SIGUSR1", "SIGUSR2")
#: The reload signal, where there is one (Windows has none: a service is reloaded by restarting it).
RELOAD: signal.Signals | None = getattr(signal, "SIGHUP", None)


class SignalInbox:
    """The signals received since the main loop last looked, and a pipe that becomes readable on each."""

    def __init__(self, note: Callable[[int], None]) -> None:
        self._note = note
        self._pending: list[int] = []
        self._read, self._write = os.pipe()
        if sys.platform != "win32":  # Python 3.11 cannot make a pipe non-blocking on Windows
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
