"""Fault injection for the crash and update tests; off unless a test turns it on. Two kinds:

``crash_point(config, name)``
    SIGKILLs the agent at a named point of its work (``service:<point>``: the supervisor too) when the
    configuration asks for it (``testing.crash_at``, ``--crash-at``): a crash between two steps of one
    release, to test that the journal finishes what was interrupted.

``startup_fault()``
    Makes a whole release fail at start, to test that the supervisor rolls a bad update back: the ``run``
    command calls it first, and when the installed code carries the marker file ``agent/STARTUP_FAULT``,
    holding ``crash``, the agent exits at once with status 3, and holding ``hang``, it sleeps forever
    (it never signals ready). It is a file shipped with the code rather than configuration, because a
    broken release fails whatever configuration and flags it is started with, and the supervisor passes
    its own flags on. Only ``release.build(..., startup_fault=...)`` puts a marker into a bundle: it
    refuses a source that already holds one, builds from a clean copy (nothing from an old build/ gets in)
    and checks that the wheel it built carries the fault asked for and no other, so a release built from a
    checkout never carries one.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from agent import notify
from agent.config import Config

log = logging.getLogger(__name__)


#: ``service:<point>`` kills the supervisor too, as a power cut or an OOM kill of the whole service would.
SERVICE = "service:"

#: The start-up fault marker's name, in the ``agent`` package directory.
STARTUP_FAULT = "STARTUP_FAULT"
#: What a marker may hold: exit at once with ``CRASH_STATUS``, or never get ready.
STARTUP_FAULTS = ("crash", "hang")
CRASH_STATUS = 3
MARKER = Path(__file__).with_name(STARTUP_FAULT)


def crash_point(config: Config, name: str) -> None:
    """SIGKILL this process at ``name`` when the configuration asks for it; otherwise do nothing."""
    if config.crash_at not in (name, SERVICE + name):
        return
    whole_service = config.crash_at.startswith(SERVICE) and os.environ.get(notify.SUPERVISED_ENV)
    log.warning("fault injection: killing the %s at %s", "service" if whole_service else "agent", name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    if whole_service:
        os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def startup_fault() -> None:
    """Crash or hang when this release was built with a start-up fault (``MARKER``); otherwise do nothing."""
    try:
        fault = MARKER.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return
    # Said before the log is set up: on stderr, which a supervised agent shares with the service's own log.
    sys.stderr.write(f"fault injection: this release was built to {fault} at start ({MARKER})\n")
    sys.stderr.flush()
    if fault == "hang":
        while True:
            time.sleep(3600)
    # "crash", and a marker holding anything else: a release with a marker is a test release, never served.
    raise SystemExit(CRASH_STATUS)
