"""Configuration: defaults, the TOML file, flags over the file, and --root."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    return parser.parse_args(list(argv))


def test_every_key_has_a_flag() -> None:
    """Each configuration key of the file can also be given as a flag."""
    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    assert {o.flag for o in config.OPTIONS} <= flags


def test_flags_override_the_file(tmp_path: Path) -> None:
    """Defaults, then the file, then flags: a flag wins over the file."""
    file = tmp_path / "agent.toml"
    file.write_text('[policy]\ndeny = ["features"]\n[replies]\nmax_age = 60\n[recovery]\nmax_attempts = 5\n')
    settings = config.load(parse("--config", str(file), "--max-attempts", "2"))
    assert settings.deny == ("features",)
    assert settings.reply_max_age == 60.0
    assert settings.max_attempts == 2
    assert settings.retention_days == 90.0


def test_root_rebases_the_state_directory(tmp_path: Path) -> None:
    """--root DIR puts every file the agent touches inside DIR."""
    settings = config.load(parse("--root", str(tmp_path)))
    assert settings.state_path == tmp_path / "var/lib/openstack-agent"


def test_default_config_is_read_inside_root(tmp_path: Path) -> None:
    """Under --root, the default configuration file is the one inside the root."""
    (tmp_path / "etc/openstack-agent").mkdir(parents=True)
    (tmp_path / "etc/openstack-agent/agent.toml").write_text('[policy]\nallow = ["version"]\n')
    assert config.load(parse("--root", str(tmp_path))).allow == ("version",)


@pytest.mark.parametrize(("text", "message"), [
    ("not toml [", "is not valid TOML"),
    ("[policy]\nallow = 3\n", "policy.allow: invalid value 3"),
    ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level: invalid value 'loud'"),
    ("[testing]\ncrash_at = 'anywhere'\n", "testing.crash_at: invalid value 'anywhere'"),
    ("[xenstore]\ntimeout = -1\n", "must be greater than zero"),
    ("[daemon]\nhousekeeping_interval = nan\n", "daemon.housekeeping_interval: invalid value nan (must be a finite"),
    ("[password]\nexchange_lifetime = inf\n", "password.exchange_lifetime: invalid value inf (must be a finite"),
    ("[update]\nallow_http = 'maybe'\n", "update.allow_http: invalid value 'maybe' (expected true or false)"),
    ("[testing]\ncrash_at = 'service:nowhere'\n", "testing.crash_at: invalid value 'service:nowhere'"),
    ("policy = 1\n", "'policy' must be a [section]"),
])
def test_bad_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    """A bad file names the file, then the key and what is wrong with it."""
    file = tmp_path / "agent.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=f"{re.escape(str(file))}.*{re.escape(message)}"):
        config.load(parse("--config", str(file)))


def test_policy() -> None:
    """Deny wins over allow; an empty allow list allows every command."""
    assert config.Config().command_allowed("version")
    assert not config.Config(deny=("version",)).command_allowed("version")
    assert not config.Config(allow=("features",)).command_allowed("version")
    assert not config.Config(allow=("version",), deny=("version",)).command_allowed("version")


def test_xenstore_address_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """With XENSTORED_PATH set the default is its socket; in a guest it is xenbus."""
    monkeypatch.setenv("XENSTORED_PATH", "/run/x/socket")
    assert config.Config().xenstore_address == "unix:/run/x/socket"
    monkeypatch.delenv("XENSTORED_PATH")
    assert config.Config().xenstore_address == "xenbus"


def test_update_and_password_keys(tmp_path: Path) -> None:
    """The [update] and [password] sections load; booleans and key lists come from the file or flags."""
    file = tmp_path / "agent.toml"
    file.write_text('[update]\nallow_http = false\ntrusted_keys = ["/etc/openstack-agent/a.pub"]\n'
                    '[password]\nuser = "cloud"\nexchange_lifetime = 600\n')
    settings = config.load(parse("--config", str(file), "--require-signature", "yes", "--root", str(tmp_path)))
    assert (settings.allow_http, settings.require_signature) == (False, True)
    assert settings.trusted_keys == ("/etc/openstack-agent/a.pub",)
    assert (settings.password_user, settings.exchange_lifetime) == ("cloud", 600.0)
    assert settings.install_path == tmp_path / "opt/openstack-agent"


@pytest.mark.parametrize("point", ["after_received", "enter:applying", "service:enter:confirming"])
def test_fault_points(point: str) -> None:
    """Fault injection names a reply-protocol step or a state, optionally for the whole service."""
    assert config.from_overrides(crash_at=point).crash_at == point


def test_flags_are_passed_on_as_given(tmp_path: Path) -> None:
    """The supervisor hands the agent exactly the configuration flags it was given."""
    args = parse("--root", str(tmp_path), "--probation", "2", "--deny", "features")
    assert config.flags_of(args) == [f"--root={tmp_path}", "--deny=features", "--probation=2"]


def test_inject_defaults() -> None:
    """File injection keeps backups, allows every path and writes files up to 1 MiB unless told otherwise."""
    settings = config.Config()
    assert settings.inject_keep_backups is True
    assert settings.inject_allowed_paths == ("*",)
    assert settings.inject_max_size == 1024 * 1024


def test_inject_keys_from_file_and_flags(tmp_path: Path) -> None:
    """[inject] loads from the file; flags (a comma list of globs) win over it; an empty list allows no path."""
    file = tmp_path / "agent.toml"
    file.write_text('[inject]\nkeep_backups = false\nallowed_paths = ["/root/.ssh/*", "/etc/motd"]\n'
                    "max_size = 4096\n")
    settings = config.load(parse("--config", str(file)))
    assert settings.inject_keep_backups is False
    assert settings.inject_allowed_paths == ("/root/.ssh/*", "/etc/motd")
    assert settings.inject_max_size == 4096
    flagged = config.load(parse("--config", str(file), "--inject-keep-backups", "yes", "--inject-max-size", "10",
                                "--inject-allowed-paths", "/etc/*, */authorized_keys"))
    assert flagged.inject_keep_backups is True
    assert flagged.inject_allowed_paths == ("/etc/*", "*/authorized_keys")
    assert flagged.inject_max_size == 10
    assert config.load(parse("--root", str(tmp_path), "--inject-allowed-paths", "")).inject_allowed_paths == ()


@pytest.mark.parametrize(("text", "message"), [
    ("[inject]\nmax_size = 0\n", "inject.max_size: invalid value 0 (must be greater than zero)"),
    ("[inject]\nmax_size = -1\n", "inject.max_size: invalid value -1 (must be greater than zero)"),
    ("[inject]\nmax_size = true\n", "inject.max_size: invalid value True (expected a number)"),
    ("[inject]\nmax_size = 'big'\n", "inject.max_size: 'big' is not a size; write bytes as a number (1048576) or "
                                   "with a unit (4KiB, 200MiB, 1GiB)"),
    ("[inject]\nallowed_paths = 3\n", "inject.allowed_paths: invalid value 3 (expected a list of path globs)"),
    ("[inject]\nallowed_paths = ['etc/*']\n", "'etc/*' can never match an absolute path"),
    ("[inject]\nkeep_backups = 'maybe'\n", "inject.keep_backups: invalid value 'maybe' (expected true or false)"),
])
def test_bad_inject_keys(tmp_path: Path, text: str, message: str) -> None:
    """A bad [inject] value names the file, the key and what is wrong with it."""
    file = tmp_path / "agent.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as error:
        config.load(parse("--config", str(file)))
    assert message in str(error.value)
    assert str(file) in str(error.value)


def test_inject_keys_reload() -> None:
    """The [inject] keys take effect at SIGHUP, without a restart."""
    new = config.from_overrides(inject_max_size=2048, inject_allowed_paths="/etc/*", inject_keep_backups=False)
    current, applied, restart = config.reloaded(config.Config(), new)
    assert sorted(applied) == ["inject.allowed_paths", "inject.keep_backups", "inject.max_size"]
    assert restart == []
    assert (current.inject_max_size, current.inject_allowed_paths) == (2048, ("/etc/*",))


@pytest.mark.parametrize(("text", "attr", "value"), [
    ('[update]\ndownload_timeout = "250ms"\n', "download_timeout", 0.25),
    ('[update]\ndownload_timeout = "10s"\n', "download_timeout", 10.0),
    ('[update]\ndownload_timeout = "5m"\n', "download_timeout", 300.0),
    ('[replies]\nmax_age = "1h30m"\n', "reply_max_age", 5400.0),
    ('[password]\nexchange_lifetime = "2d"\n', "exchange_lifetime", 172800.0),
    ('[xenstore]\ntimeout = 2.5\n', "xenstore_timeout", 2.5),
    ('[xenstore]\ntimeout = "7"\n', "xenstore_timeout", 7.0),
    ('[journal]\nretention_days = "12h"\n', "retention_days", 0.5),
    ('[journal]\nretention_days = 30\n', "retention_days", 30.0),
    ('[update]\nmax_download_size = "200MiB"\n', "max_download_size", 200 * 1024 * 1024),
    ('[update]\nmax_download_size = "1GiB"\n', "max_download_size", 1024**3),
    ('[inject]\nmax_size = "1 MiB"\n', "inject_max_size", 1024 * 1024),
    ('[inject]\nmax_size = "4KiB"\n', "inject_max_size", 4096),
    ('[inject]\nmax_size = "1.5KiB"\n', "inject_max_size", 1536),
    ('[inject]\nmax_size = "512B"\n', "inject_max_size", 512),
    ('[inject]\nmax_size = 4096\n', "inject_max_size", 4096),
    ('[recovery]\nmax_attempts = "4"\n', "max_attempts", 4),
])
def test_values_with_units(tmp_path: Path, text: str, attr: str, value: float) -> None:
    """Durations and sizes take a plain number (seconds, days for retention, bytes) or a number with units."""
    file = tmp_path / "agent.toml"
    file.write_text(text)
    assert getattr(config.load(parse("--config", str(file))), attr) == value


@pytest.mark.parametrize(("flag", "raw", "attr", "value"), [
    ("--download-timeout", "1m", "download_timeout", 60.0),
    ("--probation", "500ms", "probation", 0.5),
    ("--max-download-size", "64MiB", "max_download_size", 64 * 1024 * 1024),
    ("--retention-days", "7d", "retention_days", 7.0),
])
def test_flags_take_units(flag: str, raw: str, attr: str, value: float) -> None:
    """A flag takes the same words as the file."""
    assert getattr(config.load(parse(flag, raw)), attr) == value


BAD_UNITS = [
    ('[update]\ndownload_timeout = "10 seconds"\n', "update.download_timeout: '10 seconds' is not a duration; write "
     "seconds as a number (30) or with a unit (500ms, 30s, 5m, 1h)"),
    ('[journal]\nretention_days = "a month"\n', "journal.retention_days: 'a month' is not a duration; write days as "
     "a number (90) or with a unit (12h, 7d, 90d)"),
    ('[update]\nmax_download_size = "200MB"\n', "update.max_download_size: '200MB' is ambiguous (MB is 1000 to some "
     "and 1024 to others); write 200MiB (1024-based) or a number of bytes"),
    ('[inject]\nmax_size = "4k"\n', "inject.max_size: '4k' is ambiguous (k is 1000 to some and 1024 to others); "
     "write 4KiB (1024-based) or a number of bytes"),
    ('[inject]\nmax_size = "1.5B"\n', "inject.max_size: '1.5B' is not a whole number of bytes; write bytes as a "
     "number (1048576) or with a unit (4KiB, 200MiB, 1GiB)"),
    ('[inject]\nmax_size = "1 PB"\n', "inject.max_size: '1 PB' is not a size; write bytes"),
    ('[update]\ndownload_timeout = "0s"\n', "update.download_timeout: invalid value '0s' (must be greater than zero)"),
    ('[update]\ndownload_timeout = "-5"\n', "update.download_timeout: invalid value '-5' (must be greater than zero)"),
    ("[recovery]\nmax_attempts = 2.5\n", "recovery.max_attempts: invalid value 2.5 (expected a whole number such as "
     "3)"),
    ('[recovery]\nmax_attempts = "two"\n', "recovery.max_attempts: invalid value 'two' (expected a whole number "
     "such as 3)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_UNITS)
def test_bad_units_are_named_in_the_operators_words(tmp_path: Path, text: str, message: str) -> None:
    """A value that is not a duration, size or count names the file, the key, the value and the fix, never
    Python's conversion wording."""
    file = tmp_path / "agent.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as error:
        config.load(parse("--config", str(file)))
    assert str(error.value).startswith(f"{file}: {message}")
    assert "could not convert" not in str(error.value) and "invalid literal" not in str(error.value)


