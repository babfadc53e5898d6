"""Run the supervisor and update tests on either kind of install-root pointers (``agent.pointers``), and a
stand-in for the frozen Windows build.

A test takes ``service`` as usual and is parametrised over ``layout_kind``; with ``file`` the conftest's
``service`` (installed with symbolic links, as on Linux) has its ``current`` rewritten as a pointer file before
the supervisor starts, and every process that opens the install root afterwards finds pointer files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import pointers
from agent.install import Layout
from tests.conftest import Service


@pytest.fixture
def layout_kind() -> str:
    return pointers.SYMLINK


@pytest.fixture
def service(service: Service, layout_kind: str) -> Service:
    if layout_kind == pointers.FILE:
        layout = Layout(service.layout.root, pointers.FILE)
        current = layout.current
        assert current is not None
        layout.switch("current", current)
        assert not (layout.root / "current").is_symlink()
    return service


def frozen_build(folder: Path, version: str) -> Path:
    """A stand-in for PyInstaller's one-folder build: ``openstack-agent.exe`` (here a shell script that prints
    its version, as ``openstack-agent --version`` does) and ``_internal/``."""
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / "base_library.zip").write_bytes(b"not really a library")
    program = folder / "openstack-agent.exe"
    program.write_text(f"#!/bin/sh\necho 'openstack-agent {version}'\n")
    program.chmod(0o755)
    return folder
