"""diagram: each machine's mermaid diagram, drawn from its table, one diagram per run."""

from __future__ import annotations

import pytest

from agent.machines import REGISTRY
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
    ("kmsactivate", ["received --> setting_server: configure", "setting_server --> activating: server_set",
                     "activating --> done: activated", "activating --> failed: fail"]),
])
def test_diagram_is_rendered_from_the_table(command: str, edges: list[str]) -> None:
    """The mermaid diagram shows every transition of the machine's table, fail included."""
    code, out = run("diagram", command)
    assert code == 0
    assert "stateDiagram-v2" in out
    for edge in [*edges, "received --> failed: fail"]:
        assert edge in out


@pytest.mark.parametrize("command", list(REGISTRY))
def test_each_machine_is_one_diagram_mermaid_takes(command: str) -> None:
    """Every machine, rejected included, prints one diagram: front matter first (a title), one header, and
    mermaid's lower-case 'class' keyword."""
    code, out = run("diagram", command)
    assert code == 0
    assert out.startswith(f"---\ntitle: openstack-agent {command}\n---\nstateDiagram-v2\n")
    assert out.count("stateDiagram-v2") == 1 and out.count("---") == 2
    assert "\n  Class " not in out and "%%" not in out


def test_diagram_of_rejected() -> None:
    """The machine 'journal show' names for a refused request can be drawn, though the host cannot call it."""
    assert run("diagram", "rejected") == (0, """\
---
title: openstack-agent rejected
---
stateDiagram-v2
  direction LR
  classDef s_default fill:white,color:black
  classDef s_inactive fill:white,color:black
  classDef s_parallel color:black,fill:white
  classDef s_active color:red,fill:darksalmon
  classDef s_previous color:blue,fill:azure

  state "received" as received
  class received s_default
  state "failed" as failed
  class failed s_default

  received --> failed: fail
  [*] --> received
""")


def test_without_a_name_the_machines_are_listed() -> None:
    """With no name, the machines that can be drawn are listed with how to draw one, not concatenated."""
    assert run("diagram") == (0, """\
machine       host command  states
version       yes           received done failed
features      yes           received done failed
keyinit       yes           received exchanged done failed
password      yes           received applying applied done failed
resetnetwork  yes           received switching applying verifying rolling_back done rolled_back failed
agentupdate   yes           received downloading verifying staging switching restarting confirming committed \
rolling_back rolled_back done failed
injectfile    yes           received writing written done failed
file_inject   yes           received writing written done failed
kmsactivate   yes           received setting_server activating done failed
rejected      no            received failed

Draw one with 'openstack-agent diagram MACHINE' (mermaid source, one diagram).
""")