def test_a_bad_flag_names_the_flag() -> None:
    """A flag's bad duration names the flag, the value and the fix."""
    with pytest.raises(ConfigError, match=r"^flag --shutdown-timeout: '10 secs' is not a duration; write seconds"):
        config.load(parse("--shutdown-timeout", "10 secs"))


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (30.0, "30s"), (60.0, "1m"), (5400.0, "1h30m"), (1.5, "1.5s"), (90 * 86400.0, "90d")])
def test_durations_are_shown_as_written(seconds: float, text: str) -> None:
    """A duration is shown in the units an operator writes, and reads back as the same value."""
    assert config.format_duration(seconds) == text
    assert config.from_overrides(probation=text).probation == seconds


@pytest.mark.parametrize(("size", "text"), [(1024, "1KiB"), (200 * 1024**2, "200MiB"), (1024**3, "1GiB"),
                                            (1000, "1000B")])
def test_sizes_are_shown_as_written(size: int, text: str) -> None:
    """A size is shown in the largest binary unit that holds it whole, and reads back as the same value."""
    assert config.format_size(size) == text
    assert config.from_overrides(inject_max_size=text).inject_max_size == size


def test_unknown_key_suggests_the_near_one(tmp_path: Path) -> None:
    """An unknown key in the file names a close known key."""
    file = tmp_path / "agent.toml"
    file.write_text('[update]\ndownload_timout = 5\n')
    with pytest.raises(ConfigError, match=re.escape("unknown key update.download_timout (did you mean "
                                                    "update.download_timeout?)")):
        config.load(parse("--config", str(file)))


