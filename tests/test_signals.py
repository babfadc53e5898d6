"""The signal inbox: handlers only note signals; the main loop takes them in order, woken by its pipe."""

from __future__ import annotations

import os
import select
import signal

from agent.signals import SignalInbox


def test_signals_are_noted_queued_and_wake_the_pipe() -> None:
    """Each signal runs ``note`` in the handler, makes the pipe readable, and is taken once, in order."""
    noted: list[int] = []
    inbox = SignalInbox(noted.append)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        inbox.install((signal.SIGUSR1, signal.SIGUSR2))
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert select.select([inbox.fileno()], [], [], 5)[0] == [inbox.fileno()]
        assert inbox.drain()
        assert noted == [signal.SIGUSR1, signal.SIGUSR2]
        assert inbox.take() == [signal.SIGUSR1, signal.SIGUSR2]
        assert inbox.take() == []
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
