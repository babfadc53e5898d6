"""Machine tests: each command type's machine replayed step by step on a real journal."""

from __future__ import annotations

from agent.machines.base import Command, Event


def stopping_at(machine: type[Command], state: str) -> type[Command]:
    """``machine`` whose process "dies" on entering ``state``: the transition is journaled, its work not done."""

    def stop(self: Command, event: Event) -> None:
        self.wait(0)

    return type(f"{machine.__name__}StopsAt{state.title()}", (machine,), {f"on_enter_{state}": stop})