def test_help_shows_each_default_and_unit() -> None:
    """Each flag's help ends with its key and its default in the operator's units."""
    parser = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=1000))
    config.add_flags(parser)
    text = parser.format_help()
    for expected in ["seconds a download may stall (connecting or between reads) [update.download_timeout; "
                     "default 30s]",
                     "largest release bundle agentupdate downloads, in bytes [update.max_download_size; default "
                     "200MiB]",
                     "[journal.retention_days; default 90d]", "[inject.max_size; default 1MiB]",
                     "[policy.allow; default every command]", "[daemon.log_file; default stderr]",
                     "Durations are a number of seconds (of days for --retention-days) or a number with units"]:
        assert expected in text
    assert text.count("; default ") == len(config.OPTIONS)


COMMANDS = ["version", "features", "password", "keyinit"]


def keys_dir(root: Path) -> Path:
    keys = root / "etc/openstack-agent"
    keys.mkdir(parents=True, exist_ok=True)
    return keys


@pytest.mark.parametrize(("flags", "message"), [
    (["--allow", "version,verison"], "flag --allow: 'verison' is not a command of this agent (did you mean "
     "'version'?); the commands are version, features, password, keyinit"),
    (["--deny", "reboot"], "flag --deny: 'reboot' is not a command of this agent; the commands are version, "
     "features, password, keyinit"),
    (["--require-signature", "true"], "flag --require-signature: true, but update.trusted_keys names no key file, "
     "so every release would be refused; list the public keys"),
    (["--trusted-keys", "/etc/openstack-agent/missing.pub"], "flag --trusted-keys: the key file "
     "{root}/etc/openstack-agent/missing.pub does not exist; put the public key that signs releases there"),
    (["--trusted-keys", "/etc/openstack-agent"], "flag --trusted-keys: {root}/etc/openstack-agent is a directory; "
     "name the key file (PEM) in it"),
    (["--trusted-keys", "/etc/openstack-agent/private.pem"], "flag --trusted-keys: "
     "{root}/etc/openstack-agent/private.pem holds a private key; give the agent only the public half"),
    (["--trusted-keys", "/etc/openstack-agent/notes.txt"], "flag --trusted-keys: "
     "{root}/etc/openstack-agent/notes.txt is not a PEM public key (no '-----BEGIN PUBLIC KEY-----' line)"),
])
def test_validate_refuses_what_the_agent_cannot_use(tmp_path: Path, flags: list[str], message: str) -> None:
    """Unknown command names in policy, a required signature without keys, and key files that are missing, a
    directory, private or not PEM are refused, naming the flag or key, the name or file and the fix."""
    keys = keys_dir(tmp_path)
    (keys / "private.pem").write_text("-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n")
    (keys / "notes.txt").write_text("not a key\n")
    resolved = config.resolve(parse("--root", str(tmp_path), *flags))
    with pytest.raises(ConfigError) as error:
        config.validate(resolved.config, COMMANDS, resolved.sources)
    assert str(error.value).startswith(message.format(root=tmp_path))
    assert "MC4CAQAw" not in str(error.value)


