"""One Config object, built from the TOML file and then the command-line flags.

Every key of the file is also a flag: the table ``OPTIONS`` below is the single list of both, and the CLI
generates its flags from it. A flag given on the command line wins over the file, the file over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows images only
    _BASE = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "OpenStackAgent"
    DEFAULT_CONFIG = _BASE / "agent.toml"
    DEFAULT_STATE_DIR = str(_BASE)
else:
    DEFAULT_CONFIG = Path("/etc/openstack-agent/agent.toml")
    DEFAULT_STATE_DIR = "/var/lib/openstack-agent"

FAULT_POINTS = (
    "before_received",
    "after_received",
    "in_machine",
    "after_reply_journaled",
    "after_reply_written",
    "after_request_deleted",
    "after_replied",
)


def _names(value: Any) -> tuple[str, ...]:
    """A comma list (flag) or a list of strings (file): command names, key files."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError("expected a list of command names")
    return tuple(v for v in items if v)


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


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        number = kind(value)
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        if number <= 0:
            raise ValueError("must be greater than zero")
        return number

    return convert


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

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("xenstore", "xenstore", "address", str,
           "XenStore to use: 'unix:PATH' (xenstored's socket; the default when XENSTORED_PATH is set) "
           "or 'xenbus[:PATH]' (the default in a guest)"),
    Option("domain_path", "xenstore", "domain_path", str,
           "domain home such as /local/domain/5 (dom0, sandbox, tests); empty means relative paths"),
    Option("xenstore_timeout", "xenstore", "timeout", _positive(float),
           "seconds a XenStore call may take before the connection is treated as dead"),
    Option("state_dir", "journal", "state_dir", str, "directory holding the journal database"),
    Option("retention_days", "journal", "retention_days", _positive(float),
           "days finished commands are kept in the journal"),
    Option("keep_min", "journal", "keep_min", _positive(int),
           "the newest commands retention always keeps, whatever the clock says"),
    Option("max_commands", "journal", "max_commands", _positive(int),
           "most commands the journal holds: past it the oldest finished ones are pruned (bounds its disk use)"),
    Option("allow", "policy", "allow", _names,
           "comma list of commands this agent runs (empty: every implemented command)"),
    Option("deny", "policy", "deny", _names, "comma list of commands this agent refuses"),
    Option("reply_max_age", "replies", "max_age", _positive(float),
           "seconds after which the agent removes its own replies from data/guest"),
    Option("max_attempts", "recovery", "max_attempts", _positive(int),
           "times a command may be started (first run plus recoveries) before it is failed"),
    Option("log_level", "daemon", "log_level", _log_level, "debug, info, warning or error"),
    Option("log_file", "daemon", "log_file", str,
           "file to log to instead of stderr (created 0600; reopened on SIGHUP, for logrotate)"),
    Option("housekeeping_interval", "daemon", "housekeeping_interval", _positive(float),
           "seconds between reply garbage collection and journal retention runs"),
    Option("shutdown_timeout", "daemon", "shutdown_timeout", _positive(float),
           "seconds the daemon waits for a clean shutdown before it exits anyway"),
    Option("password_user", "password", "user", str,
           "account whose password 'password' sets (default: root; on Windows the built-in administrator, "
           "found by its RID 500)"),
    Option("exchange_lifetime", "password", "exchange_lifetime", _positive(float),
           "seconds a keyinit exchange stays usable; then its secret is wiped"),
    Option("install_root", "update", "install_root", str,
           "where releases live: releases/<version>/ plus the current and previous links"),
    Option("keep_releases", "update", "keep_releases", _positive(int),
           "releases kept on disk (current and previous are never removed)"),
    Option("allow_http", "update", "allow_http", _bool, "whether agentupdate may download over plain http"),
    Option("require_signature", "update", "require_signature", _bool,
           "whether a release must carry an Ed25519 signature from a trusted key"),
    Option("trusted_keys", "update", "trusted_keys", _names,
           "comma list of PEM files holding the Ed25519 public keys that may sign releases"),
    Option("download_timeout", "update", "download_timeout", _positive(float),
           "seconds a download may stall (connecting or between reads)"),
    Option("max_download_size", "update", "max_download_size", _positive(int),
           "largest release bundle, in bytes, that agentupdate downloads"),
    Option("ready_deadline", "update", "ready_deadline", _positive(float),
           "seconds a new release has to signal ready under the supervisor before it is rolled back"),
    Option("crash_limit", "update", "crash_limit", _positive(int),
           "crashes of a new release within crash_window after which it is marked bad and rolled back"),
    Option("crash_window", "update", "crash_window", _positive(float), "seconds over which crashes are counted"),
    Option("probation", "update", "probation", _positive(float),
           "seconds a new release must stay up after signalling ready before the update is committed"),
    Option("inject_keep_backups", "inject", "keep_backups", _bool,
           "whether a file injection keeps the file it replaces beside it, as <name>.bak.<UTC time>"),
    Option("inject_allowed_paths", "inject", "allowed_paths", _globs,
           "comma list of globs a file injection's absolute path must match (fnmatch: * also matches /, so "
           "/root/.ssh/* covers everything below it); default * allows every path, an empty list none"),
    Option("inject_max_size", "inject", "max_size", _positive(int),
           "largest file, in bytes, a file injection writes (a XenStore request carries under 4 KiB)"),
    Option("network_renderer", "network", "renderer", _one_of(NETWORK_STACKS),
           "network stack resetnetwork configures: auto (found from what the image has), ifupdown, netplan, "
           "networkd, networkmanager, sysconfig or freebsd"),
    Option("network_verify", "network", "verify", _one_of(NETWORK_CHECKS),
           "what resetnetwork checks before it answers: addresses (every interface has its addresses and the "
           "default routes are in place) or gateway (also, each default gateway answers a ping)"),
    Option("network_verify_timeout", "network", "verify_timeout", _positive(float),
           "seconds resetnetwork waits for the check to pass before it rolls the change back"),
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
    log_file: str = ""
    housekeeping_interval: float = 300.0
    shutdown_timeout: float = 10.0
    password_user: str = ""
    exchange_lifetime: float = 3600.0
    install_root: str = "/opt/openstack-agent"
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
        return f"unix:{socket_path}" if socket_path else "xenbus"

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


