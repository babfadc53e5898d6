"""``network``: the files resetnetwork would write, rendered into a directory for review; nothing is applied.

``network render`` is an image builder's or operator's dry run: it reads a network description (nova's
``vm-data`` entries, in the format ``agent.network.description`` states), matches the MACs to the guest's
interfaces (``--interfaces``, else ``<root>/sys/class/net``), picks the stack as the agent does
(``agent.network.detect.choose``: ``--renderer``, else what the image under ``--root`` has), renders the files
with ``agent.network.plan`` and writes them under ``--out`` (``DIR/etc/...``), each with the mode the agent
gives a new file. It reads the present files under ``--root`` only to keep what the renderers keep and to say
which files would change, and reads them as the agent's network port does (``agent.platform.files``, bounded
by ``plan.MAX_FILE_SIZE``): a file the agent would refuse to read (a symbolic link on its path, anything but a
regular file, a file too large) is an error here too, so the dry run never succeeds where resetnetwork would
fail. ``--out`` must be new or empty, so a dry run can never write over a real ``/etc``.

``read_description`` is the one reader of a description file (or standard input), shared with
``host resetnetwork``; ``FROM_STDIN`` is the '-' every command that reads standard input takes. Importing this
module imports neither the host side nor pyxs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TextIO

from agent.cli import output
from agent.errors import AgentError, ConfigError, FileRefused, NetworkDataError, PlatformError
from agent.network.description import FORMAT, is_interface_name, load_network_description, mac_key
from agent.network.detect import AUTO, RENDERERS
from agent.network.renderers import windows

if TYPE_CHECKING:
    from agent.cli.app import Subparsers
    from agent.network.plan import File

#: The file name that means standard input.
FROM_STDIN = "-"
STDIN_NAME = "<stdin>"


#: The stacks whose configuration is files. Windows keeps its network in the registry, set through WMI: its
#: "files" are the agent's documents of each adapter's settings, which only a Windows guest can read and apply.
FILE_STACKS = tuple(stack for stack in RENDERERS if stack != windows.NAME)


def register(commands: Subparsers) -> None:
    network = commands.add_parser("network", help="render the network files resetnetwork would write",
                                  description="The guest's network configuration, as resetnetwork computes it.")
    actions = network.add_subparsers(title="actions", metavar="ACTION", required=True)
    render = actions.add_parser("render", help="write the files for a network description into a directory",
                                description=(
        "A dry run of resetnetwork: render the files the agent would write for the network description in "
        "FILE (or standard input) and write them under DIR (DIR/etc/...), each with the mode the agent gives a "
        "new file. Nothing is applied, and nothing outside DIR is written; DIR must be new or empty. Prints the "
        "stack, then each file with its size, mode and whether it is new, changed or the same as the present "
        "file under --root. A present file the agent would refuse to read (a symbolic link on its path, "
        "not a regular file, one larger than the agent reads) is an error here too. " + FORMAT))
    render.add_argument("--input", required=True, metavar="FILE",
                        help="the network description, or '-' to read it from standard input")
    render.add_argument("--out", required=True, metavar="DIR", type=Path,
                        help="where to write the files: a new or empty directory")
    render.add_argument("--renderer", choices=(AUTO, *FILE_STACKS), default=AUTO,
                        help="the network stack to render for (default: auto, the one the image under --root has)")
    render.add_argument("--root", default="/", metavar="DIR", type=Path,
                        help="the guest's root, read only: its stack, interfaces and present files (default: /)")
    render.add_argument("--interfaces", metavar="MAC=NAME,...", type=interface_map,
                        help="the guest's interfaces by MAC (e.g. fa:16:3e:0a:1b:2c=eth0), instead of those in "
                             "<root>/sys/class/net")
    output.json_flag(render, "print the stack and the files as JSON")
    render.set_defaults(handler=cmd_render)


def read_description(source: str) -> tuple[dict[str, Any], str | None]:
    """The entries and host name of the description in the file ``source`` ('-': standard input); a
    NetworkDataError naming the file and what is wrong with it otherwise."""
    name = STDIN_NAME if source == FROM_STDIN else source
    if source == FROM_STDIN:
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror}; give a readable file, or '-' for standard "
                              "input") from None
    try:
        return load_network_description(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise NetworkDataError(f"{name}: the description is not UTF-8 text") from None
    except NetworkDataError as exc:
        raise NetworkDataError(f"{name}: {exc}") from None


def interface_map(text: str) -> dict[str, str]:
    """``--interfaces``: ``MAC=NAME,...`` as ``{mac12: name}``, the form ``system_interfaces`` gives. The MAC
    and the name are checked as the description's MACs and the agent's interface names are."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        mac_text, equals, name = item.partition("=")
        key = mac_key(mac_text)
        if not equals or key is None:
            raise argparse.ArgumentTypeError(f"{item!r} is not MAC=NAME (e.g. fa:16:3e:0a:1b:2c=eth0)")
        if not is_interface_name(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not an interface name (1 to 15 characters, no '/', ':' "
                                             "or spaces, not starting with '-')")
        if key.lower() in found:
            raise argparse.ArgumentTypeError(f"MAC {mac_text.strip()} is given twice")
        found[key.lower()] = name
    if not found:
        raise argparse.ArgumentTypeError("give at least one MAC=NAME")
    return found


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    from agent.network import detect, model, plan

    root: Path = args.root
    target: Path = args.out
    _check_out(target)
    if not root.is_dir():
        raise ConfigError(f"--root {root} is not a directory; give the guest's root")
    entries, hostname = read_description(args.input)
    interfaces = args.interfaces if args.interfaces is not None else model.system_interfaces(root)
    try:
        network = model.parse(entries, hostname, interfaces)
    except NetworkDataError as exc:
        raise NetworkDataError(f"{STDIN_NAME if args.input == FROM_STDIN else args.input}: {exc}") from None
    for interface in network.interfaces:
        if not is_interface_name(interface.name):
            raise AgentError(f"the guest's interface {interface.name!r:.40} (MAC {interface.mac}) is not a name "
                             "the agent applies a network to; resetnetwork would refuse it too")
    try:
        stack = detect.choose(args.renderer, root)
    except ConfigError as exc:  # its wording names the option; here it is the flag, and the root is given
        raise ConfigError(str(exc).replace("in this image", f"under {root}").replace("network.renderer",
                                                                                      "--renderer")) from None
    if stack == windows.NAME:
        raise ConfigError(f"the image under {root} is Windows, whose network is set through WMI, not written to "
                          f"files: there is nothing to render; name a file stack with --renderer")
    current = present_files(root, plan.MAX_FILE_SIZE)
    files = plan.render(network, stack, current)
    # Every file is read before anything is written, as the agent reads each file it would change first.
    rows = [{"path": f.path, "bytes": len(f.contents), "mode": f"{f.mode:04o}", "status": _status(f, current)}
            for f in files.values()]
    _write(target, files)
    if args.json:
        output.as_json({"stack": stack, "files": rows}, out)
    else:
        output.fields([("stack", stack)], out)
        output.table(rows, ("path", "bytes", "mode", "status"), out)
    return 0


def present_files(root: Path, limit: int) -> Callable[[str], bytes | None]:
    """``current(path)`` for the renderers: the bytes of the guest file ``path`` under ``root``, None when it
    does not exist; read once each, never written, and read as the agent's network port reads it (no symbolic
    link followed anywhere on the path, a regular file of at most ``limit`` bytes). A file the agent would
    refuse is an AgentError naming it."""
    from agent.platform.files import Files

    files = Files(root, allowed_paths=(), max_size=limit, keep_backups=False, selinux=False)
    cache: dict[str, bytes | None] = {}

    def current(path: str) -> bytes | None:
        if path not in cache:
            try:
                cache[path] = files.read(path, limit)
            except FileRefused as exc:
                raise AgentError(f"--root {root}: {exc}; resetnetwork would refuse it too") from None
            except PlatformError as exc:
                raise AgentError(f"--root {root}: {exc}") from None
        return cache[path]

    return current


def _check_out(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target} is not a directory; give a new or empty directory")
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"--out {target} is not empty; give a new or empty directory (render never writes over "
                          "files, so that it can never write over a real /etc)")


def _write(target: Path, files: dict[str, File]) -> None:
    """Each file under ``target`` at its guest path, created (never replaced) with its mode."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        for file in files.values():
            relative = PurePosixPath(file.path).relative_to("/")
            if ".." in relative.parts:
                raise AgentError(f"refusing to write {file.path}: it leaves --out")
            local = target.joinpath(*relative.parts)
            local.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, file.mode)
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), file.mode)  # the mode exactly, whatever the umask
                fh.write(file.contents)
    except OSError as exc:
        raise AgentError(f"cannot write under --out {target}: {exc.strerror} ({exc.filename}); give a new or "
                         "empty directory you can write to") from None


def _status(file: File, current: Callable[[str], bytes | None]) -> str:
    present = current(file.path)
    return "new" if present is None else "same" if present == file.contents else "changed"
