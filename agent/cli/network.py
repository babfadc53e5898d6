"""``network``: the files resetnetwork would write, rendered into a directory for review; nothing is applied.

``network render`` is an image builder's or operator's dry run: it reads a network description (nova's
``vm-data`` entries, in the format ``agent.host.load_network_description`` documents), matches the MACs to
the guest's interfaces (``--interfaces``, else ``<root>/sys/class/net``), picks the stack as the agent would
(``--renderer``, else what the image under ``--root`` has), renders the files with ``agent.network.plan``
and writes them under ``--out`` (``DIR/etc/...``), each with the mode the agent gives a new file. It reads
the present files under ``--root`` (read-only; symbolic links are followed as inside a chroot, so an
image's links never lead to this machine's files) only to keep what the renderers keep and to say which
files would change. ``--out`` must be new or empty, so a dry run can never write over a real ``/etc``.

``read_description`` is the one reader of a description file (or standard input), shared with
``host resetnetwork``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TextIO

from agent.cli import output
from agent.errors import AgentError, ConfigError, NetworkDataError
from agent.network.detect import AUTO, RENDERERS

if TYPE_CHECKING:
    from agent.cli.app import Subparsers
    from agent.network.plan import File

FROM_STDIN = "-"
STDIN_NAME = "<stdin>"
#: How many symbolic links one path may pass through inside --root (as the kernel's MAXSYMLINKS).
MAX_LINKS = 40

DESCRIPTION_HELP = (
    "The description is JSON: an object {\"networking\": ..., \"hostname\": \"web-1\"} whose 'networking' is "
    "either an object keyed as vm-data/networking is (the MAC without colons) with nova's entry for each "
    "interface as the value, or a list of nova's entries (each keyed by its 'mac' without colons); 'hostname' "
    "is optional. A bare list of entries is accepted too. An entry is what nova writes, e.g. "
    "{\"label\": \"public\", \"mac\": \"fa:16:3e:0a:1b:2c\", \"gateway\": \"203.0.113.1\", \"ips\": [{\"ip\": "
    "\"203.0.113.10\", \"netmask\": \"255.255.255.0\", \"enabled\": \"1\"}], \"dns\": [\"198.51.100.53\"]}.")


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
        "file under --root. " + DESCRIPTION_HELP))
    render.add_argument("--input", required=True, metavar="FILE",
                        help="the network description, or '-' to read it from standard input")
    render.add_argument("--out", required=True, metavar="DIR", type=Path,
                        help="where to write the files: a new or empty directory")
    render.add_argument("--renderer", choices=(AUTO, *RENDERERS), default=AUTO,
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
    from agent.host import load_network_description

    try:
        return load_network_description(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise NetworkDataError(f"{name}: the description is not UTF-8 text") from None
    except NetworkDataError as exc:
        raise NetworkDataError(f"{name}: {exc}") from None


def interface_map(text: str) -> dict[str, str]:
    """``--interfaces``: ``MAC=NAME,...`` as ``{mac12: name}``, the form ``system_interfaces`` gives."""
    from agent.network.model import normal_mac

    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        mac_text, equals, name = item.partition("=")
        mac = normal_mac(mac_text)
        if not equals or len(mac) != 12 or any(c not in "0123456789abcdef" for c in mac):
            raise argparse.ArgumentTypeError(f"{item!r} is not MAC=NAME (e.g. fa:16:3e:0a:1b:2c=eth0)")
        if not name or len(name) > 15 or name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
            raise argparse.ArgumentTypeError(f"{name!r} is not an interface name (1 to 15 characters, no '/', ':' "
                                             "or spaces)")
        if mac in found:
            raise argparse.ArgumentTypeError(f"MAC {mac_text.strip()} is given twice")
        found[mac] = name
    if not found:
        raise argparse.ArgumentTypeError("give at least one MAC=NAME")
    return found


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    from agent.network import detect, model, plan

    root: Path = args.root
    target: Path = args.out
    _check_out(target)
    entries, hostname = read_description(args.input)
    interfaces = args.interfaces if args.interfaces is not None else model.system_interfaces(root)
    try:
        network = model.parse(entries, hostname, interfaces)
    except NetworkDataError as exc:
        raise NetworkDataError(f"{STDIN_NAME if args.input == FROM_STDIN else args.input}: {exc}") from None
    stack = args.renderer if args.renderer != AUTO else detect.detect(root)
    if stack is None:
        raise ConfigError(f"no network stack found under {root} (none of netplan, ifupdown, sysconfig, "
                          "NetworkManager, systemd-networkd, FreeBSD's rc.conf); name one with --renderer")
    current = present_files(root, plan.MAX_FILE_SIZE)
    files = plan.render(network, stack, current)
    _write(target, files)
    rows = [{"path": f.path, "bytes": len(f.contents), "mode": f"{f.mode:04o}", "status": _status(f, current)}
            for f in files.values()]
    if args.json:
        output.as_json({"stack": stack, "files": rows}, out)
    else:
        output.fields([("stack", stack)], out)
        output.table(rows, ("path", "bytes", "mode", "status"), out)
    return 0


def present_files(root: Path, limit: int) -> Callable[[str], bytes | None]:
    """``current(path)`` for the renderers: the bytes of the guest file ``path`` under ``root``, None when it
    does not exist; read once each, never written. A file over ``limit`` bytes is an error, as it is for the
    agent."""
    cache: dict[str, bytes | None] = {}

    def current(path: str) -> bytes | None:
        if path not in cache:
            cache[path] = _read(root, path, limit)
        return cache[path]

    return current


def _read(root: Path, path: str, limit: int) -> bytes | None:
    local = _inside(root, path)
    try:
        fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AgentError(f"cannot read {local}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AgentError(f"{local} is not a regular file; resetnetwork would not write over it either")
        if info.st_size > limit:
            raise AgentError(f"{local} is {info.st_size} bytes, over the {limit} a network file may have; "
                             "resetnetwork would refuse it too")
        return fh.read(limit + 1)


def _inside(root: Path, path: str) -> Path:
    """``path`` under ``root`` as a process chrooted there finds it: symbolic links are followed, but an
    absolute target starts again at ``root`` and '..' stops at it, so the result is always inside ``root``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise AgentError(f"too many symbolic links in {root.joinpath(*resolved)} resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


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