def _key(attr: str) -> str:
    """A Config field as the operator writes it in the file: ``section.key``."""
    option = next((o for o in OPTIONS if o.attr == attr), None)
    return f"{option.section}.{option.key}" if option else attr


def rooted(root: str, path: str | os.PathLike[str]) -> Path:
    """``path`` re-based inside ``root`` (unchanged when root is empty)."""
    p = Path(path)
    if not root:
        return p
    return Path(root) / p.relative_to(p.anchor)


def add_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """Add ``--config``, ``--root`` and one flag per configuration key (or those in ``only``)."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML configuration file (default: {DEFAULT_CONFIG}, if it exists)")
    parser.add_argument("--root", metavar="DIR",
                        help="act inside DIR: every file the agent touches and every tool it runs")
    for option in OPTIONS:
        if only is not None and option.attr not in only:
            continue
        parser.add_argument(option.flag, dest=option.attr, metavar="VALUE", default=None,
                            help=f"{option.help} [{option.section}.{option.key}]")


def flags_of(args: argparse.Namespace) -> list[str]:
    """The configuration flags given in ``args``, as command-line arguments again (to pass them on)."""
    given = vars(args)
    flags = [f"--{name}={given[name]}" for name in ("config", "root") if given.get(name)]
    return flags + [f"{o.flag}={given[o.attr]}" for o in OPTIONS if given.get(o.attr) is not None]


def load(args: argparse.Namespace | None = None, file: str | os.PathLike[str] | None = None) -> Config:
    """Build the Config: defaults, then the TOML file, then flags from ``args``."""
    flags = vars(args) if args is not None else {}
    root = flags.get("root") or ""
    explicit = file or flags.get("config")
    path = Path(explicit) if explicit else rooted(root, DEFAULT_CONFIG)
    values: dict[str, Any] = {"root": root}
    if explicit or path.exists():
        values.update(_read_file(path))
    for option in OPTIONS:
        raw = flags.get(option.attr)
        if raw is not None:
            values[option.attr] = _convert(option, raw, f"flag {option.flag}")
    return Config(**values)


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
                raise ConfigError(f"{path}: unknown key {section}.{key}; see 'openstack-agent run --help'")
            values[option.attr] = _convert(option, raw, f"{path}: {section}.{key}")
    return values


def _convert(option: Option, raw: Any, where: str) -> Any:
    try:
        return option.convert(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {raw!r} ({exc})") from exc


def from_overrides(**kwargs: Any) -> Config:
    """A Config from Python values, validated like flags (for tests and benchmarks)."""
    values: dict[str, Any] = {}
    by_attr = {o.attr: o for o in OPTIONS}
    for attr, raw in kwargs.items():
        option = by_attr.get(attr)
        values[attr] = raw if option is None else _convert(option, raw, attr)
    return Config(**values)
