"""Fault injection for crash tests, enabled only by explicit configuration (``testing.crash_at``)."""

from __future__ import annotations

import logging
import os
import signal

from agent.config import Config

log = logging.getLogger(__name__)


def crash_point(config: Config, name: str) -> None:
    """SIGKILL this process at ``name`` when the configuration asks for it; otherwise do nothing."""
    if config.crash_at == name:
        log.warning("fault injection: killing the agent at %s", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
