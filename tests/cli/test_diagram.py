"""diagram: each machine's mermaid diagram, drawn from its table."""

from __future__ import annotations

import pytest

from tests.cli.conftest import run


@pytest.mark.parametrize(("command", "edges"), [
    ("version", ["received --> done: answer"]),
    ("features", ["received --> done: answer"]),
    ("keyinit", ["received --> exchanged: exchange", "exchanged --> done: answer"]),
    ("password", ["received --> applying: unlock", "applying --> applied: apply", "applied --> done: answer",
                  "received --> done: already_applied", "applying --> failed: fail"]),
    ("agentupdate", ["switching --> restarting: restart", "restarting --> confirming: confirm",
                     "confirming --> committed: commit", "confirming --> rolling_back: rollback",
                     "rolling_back --> rolled_back: finish_rollback", "verifying --> done: nothing_to_do"]),
])
def test_diagram_is_rendered_from_the_table(command: str, edges: list[str]) -> None:
    """The mermaid diagram shows every transition of the machine's table, fail included."""
    code, out = run("diagram", command)
    assert code == 0
    assert "stateDiagram-v2" in out
    for edge in [*edges, "received --> failed: fail"]:
        assert edge in out
