"""Registered in the command tree; its subcommands are added by register()."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.cli.app import Subparsers


def register(commands: Subparsers) -> None:
    del commands
