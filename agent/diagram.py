"""Render a command's machine, from its table, as a mermaid state diagram (no binaries needed)."""

from __future__ import annotations

from agent.machines.base import RESUME, Command


class _Model:
    """A throw-away model: the diagram is drawn from the table, not from any command's state."""


def mermaid(command: type[Command]) -> str:
    """The mermaid ``stateDiagram-v2`` source of ``command``'s machine, one diagram that mermaid takes as it
    is. ``resume`` (every working state re-entering itself on recovery) is left out: it would draw the same
    loop on every state."""
    from transitions.extensions.diagrams import GraphMachine

    model = _Model()
    drawn = [t for t in command.transition_table() if t["trigger"] != RESUME]
    # transitions writes the title as the whole front matter: given as a YAML key, mermaid shows it as the title.
    GraphMachine(model=model, states=command.states(), transitions=drawn,
                 initial=command.STATES[0], auto_transitions=False, graph_engine="mermaid",
                 title=f"title: openstack-agent {command.NAME}", show_state_attributes=False)
    source: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    # mermaid's keyword is "class"; and every state is drawn alike: "active" would only be the throw-away
    # model's initial state.
    source = (source.replace("\n  Class ", "\n  class ")
              .replace(f"class {command.STATES[0]} s_active", f"class {command.STATES[0]} s_default"))
    return "\n".join(line.rstrip() for line in source.splitlines())
