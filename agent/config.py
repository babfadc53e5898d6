"""One Config object, built from the TOML file and then the command-line flags.

Every key of the file is also a flag: the table ``OPTIONS`` below is the single list of both, and the CLI
generates its flags from it. A flag given on the command line wins over the file, the file over the default.

Values are taken in the operator's words: a duration is a number of seconds (of days for
``journal.retention_days``) or a number with units (``250ms``, ``30s``, ``5m``, ``1h30m``, ``2d``); a size is
a number of bytes or a number with a binary unit (``512B``, ``4KiB``, ``1 MiB``, ``200MiB``, ``1GiB``). ``KB``,
``MB`` and friends are refused: half the world reads them as 1000 and half as 1024, and a limit must not depend
on which. ``Config`` keeps plain float seconds and int bytes, so nothing past this module sees the units.

``load`` reads one key at a time; ``validate`` then checks what needs more than one key or the world around
it (the command names policy uses, the trusted key files), and ``resolve`` also says where each value came
from, for ``openstack-agent config show``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows images only
    _BASE = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "OpenStackAgent"
    DEFAULT_CONFIG = _BASE / "agent.toml"
    DEFAULT_STATE_DIR = str(_BASE)
    # Where the earlier Windows agent logged, so that operators find the log where they always did.
    DEFAULT_LOG_FILE = str(Path(os.environ.get("WINDIR", r"C:\Windows")) / "Logs" / "OpenStackAgent.log")
    # The releases live in the state directory, the one folder the agent keeps for SYSTEM and Administrators
    # alone (agent.winacl; its lock secures the install root wherever it is): %ProgramData% lets every user create
    # in it, and a release is code the service runs as LocalSystem. Not the MSI's folder under Program Files,
    # which the MSI owns: an upgrade or removal there would race the supervisor switching releases.
    DEFAULT_INSTALL_ROOT = DEFAULT_STATE_DIR
else:
    DEFAULT_CONFIG = Path("/etc/openstack-agent/agent.toml")
    DEFAULT_STATE_DIR = "/var/lib/openstack-agent"
    DEFAULT_LOG_FILE = ""
    DEFAULT_INSTALL_ROOT = "/opt/openstack-agent"

FAULT_POINTS = (
    "before_received",
    "after_received",
    "in_machine",
    "after_reply_journaled",
    "after_reply_written",
    "after_request_deleted",
    "after_replied",
)


def _names(what: str) -> Callable[[Any], tuple[str, ...]]:
    """A comma list (flag) or a list of strings (file) of ``what``: command names, key files."""
    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",")]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = [v.strip() for v in value]
        else:
            raise ValueError(f"expected a list of {what}")
        return tuple(v for v in items if v)

    return convert


def _globs(value: Any) -> tuple[str, ...]:
    """A comma list (flag) or a list of strings (file) of absolute path globs; each must be able to match an
    absolute path, so it starts with ``/`` or a wildcard. An empty list is kept: it allows no path."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError("expected a list of path globs")
    globs = tuple(v for v in items if v)
    for glob in globs:
        if not glob.startswith(("/", "*", "?", "[")):
            raise ValueError(f"{glob!r} can never match an absolute path; start it with / (or a wildcard)")
    return globs


def _count(value: Any) -> int:
    """A whole number greater than zero (a TOML integer, or its digits in a string or flag)."""
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        # int() would cut 2.5 to 2 silently, and word a text as "invalid literal for int() with base 10".
        raise ValueError("expected a whole number such as 3")
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


class Unreadable(ValueError):
    """A value that is not of its key's kind at all; its message is complete after ``<where>: ``."""


