"""Configuration: defaults, the TOML file, flags over the file, and --root."""

from __future__ import annotations

import argparse
import re
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
    ("[inject]\nmax_size = 'big'\n", "inject.max_size: invalid value 'big'"),
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