def test_validate_names_the_file_a_value_came_from(tmp_path: Path) -> None:
    """With the sources from resolve, a validation error names the file and the key."""
    file = tmp_path / "agent.toml"
    file.write_text('[policy]\ndeny = ["pasword"]\n')
    resolved = config.resolve(parse("--config", str(file)))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(file))}: policy.deny: 'pasword' is not a command of "
                                          "this agent \\(did you mean 'password'\\?\\)"):
        config.validate(resolved.config, COMMANDS, resolved.sources)


def test_validate_accepts_real_keys_inside_root(tmp_path: Path) -> None:
    """Known command names and readable public key files inside --root pass."""
    keys = keys_dir(tmp_path)
    (keys / "release.pub").write_text("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")
    settings = config.load(parse("--root", str(tmp_path), "--allow", "version,features", "--deny", "password",
                                 "--require-signature", "yes", "--trusted-keys", "/etc/openstack-agent/release.pub"))
    config.validate(settings, COMMANDS)


def test_validate_without_sources_names_the_key() -> None:
    """Without sources (the daemon's call), a validation error names the key."""
    with pytest.raises(ConfigError, match=r"^policy\.allow: 'verison' is not a command of this agent"):
        config.validate(config.Config(allow=("verison",)), COMMANDS)


def test_resolve_says_where_each_value_came_from(tmp_path: Path) -> None:
    """Each value's source is the default, the file or the flag that set it; the file's keys keep its order."""
    file = tmp_path / "agent.toml"
    file.write_text('[update]\nprobation = "10s"\n[daemon]\nlog_level = "debug"\n')
    resolved = config.resolve(parse("--config", str(file), "--log-level", "error"))
    assert (resolved.file, resolved.file_read) == (file, True)
    assert resolved.file_keys == ("update.probation", "daemon.log_level")
    assert resolved.sources["probation"] == str(file)
    assert resolved.sources["log_level"] == "flag --log-level"
    assert resolved.sources["max_attempts"] == "default"
    assert (resolved.config.probation, resolved.config.log_level) == (10.0, "error")


