"""``config check`` and ``config show``: a configuration file checked before it is deployed, and the
configuration the agent would run with, each value with where it came from.

Both only read: the file, and the trusted key files it names. Neither opens the journal or makes a directory,
so they are safe on a machine where the agent runs, and in an image being built. Both apply the checks the
agent applies at start-up (``config.validate`` with the agent's commands), so a file they pass is one the
agent takes. ``config show --json`` is what ``collect-logs`` embeds; its shape is::

    {"file": PATH, "file_read": BOOL, "root": DIR or null, "error": MESSAGE or null,
     "options": [{"key": "section.key", "value": VALUE, "unit": "seconds"|"days"|"bytes"|null,
                  "source": "default"|PATH|"flag --xyz"}, ...]}

with each value as the agent holds it (seconds and days as numbers, bytes as integers, lists as lists). The
configuration holds no secret, so all of it can go into a bug report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent import config
from agent.cli import output
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.cli.app import Subparsers

SHOW_COLUMNS = ("key", "value", "source")


def register(commands: Subparsers) -> None:
    group = commands.add_parser("config", help="check a configuration file, show the effective configuration",
                                description=(
        "Check a configuration file before deploying it, or show the configuration the agent would run with "
        "and where each value comes from. Neither touches the journal or the state directory."))
    actions = group.add_subparsers(title="config commands", metavar="ACTION")

    check = actions.add_parser("check", help="validate a configuration file without touching anything",
                               description=(
        "Validate a configuration file as the agent would at start-up: TOML syntax, known keys, each value, "
        "the command names policy uses and the trusted key files it names. Exits 2 with the first problem. "
        "Without FILE, the default file is checked; its absence is fine (the agent then runs on defaults)."))
    check.add_argument("file", nargs="?", metavar="FILE",
                       help=f"the file to check (default: {config.DEFAULT_CONFIG}, inside --root)")
    check.add_argument("--root", metavar="DIR",
                       help="check as an agent acting inside DIR would: the default file and key files inside DIR")
    output.json_flag(check)
    check.set_defaults(handler=cmd_check)

    show = actions.add_parser("show", help="the effective configuration and where each value comes from",
                              description=(
        "Print every configuration key with the value the agent would run with, given the same flags, and its "
        "source: the default, the configuration file, or a flag."))
    config.add_flags(show)
    output.json_flag(show)
    show.set_defaults(handler=cmd_show)


def _commands() -> list[str]:
    # The machines import the configuration, never the reverse: the CLI hands config their names.
    from agent.machines import host_commands

    return host_commands()


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    if args.file and not Path(args.file).exists():
        default = config.rooted(args.root or "", config.DEFAULT_CONFIG)
        raise ConfigError(f"configuration file {args.file} does not exist; check the path (without FILE, "
                          f"'config check' checks {default}, where no file means the defaults)")
    resolved = config.resolve(argparse.Namespace(root=args.root, config=args.file))
    config.validate(resolved.config, _commands(), resolved.sources)
    keys = list(resolved.file_keys)
    if args.json:
        output.as_json({"file": str(resolved.file), "exists": resolved.file_read, "valid": True, "keys": keys},
                       out)
    elif not resolved.file_read:
        out.write(f"{resolved.file}: no such file; that is valid: the agent runs on its defaults\n")
    elif not keys:
        out.write(f"{resolved.file}: valid; sets no key (every value is its default)\n")
    else:
        out.write(f"{resolved.file}: valid; sets {len(keys)} key{'s' if len(keys) > 1 else ''} "
                  f"({', '.join(keys)})\n")
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    resolved = config.resolve(args)
    settings = resolved.config
    # A file the agent would refuse is still shown (a bug report needs it most), then refused.
    problem: ConfigError | None = None
    try:
        config.validate(settings, _commands(), resolved.sources)
    except ConfigError as exc:
        problem = exc
    if args.json:
        output.as_json({"file": str(resolved.file), "file_read": resolved.file_read, "root": settings.root or None,
                        "error": str(problem) if problem else None,
                        "options": [_json_row(option, settings, resolved.sources) for option in config.OPTIONS]},
                       out)
    else:
        out.write(f"Configuration file: {resolved.file}"
                  f"{'' if resolved.file_read else ' (no such file: defaults and flags only)'}\n\n")
        rows = [{"key": option.name, "value": option.show(getattr(settings, option.attr)) or f"({option.empty})",
                 "source": resolved.sources[option.attr]} for option in config.OPTIONS]
        output.table(rows, SHOW_COLUMNS, out)
    if problem is not None:
        raise problem
    return 0


def _json_row(option: config.Option, settings: config.Config, sources: Any) -> dict[str, Any]:
    value = getattr(settings, option.attr)
    return {"key": option.name, "value": list(value) if isinstance(value, tuple) else value,
            "unit": option.unit or None, "source": sources[option.attr]}
