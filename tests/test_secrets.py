"""Request contents never reach the log, the journal or its WAL: only digests, sizes and names do."""

from __future__ import annotations

from pathlib import Path

from agent.host import Host
from tests.conftest import wait_for

MARKER = "Zq7-not-to-be-kept-9Xw"


def test_rejected_request_bodies_are_not_kept(agent_process, host: Host, state_dir: Path, guest) -> None:
    """Malformed bodies and values of unknown commands could hold a password: neither is logged or stored."""
    agent = agent_process().start()
    host.raw(f'{{"name": "password", "value": "{MARKER}"}}', timeout=20)
    host.raw(f'{{"value": "{MARKER}"}}', timeout=20)
    host.raw(f"{MARKER} not json", timeout=20)
    host.raw(f'{{"name": "{MARKER}"[', timeout=20)
    agent.stop()
    assert MARKER not in agent.log()
    files = [p for p in state_dir.iterdir() if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files) or files
    for path in files:
        assert MARKER.encode() not in path.read_bytes(), f"{path.name} holds a request's content"


def test_log_is_one_line_per_event(agent_process, host: Host) -> None:
    """The log has one line per event, each with a UTC timestamp and a level."""
    agent = agent_process().start()
    host.call("version", timeout=20)
    wait_for(lambda: "answered" in agent.log())
    agent.stop()
    lines = agent.log().splitlines()
    assert lines
    for line in lines:
        assert line[:4].isdigit() and "Z " in line[:30], line
