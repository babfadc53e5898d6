"""Request contents never reach the log, the journal or its WAL: only digests, sizes and names do."""

from __future__ import annotations

from pathlib import Path

from agent.host import Host
from tests.conftest import holding, wait_for

MARKER = "Zq7-not-to-be-kept-9Xw"


def test_rejected_request_bodies_are_not_kept(agent_process, host: Host, state_dir: Path) -> None:
    """Malformed bodies and values of unknown commands could hold a password: neither reaches the log nor the
    journal's files (database, WAL, SHM), while the agent runs or after it stopped."""
    agent = agent_process().start()
    bodies = [f'{{"name": "password", "value": "{MARKER}"}}', f'{{"value": "{MARKER}"}}', f"{MARKER} not json",
              f'{{"name": "{MARKER}"[', f'{{"name": "nosuchcommand", "value": "{MARKER}"}}']
    request_ids = [f"scan-probe-{n}" for n in range(len(bodies))]
    for request_id, body in zip(request_ids, bodies, strict=True):
        host.raw(body, timeout=20, request_id=request_id)

    def scan() -> list[str]:
        """The files scanned; each request id is found in them (the scan sees what the journal holds)."""
        files = [p for p in state_dir.iterdir() if p.is_file()]
        for path in files:
            assert MARKER.encode() not in path.read_bytes(), f"{path.name} holds a request's content"
        for request_id in request_ids:
            assert holding(state_dir, request_id), f"the scan does not see request {request_id} in the journal"
        return [p.name for p in files]

    running = scan()
    assert any(name.endswith("-wal") for name in running), f"no WAL among the running agent's files: {running}"
    agent.stop()
    scan()
    assert MARKER not in agent.log()


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
