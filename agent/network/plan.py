"""What a resetnetwork writes: the stack's renderer plus the host name and DNS files, as one set of files.

``render(network, stack, current)`` gives ``{guest path: File}``: the stack renderer's files
(``agent.network.renderers``) and, on Unix, the shared host name and DNS files (``agent.network.names``), each with the
mode a new file gets. Like the renderers it is a pure function: ``current(path)`` is how it learns what a file
holds now (the renderers that edit a shared file keep what they do not manage), and it touches nothing.
``changed`` says which of those files differ from what is there; the resetnetwork machine keeps the old
contents, then switches and applies the files through the network port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import ModuleType

from agent.network import names
from agent.network.model import Network
from agent.network.renderers import freebsd, ifupdown, netplan, networkd, networkmanager, sysconfig, windows

#: Every stack the agent can configure, by its ``network.renderer`` name.
STACKS: dict[str, ModuleType] = {module.NAME: module for module in (
    ifupdown, netplan, networkd, networkmanager, sysconfig, freebsd, windows)}
#: The stacks with no Unix host name and DNS files (``agent.network.names``): Windows keeps both in the registry,
#: set through the adapters' configuration and the network port's host name.
NO_NAMES_FILES = frozenset({windows.NAME})

#: Largest present file the agent reads, backs up and rewrites. A network configuration file is a few KiB; one
#: far larger is not one the agent should hold in its journal as a backup, so the command is refused instead.
MAX_FILE_SIZE = 256 * 1024
#: The mode of a file the agent creates, where its stack asks for nothing stricter.
DEFAULT_MODE = 0o644
#: Stacks whose files must not be readable by others: NetworkManager ignores a keyfile anyone but root can
#: read (profiles may hold secrets), and netplan warns about (and will refuse) a readable YAML file.
PRIVATE_DIRECTORIES = {
    networkmanager.DIRECTORY + "/": 0o600,
    "/etc/netplan/": 0o600,
}


@dataclasses.dataclass(frozen=True)
class File:
    """One file resetnetwork writes: its guest path, its new contents, the mode it gets when it is new (a
    replaced file keeps its own mode and owner)."""

    path: str
    contents: bytes
    mode: int = DEFAULT_MODE


def mode_for(path: str) -> int:
    """The mode a new file at ``path`` gets."""
    return next((mode for prefix, mode in PRIVATE_DIRECTORIES.items() if path.startswith(prefix)), DEFAULT_MODE)


def render(network: Network, stack: str, current: Callable[[str], bytes | None]) -> dict[str, File]:
    """Every file ``stack`` needs for ``network``, by guest path, sorted."""
    rendered = dict(STACKS[stack].render(network, current))
    if stack not in NO_NAMES_FILES:
        rendered.update(names.render_names(network, current, stack))
    return {path: File(path, rendered[path], mode_for(path)) for path in sorted(rendered)}


def changed(files: Mapping[str, File], current: Callable[[str], bytes | None]) -> list[str]:
    """The paths of ``files`` whose present contents differ from the new ones (or that do not exist)."""
    return [path for path, file in files.items() if current(path) != file.contents]
