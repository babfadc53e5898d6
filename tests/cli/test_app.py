"""The command tree and its one error handler: errors name the problem and exit with its code."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.app import BROKEN_PIPE, GROUPS, build_parser
from tests.cli.conftest import run

COMMANDS = ["run", "supervise", "install", "uninstall", "service", "service install", "service remove",
            "service start", "service stop", "service run", "release", "release build", "release verify",
            "release deb", "release rpm", "status", "config", "config check", "config show", "journal",
            "journal list", "journal show", "journal timing", "journal export", "journal verify", "collect-logs",
            "host", "host version", "host features", "host call", "host password", "host injectfile",
            "host resetnetwork", "host kmsactivate", "host raw", "network", "network render", "sandbox", "diagram"]


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[str]:
    """Every subcommand below ``parser``, in the order its help lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{prefix}{name}"
                yield from subcommands(child, f"{prefix}{name} ")


def test_the_command_tree() -> None:
    """Each group registers its subcommands, and the tree comes out in the order --help lists."""
    assert list(subcommands(build_parser())) == COMMANDS


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_adds_the_commands_its_entry_names(group: str) -> None:
    """GROUPS names, for each module, exactly the top-level commands it registers (what the lazy tree loads)."""
    parser = argparse.ArgumentParser()
    __import__(f"agent.cli.{group}", fromlist=["register"]).register(parser.add_subparsers())
    assert tuple(name for name in subcommands(parser) if " " not in name) == GROUPS[group]


@pytest.mark.parametrize(("argv", "group"), [(["journal", "show", "1"], "journal"), (["run", "--help"], "service"),
                                             (["--version", "status"], "status")])
def test_a_named_command_loads_its_group_alone(argv: list[str], group: str) -> None:
    """A command line naming a command imports that command's group and no other (journal show's speed)."""
    script = ("import sys; from agent.cli.app import build_parser; build_parser(sys.argv[1:]); "
              "print(sorted(m for m in sys.modules if m.startswith('agent.cli.') and m not in "
              "('agent.cli.app', 'agent.cli.output')))")
    loaded = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == repr([f"agent.cli.{group}"])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """'<command> --help' prints that command's usage and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main([*command.split(), "--help"], io.StringIO())
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: openstack-agent {command} [-h]")


@pytest.mark.parametrize("argv", [[], ["journal"]])
def test_no_command_prints_the_help(argv: list[str]) -> None:
    """Without a command (or a journal action), the help is printed and the exit code is 2."""
    code, out = run(*argv)
    assert code == 2
    assert out.startswith("usage: openstack-agent [-h] [--version] COMMAND ...\n")
    assert "    journal     inspect the journal\n" in out


ERRORS = [
    pytest.param(["journal", "list", "--state-dir", "{tmp}/none"], 4, "Error: no journal at {tmp}/none/journal"
                 ".sqlite3; has the agent run here? Point --state-dir", id="no-journal"),
    pytest.param(["journal", "show", "99", "--state-dir", "{journal}"], 6,
                 "Error: no command 99 and no request id '99' in the journal; 'openstack-agent journal list' shows "
                 "the command ids and request ids", id="no-id"),
    pytest.param(["run", "--config", "{tmp}/missing.toml"], 2,
                 "Error: configuration file {tmp}/missing.toml does not exist", id="no-config"),
    pytest.param(["run", "--max-attempts", "zero"], 2, "Error: flag --max-attempts: invalid value 'zero'",
                 id="bad-flag"),
    pytest.param(["diagram", "reboot"], 1, "Error: no machine named 'reboot'", id="no-machine"),
]


@pytest.mark.parametrize(("argv", "code", "message"), ERRORS)
def test_errors_name_the_problem_and_exit_with_its_code(
        journal_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
        message: str) -> None:
    """Failures print one 'Error: ...' line naming what failed and the fix, with a meaningful code."""
    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, journal=journal_dir)

    assert main([fill(a) for a in argv], io.StringIO()) == code
    assert capsys.readouterr().err.startswith(fill(message))


def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key in the TOML file is named with its section."""
    config = tmp_path / "agent.toml"
    config.write_text('[policy]\nalow = ["version"]\n')
    assert main(["run", "--config", str(config)], io.StringIO()) == 2
    assert "unknown key policy.alow" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    pytest.param(["diagram", "resetnetwork"], id="diagram"),
    pytest.param(["journal", "export", "--state-dir", "{journal}"], id="journal-export"),
    pytest.param(["--help"], id="help"),
])
def test_output_to_a_closed_pipe_ends_quietly(journal_dir: Path, argv: list[str]) -> None:
    """Output into a pipe whose reader has gone (as after '| head') exits 141 with nothing on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte is written
    try:
        result = subprocess.run([sys.executable, "-m", "agent", *(a.format(journal=journal_dir) for a in argv)],
                                stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr.decode()) == (BROKEN_PIPE, "")


def _usage(*command: str) -> str:
    """The usage line argparse prints for ``command``, as wrapped at 80 columns."""
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser.format_usage()


def _choices(*command: str) -> str:
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return ", ".join(repr(name) for name in action.choices)


HOST_USAGE = ("usage: openstack-agent host [-h] [--xenstore ADDRESS] --domain-path PATH\n"
              "                            [--timeout SECONDS] [--json]\n"
              "                            CALL ...\n")


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param(["run", "--state-dirr", "x"], lambda: _usage("run") + "openstack-agent run: error: unrecognized "
                 "arguments: --state-dirr x; did you mean --state-dir?\n", id="option"),
    pytest.param(["hots"], lambda: _usage() + f"openstack-agent: error: argument COMMAND: invalid choice: 'hots' "
                 f"(choose from {_choices()}); did you mean 'host'?\n", id="command"),
    pytest.param(["host", "--domain-path", "/local/domain/5", "versoin"], lambda: HOST_USAGE + (
        "openstack-agent host: error: argument CALL: invalid choice: 'versoin' (choose from 'version', 'features', "
        "'call', 'password', 'injectfile', 'resetnetwork', 'kmsactivate', 'raw'); did you mean 'version'?\n"),
        id="call"),
    pytest.param(["host", "--domain-path", "/local/domain/5", "version", "--jsn"], lambda: (
        "usage: openstack-agent host version [-h]\nopenstack-agent host version: error: unrecognized arguments: "
        "--jsn; did you mean --json? 'openstack-agent host' takes it, before its subcommand\n"), id="parent-option"),
    pytest.param(["host", "--domain-path", "/local/domain/5", "version", "--json"], lambda: (
        "usage: openstack-agent host version [-h]\nopenstack-agent host version: error: unrecognized arguments: "
        "--json; 'openstack-agent host' takes --json, before its subcommand\n"), id="parent-option-after"),
    pytest.param(["diagram", "version", "--foo"], lambda: (
        "usage: openstack-agent diagram [-h] [MACHINE]\nopenstack-agent diagram: error: unrecognized arguments: "
        "--foo\n"), id="no-close-match"),
])
def test_usage_errors_show_the_subcommand_and_a_suggestion(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str],
        expected: Callable[[], str]) -> None:
    """A refused command line shows the meant subcommand's usage and a "did you mean", and exits 2."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exited:
        main(argv, io.StringIO())
    assert exited.value.code == 2
    assert capsys.readouterr().err == expected()