def test_no_file_at_the_default_path_means_defaults(tmp_path: Path) -> None:
    """The configuration file is optional: with none at the default path (inside --root), every value is its
    default and nothing is created."""
    resolved = config.resolve(parse("--root", str(tmp_path)))
    assert resolved.file == tmp_path / "etc/openstack-agent/agent.toml"
    assert not resolved.file_read and resolved.file_keys == ()
    assert set(resolved.sources.values()) == {"default"}
    assert resolved.config == config.Config(root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("platform", "environment", "expected"), [
    ("linux", {}, ("/var/lib/openstack-agent", "/opt/openstack-agent")),
    ("win32", {"PROGRAMDATA": "D:\\Data"}, ("D:\\Data/OpenStackAgent", "D:\\Data/OpenStackAgent")),
])
def test_the_install_root_defaults_per_system(monkeypatch: pytest.MonkeyPatch, platform: str,
                                              environment: dict[str, str], expected: tuple[str, str]) -> None:
    """On Windows the releases default to the state directory under %ProgramData% (which the agent keeps for
    SYSTEM and Administrators alone); elsewhere to /opt/openstack-agent. The module is loaded afresh for the
    system, the agent's own left as it is (paths joined by this system's separator)."""
    import importlib.util

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.platform", platform)
    spec = importlib.util.spec_from_file_location("config_for_another_system", config.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert (module.Config().state_dir, module.Config().install_root) == expected
