"""The sandbox's xenstored: refusals that name the problem instead of xenstored's own terse exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import SandboxError
from agent.sandbox import SOCKET_PATH_MAX, Xenstored


def test_a_socket_path_too_long_is_named(tmp_path: Path, shim: Path) -> None:
    """A run directory whose socket path cannot fit in a Unix socket address is refused with the fix."""
    rundir = tmp_path / ("d" * (SOCKET_PATH_MAX - len(str(tmp_path)) - len("/socket")))
    daemon = Xenstored(rundir, shim)
    with pytest.raises(SandboxError) as refused:
        daemon.start()
    assert str(refused.value) == (f"xenstored's socket {rundir}/socket is longer than a Unix socket address allows "
                                  f"({SOCKET_PATH_MAX} bytes); use a shorter directory (--dir, or TMPDIR)")
    assert daemon.process is None