def _checked(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


#: Duration units and their length in seconds.
DURATION_UNITS = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600),
                  "d": Fraction(86400)}
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def _duration(unit: str) -> Callable[[Any], float]:
    """A duration in ``unit`` (``seconds`` or ``days``): a plain number is in that unit, a number with units
    (``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``) is converted to it."""
    per = DURATION_UNITS["d" if unit == "days" else "s"]
    examples = "12h, 7d, 90d" if unit == "days" else "500ms, 30s, 5m, 1h"
    plain = "90" if unit == "days" else "30"

    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        if isinstance(value, int | float):
            return _checked(float(value))
        text = value.strip() if isinstance(value, str) else None
        if text is not None and _NUMBER.fullmatch(text):
            return _checked(float(text))
        if text is None or not _DURATION.fullmatch(text):
            raise Unreadable(f"{value!r} is not a duration; write {unit} as a number ({plain}) or with a unit "
                             f"({examples})")
        seconds = sum(Fraction(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
        return _checked(float(seconds / per))

    return convert


#: Size units and their bytes: binary only (see the module's docstring for why KB and MB are refused).
SIZE_UNITS = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)
_SIZE_HELP = "write bytes as a number (1048576) or with a unit (4KiB, 200MiB, 1GiB)"


def _size(value: Any) -> int:
    """A number of bytes: a plain whole number, or a number with a binary unit (``512B``, ``4KiB``,
    ``1 MiB``, ``1.5GiB``) that comes to whole bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int):
        size = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        size = Fraction(value)
    else:
        found = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if found is None:
            raise Unreadable(f"{value!r} is not a size; {_SIZE_HELP}")
        number, written = found.groups()
        unit = written.lower()
        if unit and unit not in SIZE_UNITS:
            if unit.rstrip("b") in ("k", "m", "g", "t"):
                raise Unreadable(f"{value!r} is ambiguous ({written} is 1000 to some and 1024 to others); write "
                                 f"{number}{unit[0].upper()}iB (1024-based) or a number of bytes")
            raise Unreadable(f"{value!r} is not a size; {_SIZE_HELP}")
        size = Fraction(number) * SIZE_UNITS[unit or "b"]
    if size.denominator != 1:
        raise Unreadable(f"{value!r} is not a whole number of bytes; {_SIZE_HELP}")
    if size <= 0:
        raise ValueError("must be greater than zero")
    return int(size)


def format_duration(seconds: float) -> str:
    """``seconds`` as an operator writes it: ``250ms``, ``30s``, ``1h30m``, ``90d`` (``1.5s`` where a second
    is split)."""
    if seconds < 1:
        milliseconds = seconds * 1000
        return f"{milliseconds:g}ms" if milliseconds == round(milliseconds) else f"{seconds:g}s"
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for name, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, length)
        if count:
            parts.append(f"{count}{name}")
    return "".join(parts)


def format_size(size: int) -> str:
    """``size`` bytes in the largest binary unit that holds it whole: ``4KiB``, ``200MiB``, ``1000B``."""
    for name, length in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % length == 0:
            return f"{size // length}{name}"
    return f"{size}B"


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


#: The ``network.renderer`` values: ``auto`` (find the image's stack) or one stack by name.
NETWORK_STACKS = ("auto", "ifupdown", "netplan", "networkd", "networkmanager", "sysconfig", "freebsd")
#: The ``network.verify`` values: what must hold after resetnetwork applies a network, else it rolls back.
NETWORK_CHECKS = ("addresses", "gateway")


def _one_of(choices: Sequence[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return convert


def _log_level(value: Any) -> str:
    level = str(value).lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ValueError("expected one of debug, info, warning, error")
    return level


#: Besides the reply-protocol steps, ``enter:<state>`` kills the agent right after a command's transition to
#: that state is journaled, before the state's work runs.
#: A ``service:`` prefix kills the supervisor with the agent.
STATE_FAULT = re.compile(r"enter:[a-z_]+")


def _fault_point(value: Any) -> str:
    point = str(value)
    bare = point.removeprefix("service:")
    if point and bare not in FAULT_POINTS and not STATE_FAULT.fullmatch(bare):
        raise ValueError(f"expected one of {', '.join(FAULT_POINTS)}, or enter:<state>, optionally prefixed "
                         "with service:")
    return point


@dataclasses.dataclass(frozen=True)
class Option:
    """One configuration key: where it lives in the TOML file and which flag sets it."""

    attr: str
    section: str
    key: str
    convert: Callable[[Any], Any]
    help: str
    #: ``seconds``, ``days`` or ``bytes`` for a value with units; empty for the rest.
    unit: str = ""
    #: What an empty value (string or list) means, for the flag's help and ``config show``.
    empty: str = "none"

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")

    @property
    def name(self) -> str:
        """The key as the operator writes it in the file: ``section.key``."""
        return f"{self.section}.{self.key}"

    def show(self, value: Any) -> str:
        """``value`` of this key as an operator writes it (``30s``, ``200MiB``, ``true``, ``a, b``); empty for
        an empty string or list."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if self.unit == "seconds":
            return format_duration(value)
        if self.unit == "days":
            return format_duration(value * 86400)
        if self.unit == "bytes":
            return format_size(value)
        if isinstance(value, tuple):
            return ", ".join(value)
        return str(value)


OPTIONS: tuple[Option, ...] = (
    Option("xenstore", "xenstore", "address", str,
           "XenStore to use: 'unix:PATH' (xenstored's socket; the default when XENSTORED_PATH is set), "
           "'xenbus[:PATH]' (the default in a Linux or FreeBSD guest) or 'wmi' (the Windows PV drivers' WMI "
           "interface; the default on Windows)", empty="auto"),
    Option("domain_path", "xenstore", "domain_path", str,
           "domain home such as /local/domain/5 (dom0, sandbox, tests); empty means relative paths",
           empty="relative paths"),
    Option("xenstore_timeout", "xenstore", "timeout", _duration("seconds"),
           "seconds a XenStore call may take before the connection is treated as dead", unit="seconds"),
    Option("state_dir", "journal", "state_dir", str, "directory holding the journal database"),
    Option("retention_days", "journal", "retention_days", _duration("days"),
           "days finished commands are kept in the journal", unit="days"),
    Option("keep_min", "journal", "keep_min", _count,
           "the newest commands retention always keeps, whatever the clock says"),
    Option("max_commands", "journal", "max_commands", _count,
           "most commands the journal holds: past it the oldest finished ones are pruned (bounds its disk use)"),
    Option("allow", "policy", "allow", _names("command names"),
           "comma list of commands this agent runs (empty: every implemented command)", empty="every command"),
    Option("deny", "policy", "deny", _names("command names"), "comma list of commands this agent refuses"),
    Option("reply_max_age", "replies", "max_age", _duration("seconds"),
           "seconds after which the agent removes its own replies from data/guest", unit="seconds"),
    Option("max_attempts", "recovery", "max_attempts", _count,
           "times a command may be started (first run plus recoveries) before it is failed"),
    Option("log_level", "daemon", "log_level", _log_level, "debug, info, warning or error"),
    Option("log_file", "daemon", "log_file", str,
           "file to log to instead of stderr (created 0600; reopened on SIGHUP, for logrotate)", empty="stderr"),
    Option("housekeeping_interval", "daemon", "housekeeping_interval", _duration("seconds"),
           "seconds between reply garbage collection and journal retention runs", unit="seconds"),
    Option("shutdown_timeout", "daemon", "shutdown_timeout", _duration("seconds"),
           "seconds the daemon waits for a clean shutdown before it exits anyway", unit="seconds"),
    Option("password_user", "password", "user", str,
           "account whose password 'password' sets (empty: root; on Windows the built-in administrator, found "
           "by its RID 500)", empty="root"),
    Option("exchange_lifetime", "password", "exchange_lifetime", _duration("seconds"),
           "seconds a keyinit exchange stays usable; then its secret is wiped", unit="seconds"),
    Option("install_root", "update", "install_root", str,
           "where releases live: releases/<version>/ plus the current and previous links (one-line pointer files "
           "on Windows)"),
    Option("keep_releases", "update", "keep_releases", _count,
           "releases kept on disk (current and previous are never removed)"),
    Option("allow_http", "update", "allow_http", _bool, "whether agentupdate may download over plain http"),
    Option("require_signature", "update", "require_signature", _bool,
           "whether a release must carry an Ed25519 signature from a trusted key"),
    Option("trusted_keys", "update", "trusted_keys", _names("key files"),
           "comma list of PEM files holding the Ed25519 public keys that may sign releases"),
    Option("download_timeout", "update", "download_timeout", _duration("seconds"),
           "seconds a download may stall (connecting or between reads)", unit="seconds"),
    Option("max_download_size", "update", "max_download_size", _size,
           "largest release bundle agentupdate downloads, in bytes", unit="bytes"),
    Option("ready_deadline", "update", "ready_deadline", _duration("seconds"),
           "seconds a new release has to signal ready under the supervisor before it is rolled back",
           unit="seconds"),
    Option("crash_limit", "update", "crash_limit", _count,
           "crashes of a new release within crash_window after which it is marked bad and rolled back"),
    Option("crash_window", "update", "crash_window", _duration("seconds"), "seconds over which crashes are counted",
           unit="seconds"),
    Option("probation", "update", "probation", _duration("seconds"),
           "seconds a new release must stay up after signalling ready before the update is committed",
           unit="seconds"),
    Option("inject_keep_backups", "inject", "keep_backups", _bool,
           "whether a file injection keeps the file it replaces beside it, as <name>.bak.<UTC time>"),
    Option("inject_allowed_paths", "inject", "allowed_paths", _globs,
           "comma list of globs a file injection's absolute path must match (fnmatch: * also matches /, so "
           "/root/.ssh/* covers everything below it); * allows every path, an empty list none"),
    Option("inject_max_size", "inject", "max_size", _size,
           "largest file a file injection writes, in bytes (a XenStore request carries under 4 KiB)",
           unit="bytes"),
    Option("network_renderer", "network", "renderer", _one_of(NETWORK_STACKS),
           "network stack resetnetwork configures: auto (found from what the image has), ifupdown, netplan, "
           "networkd, networkmanager, sysconfig or freebsd"),
    Option("network_verify", "network", "verify", _one_of(NETWORK_CHECKS),
           "what resetnetwork checks before it answers: addresses (every interface has its addresses and the "
           "default routes are in place) or gateway (also, each default gateway answers a ping)"),
    Option("network_verify_timeout", "network", "verify_timeout", _duration("seconds"),
           "seconds resetnetwork waits for the check to pass before it rolls the change back", unit="seconds"),
    Option("crash_at", "testing", "crash_at", _fault_point,
           "fault injection for crash tests: SIGKILL the agent at this reply-protocol step, or at "
           "enter:<state> of a command"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the agent is told, resolved and validated."""

    xenstore: str = ""
    domain_path: str = ""
    xenstore_timeout: float = 10.0
    state_dir: str = DEFAULT_STATE_DIR
    retention_days: float = 90.0
    keep_min: int = 1000
    max_commands: int = 50_000
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    reply_max_age: float = 3600.0
    max_attempts: int = 3
    log_level: str = "info"
    log_file: str = DEFAULT_LOG_FILE
    housekeeping_interval: float = 300.0
    shutdown_timeout: float = 10.0
    password_user: str = ""
    exchange_lifetime: float = 3600.0
    install_root: str = DEFAULT_INSTALL_ROOT
    keep_releases: int = 3
    allow_http: bool = True
    require_signature: bool = False
    trusted_keys: tuple[str, ...] = ()
    download_timeout: float = 30.0
    max_download_size: int = 200 * 1024 * 1024
    ready_deadline: float = 20.0
    crash_limit: int = 3
    crash_window: float = 60.0
    probation: float = 5.0
    inject_keep_backups: bool = True
    inject_allowed_paths: tuple[str, ...] = ("*",)
    #: 1 MiB: far above what a XenStore request can carry, so it never refuses a real injection, while it
    #: bounds the memory and disk a larger channel or a mistake could take.
    inject_max_size: int = 1024 * 1024
    network_renderer: str = "auto"
    network_verify: str = "addresses"
    #: nova waits longer than this for the reply, so a rollback's "500" still reaches it.
    network_verify_timeout: float = 20.0
    crash_at: str = ""
    root: str = ""

    @property
    def state_path(self) -> Path:
        """The state directory, inside ``root`` when one is set."""
        return rooted(self.root, self.state_dir)

    @property
    def install_path(self) -> Path:
        """The install root, inside ``root`` when one is set."""
        return rooted(self.root, self.install_root)

    @property
    def trusted_key_paths(self) -> list[Path]:
        """The trusted release keys' files, inside ``root`` when one is set."""
        return [rooted(self.root, key) for key in self.trusted_keys]

    @property
    def xenstore_address(self) -> str:
        """The XenStore address with the environment default applied."""
        if self.xenstore:
            return self.xenstore
        socket_path = os.environ.get("XENSTORED_PATH")
        if socket_path:
            return f"unix:{socket_path}"
        return "wmi" if sys.platform == "win32" else "xenbus"

    def command_allowed(self, name: str) -> bool:
        """Whether policy lets this command run."""
        if name in self.deny:
            return False
        return not self.allow or name in self.allow


#: Keys a running agent cannot take on at SIGHUP: they name what it is connected to and where its state lives.
RESTART_ONLY = frozenset({"xenstore", "domain_path", "xenstore_timeout", "state_dir", "root", "install_root"})


def reloaded(current: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """``current`` with ``new``'s reloadable values; also the keys applied and those that need a restart, as
    ``section.key``."""
    changed = [f.name for f in dataclasses.fields(Config) if getattr(current, f.name) != getattr(new, f.name)]
    applied = [name for name in changed if name not in RESTART_ONLY]
    config = dataclasses.replace(current, **{name: getattr(new, name) for name in applied})
    return config, [_key(name) for name in applied], [_key(name) for name in changed if name in RESTART_ONLY]


BY_ATTR = {o.attr: o for o in OPTIONS}


def _key(attr: str) -> str:
    """A Config field as the operator writes it in the file: ``section.key``."""
    option = BY_ATTR.get(attr)
    return option.name if option else attr


def rooted(root: str, path: str | os.PathLike[str]) -> Path:
    """``path`` re-based inside ``root`` (unchanged when root is empty)."""
    p = Path(path)
    if not root:
        return p
    return Path(root) / p.relative_to(p.anchor)


#: What the flags' help says once about values with units.
UNITS_HELP = ("Durations are a number of seconds (of days for --retention-days) or a number with units: 250ms, 30s, "
              "5m, 1h30m, 2d. Sizes are a number of bytes or a number with a binary unit: 512B, 4KiB, 200MiB, "
              "1GiB (KB, MB and GB are refused: they mean 1000 to some and 1024 to others).")


def add_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """Add ``--config``, ``--root`` and one flag per configuration key (or those in ``only``), each flag's help
    ending with its key and default."""
    options = [o for o in OPTIONS if only is None or o.attr in only]
    group = parser.add_argument_group(
        "configuration (each flag overrides its key of the file)",
        UNITS_HELP if any(o.unit for o in options) else None)
    group.add_argument("--config", metavar="FILE",
                       help=f"TOML configuration file (default: {DEFAULT_CONFIG}, if it exists)")
    group.add_argument("--root", metavar="DIR",
                       help="act inside DIR: every file the agent touches and every tool it runs")
    defaults = Config()
    for option in options:
        default = option.show(getattr(defaults, option.attr)) or option.empty
        # argparse %-formats help texts.
        text = f"{option.help} [{option.name}; default {default}]".replace("%", "%%")
        group.add_argument(option.flag, dest=option.attr, metavar="VALUE", default=None, help=text)


def flags_of(args: argparse.Namespace) -> list[str]:
    """The configuration flags given in ``args``, as command-line arguments again (to pass them on)."""
    given = vars(args)
    flags = [f"--{name}={given[name]}" for name in ("config", "root") if given.get(name)]
    return flags + [f"{o.flag}={given[o.attr]}" for o in OPTIONS if given.get(o.attr) is not None]


#: The source of a value nothing set.
DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A Config and where each of its values came from."""

    config: Config
    #: The configuration file read, or (when ``file_read`` is false) the default path where none was found.
    file: Path
    file_read: bool
    #: The keys the file sets, as ``section.key``, in the file's order.
    file_keys: tuple[str, ...]
    #: Config field -> ``default``, the file's path, or ``flag --xyz``.
    sources: Mapping[str, str]


def load(args: argparse.Namespace | None = None, file: str | os.PathLike[str] | None = None) -> Config:
    """Build the Config: defaults, then the TOML file, then flags from ``args``."""
    return resolve(args, file).config


def resolve(args: argparse.Namespace | None = None, file: str | os.PathLike[str] | None = None) -> Resolved:
    """``load``, also saying where each value came from. Reads the file and nothing else: no directory is made
    and no other file opened, so it is safe on any machine."""
    flags = vars(args) if args is not None else {}
    root = flags.get("root") or ""
    explicit = file or flags.get("config")
    path = Path(explicit) if explicit else rooted(root, DEFAULT_CONFIG)
    values: dict[str, Any] = {"root": root}
    sources = {o.attr: DEFAULT for o in OPTIONS}
    read = bool(explicit) or path.exists()
    if read:
        values.update(_read_file(path))
        sources.update((attr, str(path)) for attr in values if attr != "root")
    file_keys = tuple(_key(attr) for attr in values if attr != "root")
    for option in OPTIONS:
        raw = flags.get(option.attr)
        if raw is not None:
            values[option.attr] = _convert(option, raw, f"flag {option.flag}")
            sources[option.attr] = f"flag {option.flag}"
    return Resolved(Config(**values), path, read, file_keys, sources)


def validate(config: Config, commands: Sequence[str], sources: Mapping[str, str] | None = None) -> None:
    """Check what one value alone cannot show: that policy names only ``commands`` (the agent's, from
    ``agent.machines.host_commands()``: this module sits below the machines and cannot ask them), and that the
    trusted key files exist (inside ``root``), can be read and hold public keys, and that a required signature
    has a key to check it with. ``sources`` (from ``resolve``) lets a message name the file or flag at fault.
    Raises ConfigError."""
    for attr in ("allow", "deny"):
        for name in getattr(config, attr):
            if name not in commands:
                close = difflib.get_close_matches(name, commands, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{_where(attr, sources)}: {name!r} is not a command of this agent{hint}; the "
                                  f"commands are {', '.join(commands)}")
    if config.require_signature and not config.trusted_keys:
        raise ConfigError(f"{_where('require_signature', sources)}: true, but update.trusted_keys names no key "
                          "file, so every release would be refused; list the public keys that sign releases in "
                          "update.trusted_keys (--trusted-keys), or set update.require_signature = false")
    for path in config.trusted_key_paths:
        _check_key_file(path, _where("trusted_keys", sources))


def _where(attr: str, sources: Mapping[str, str] | None) -> str:
    """Where a value came from, to open an error message: ``FILE: section.key``, ``flag --xyz`` or the key."""
    option = BY_ATTR[attr]
    source = (sources or {}).get(attr, DEFAULT)
    if source == DEFAULT:
        return option.name
    return source if source.startswith("flag ") else f"{source}: {option.name}"


def _check_key_file(path: Path, where: str) -> None:
    make = "openssl pkey -in release.pem -pubout -out release.pub"
    try:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
    except FileNotFoundError:
        raise ConfigError(f"{where}: the key file {path} does not exist; put the public key that signs releases "
                          f"there ({make}) or correct the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: {path} is a directory; name the key file (PEM) in it") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the key file {path} ({exc.strerror}); let the agent's user "
                          "read it") from None
    # Only the markers are looked at: the file could be a private key, whose text must not reach a message.
    if b"PRIVATE KEY-----" in head:
        raise ConfigError(f"{where}: {path} holds a private key; give the agent only the public half ({make}) and "
                          "keep the private key off the guest")
    if b"-----BEGIN PUBLIC KEY-----" not in head:
        raise ConfigError(f"{where}: {path} is not a PEM public key (no '-----BEGIN PUBLIC KEY-----' line); make "
                          f"one with {make}")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist; create it or drop --config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc

    by_place = {(o.section, o.key): o for o in OPTIONS}
    values: dict[str, Any] = {}
    for section, table in document.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{section}' must be a [section]; see the README for the layout")
        for key, raw in table.items():
            option = by_place.get((section, key))
            if option is None:
                close = difflib.get_close_matches(f"{section}.{key}", [o.name for o in OPTIONS], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{path}: unknown key {section}.{key}{hint}; 'openstack-agent run --help' lists "
                                  "every key")
            values[option.attr] = _convert(option, raw, f"{path}: {section}.{key}")
    return values


def _convert(option: Option, raw: Any, where: str) -> Any:
    try:
        return option.convert(raw)
    except Unreadable as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {raw!r} ({exc})") from exc


def from_overrides(**kwargs: Any) -> Config:
    """A Config from Python values, validated like flags (for tests and benchmarks)."""
    values: dict[str, Any] = {}
    for attr, raw in kwargs.items():
        option = BY_ATTR.get(attr)
        values[attr] = raw if option is None else _convert(option, raw, attr)
    return Config(**values)
