"""Render a command's machine, from its table, as a mermaid state diagram (no binaries needed)."""

from __future__ import annotations

from agent.machines.base import RESUME, Command


class _Model:
    """A throw-away model: the diagram is drawn from the table, not from any command's state."""


def mermaid(command: type[Command]) -> str:
    """The mermaid ``stateDiagram-v2`` source of ``command``'s machine. ``resume`` (every working state
    re-entering itself on recovery) is left out: it would draw the same loop on every state."""
    from transitions.extensions.diagrams import GraphMachine

    model = _Model()
    drawn = [t for t in command.transition_table() if t["trigger"] != RESUME]
    GraphMachine(model=model, states=command.states(), transitions=drawn,
                 initial=command.STATES[0], auto_transitions=False, graph_engine="mermaid",
                 title=f"openstack-agent: {command.NAME}", show_state_attributes=False)
    source: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    # Every state is drawn alike: "active" would only be the throw-away model's initial state.
    return source.replace("Class " + command.STATES[0] + " s_active", "Class " + command.STATES[0] + " s_default")
