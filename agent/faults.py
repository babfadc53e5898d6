"""Fault injection for crash tests, enabled only by explicit configuration (``testing.crash_at``)."""

from __future__ import annotations

import logging
import os
import signal

from agent import notify
from agent.config import Config

log = logging.getLogger(__name__)


#: ``service:<point>`` kills the supervisor too, as a power cut or an OOM kill of the whole service would.
SERVICE = "service:"


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
