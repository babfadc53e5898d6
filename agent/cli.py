"""The ``openstack-agent`` command line.

    run        the guest agent daemon
    supervise  the service's process: runs the current release's agent, restarts it, rolls updates back
    install    install a release bundle and make it current
    release    build and verify release bundles
    journal    list, show, export and verify the journal
    host       call the agent as nova's dom0 plugin does (version, features, password, raw requests)
    sandbox    a real xenstored plus the agent on this machine, for trying it out
    diagram    the state diagram of a command's machine (mermaid)

Every error reaches one handler that prints ``Error: ...`` (what failed and the fix) and exits with the
error's code: 2 configuration, 3 XenStore, 4 journal, 5 journal verification, 6 no such command,
7 host call, 8 sandbox, 9 platform, 10 release, 11 another agent or supervisor serves the state directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent import __version__, config, crypto, faults, logs, render
from agent.errors import AgentError, HostCallError, JournalError, RestartRequested

if TYPE_CHECKING:
    from agent.host import Host

log = logging.getLogger("agent")

LIST_COLUMNS = ("id", "request_id", "name", "state", "reply_code", "attempts", "received_at", "replied_at")
FROM_STDIN = "-"
DEMO_PASSWORD = "Sandbox-Passw0rd"  # noqa: S105 - the sandbox demo's public example
TRANSITION_COLUMNS = ("seq", "at", "trigger", "source", "dest", "detail")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``openstack-agent`` command; returns the exit code."""
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(out)
        return 2
    try:
        result: int = args.handler(args, out)
        return result
    except AgentError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openstack-agent",
        description="Guest agent for Xen-based OpenStack clouds: every command a journaled state machine.",
    )
    parser.add_argument("--version", action="version", version=f"openstack-agent {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the guest agent", description=(
        "Run the agent: recover unfinished commands from the journal, then answer the host's requests "
        "under data/host until SIGTERM or Ctrl-C."))
    config.add_flags(run)
    run.set_defaults(handler=cmd_run)

    supervise = commands.add_parser("supervise", help="run the agent under a supervisor (what the service runs)",
                                    description=(
        "Run the current release's agent as a child and keep it running: restart it when it crashes, and roll "
        "a new release back to the previous one (marking it bad) when it crashes repeatedly or does not "
        "signal ready in time. Speaks the systemd notify protocol (READY, WATCHDOG). Takes the flags of "
        "'run', and passes them on to the agent."))
    config.add_flags(supervise)
    supervise.set_defaults(handler=cmd_supervise)

    install = commands.add_parser("install", help="install a release bundle and make it current", description=(
        "Check a release bundle (manifest, digests, signature when update.require_signature is set), install "
        "it offline into <install root>/releases/<version>/, switch 'current' to it (the release it replaces "
        "becomes 'previous') and mark it good."))
    install.add_argument("bundle", metavar="BUNDLE", help="the .tar.gz made by 'openstack-agent release build'")
    install.add_argument("--key", action="append", default=[], metavar="PUB",
                         help="also trust this Ed25519 public key (PEM); may be repeated")
    config.add_flags(install, only=("state_dir", "install_root", "require_signature", "trusted_keys"))
    install.set_defaults(handler=cmd_install)

    releases = commands.add_parser("release", help="build or check release bundles",
                                   description="Build or check the release bundles agentupdate installs.")
    release_commands = releases.add_subparsers(title="release commands", metavar="ACTION", required=True)
    build = release_commands.add_parser("build", help="build a bundle from a source checkout", description=(
        "Build openstack-agent-<version>.tar.gz: a manifest (version, target Python and platform, SHA-256 of "
        "every file), the agent's wheel and the wheels of its dependencies, so that a guest installs it "
        "offline. --version builds the same source under another version number (candidates, tests)."))
    build.add_argument("--out", required=True, metavar="DIR", help="directory to write the bundle to")
    build.add_argument("--source", default=".", metavar="DIR", help="the source checkout (default: .)")
    build.add_argument("--version", metavar="X.Y.Z", help="build under this version instead of the source's")
    build.add_argument("--sign", metavar="KEY", help="sign the manifest with this Ed25519 private key (PEM)")
    build.set_defaults(handler=cmd_release_build)
    verify = release_commands.add_parser("verify", help="check a bundle", description=(
        "Check a bundle's members, manifest and digests; with --key, also that it is signed by that key."))
    verify.add_argument("bundle", metavar="FILE")
    verify.add_argument("--key", action="append", default=[], metavar="PUB",
                        help="require a signature by this Ed25519 public key (PEM); may be repeated")
    verify.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    verify.set_defaults(handler=cmd_release_verify)

    journal = commands.add_parser("journal", help="inspect the journal",
                                  description="Inspect the journal of commands and their transitions.")
    journal_commands = journal.add_subparsers(title="journal commands", metavar="ACTION")
    listing = _journal_parser(journal_commands, "list", "list commands, newest first", cmd_journal_list)
    listing.add_argument("--limit", type=int, default=50, help="at most this many commands (0: all)")
    listing.add_argument("--name", help="only commands with this name")
    listing.add_argument("--state", help="only commands in this state")
    show = _journal_parser(journal_commands, "show", "one command and every transition it took",
                           cmd_journal_show)
    show.add_argument("id", type=int, help="command id, as 'journal list' shows it")
    export = _journal_parser(journal_commands, "export", "every command with its transitions, as JSON lines",
                             cmd_journal_export)
    export.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    _journal_parser(journal_commands, "verify", "check the transitions' hash chains", cmd_journal_verify)

    host = commands.add_parser("host", help="call the agent as the host does", description=(
        "The host side of the protocol, as nova's dom0 plugin speaks it: write data/host/<uuid>, poll "
        "data/guest/<uuid> every 0.5 s, delete the request on timeout or when the domain disappears. "
        "Exits 0 when the agent answers success, 1 when it answers an error."))
    host.add_argument("--xenstore", metavar="ADDRESS",
                      help="'unix:PATH' (default: from XENSTORED_PATH) or 'xenbus[:PATH]'")
    host.add_argument("--domain-path", required=True, metavar="PATH", help="the guest's home, /local/domain/N")
    host.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (nova: 30)")
    host.add_argument("--json", action="store_true", help="print the reply as JSON")
    host_commands = host.add_subparsers(title="calls", metavar="CALL", required=True)
    host_commands.add_parser("version", help="ask the agent's version").set_defaults(
        handler=cmd_host, request=lambda a: ("version", "agent"))
    host_commands.add_parser("features", help="ask which commands the agent offers").set_defaults(
        handler=cmd_host, request=lambda a: ("features", ""))
    call = host_commands.add_parser("call", help="send {name, value}")
    call.add_argument("name")
    call.add_argument("value", nargs="?", default="", help="JSON value, or a plain string")
    call.set_defaults(handler=cmd_host, request=lambda a: (a.name, _json_or_text(a.value)))
    password = host_commands.add_parser("password", help="set the guest's password (keyinit, then password)",
                                        description=(
        "Set the guest's administrator password as nova does: keyinit with a decimal public key, check the "
        "'D0' reply, then send password + newline encrypted with AES-128-CBC under the shared secret, as "
        "single-line base64. Without NEWPASS (or with '-') the password is read from standard input, "
        "which keeps it out of the process list."))
    password.add_argument("new_password", metavar="NEWPASS", nargs="?", default="-",
                          help="the new password, or '-' to read it from standard input (the default)")
    password.add_argument("--digest", choices=crypto.DERIVATIONS, default="sha256",
                          help="key derivation of the host's OpenSSL: sha256 (1.1.0 and later) or md5 (older)")
    password.set_defaults(handler=cmd_host, request=_password_request)
    raw = host_commands.add_parser("raw", help="send BODY exactly as given (for testing bad requests)")
    raw.add_argument("body")
    raw.set_defaults(handler=cmd_host, request=lambda a: a.body)

    sandbox = commands.add_parser("sandbox", help="run a real xenstored and the agent locally", description=(
        "Start Debian's real xenstored (in user space), a guest domain node and the agent serving it. "
        "Prints the environment to use with 'host' and 'journal', then runs until Ctrl-C. With --demo, "
        "makes a few host calls, shows the journal and stops."))
    sandbox.add_argument("--dir", metavar="DIR", help="working directory (default: a new temporary one)")
    sandbox.add_argument("--domid", type=int, default=5, help="the guest's domain id")
    sandbox.add_argument("--demo", action="store_true", help="run the demonstration calls, then stop")
    sandbox.set_defaults(handler=cmd_sandbox)

    diagram = commands.add_parser("diagram", help="print a command's state diagram (mermaid)")
    diagram.add_argument("command", nargs="?", help="command name (default: every machine)")
    diagram.set_defaults(handler=cmd_diagram)
    return parser


def _journal_parser(commands: Any, name: str, help_text: str, handler: Callable[..., int]) -> Any:
    parser = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    config.add_flags(parser, only=("state_dir",))
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=handler)
    return parser


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


# -- run ----------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    faults.startup_fault()  # nothing, unless this release was built to fail at start (the update tests)
    from agent.daemon import Agent

    settings = config.load(args)
    logs.setup(settings.log_level, settings.log_file)
    agent = Agent(settings, reload=lambda: config.load(args))
    try:
        agent.run()
    except RestartRequested as exc:
        log.info("%s", exc)
        return exc.exit_code
    except AgentError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0


def cmd_supervise(args: argparse.Namespace, out: TextIO) -> int:
    from agent.supervisor import Supervisor

    settings = config.load(args)
    logs.setup(settings.log_level, settings.log_file)
    return Supervisor(settings, config.flags_of(args), reload=lambda: config.load(args)).run()


# -- releases -----------------------------------------------------------------------------------------

def cmd_release_build(args: argparse.Namespace, out: TextIO) -> int:
    from agent import release

    bundle = release.build(Path(args.out), Path(args.source), args.version, Path(args.sign) if args.sign else None)
    out.write(f"{bundle}\n")
    return 0


def cmd_release_verify(args: argparse.Namespace, out: TextIO) -> int:
    from agent import release

    keys = release.load_public_keys(Path(k) for k in args.key)
    bundle = release.open_bundle(Path(args.bundle), keys, require_signature=bool(keys))
    summary = {"version": bundle.version, "python": bundle.manifest.python, "platform": bundle.manifest.platform,
               "files": len(bundle.manifest.files), "signed_by": bundle.signed_by}
    if args.json:
        render.as_json(summary, out)
    else:
        render.fields(list(summary.items()), out)
    return 0


def cmd_install(args: argparse.Namespace, out: TextIO) -> int:
    from agent import install, release
    from agent.journal import Journal, releases

    settings = config.load(args)
    keys = release.load_public_keys([*settings.trusted_key_paths, *(Path(k) for k in args.key)])
    bundle = release.open_bundle(Path(args.bundle), keys, settings.require_signature)
    layout = install.Layout(settings.install_path)
    version = install.install(bundle, layout)
    journal = Journal.open(settings.state_path)
    releases.mark(journal, version, releases.GOOD, "installed by 'openstack-agent install'")
    journal.close()
    out.write(f"openstack-agent {version} installed in {layout.release_dir(version)}; current -> {version}"
              f"{f', previous -> {layout.previous}' if layout.previous else ''}\n")
    return 0


# -- journal ------------------------------------------------------------------------------------------

def _open_journal(args: argparse.Namespace) -> Any:
    from agent.journal import Journal
    from agent.journal.engine import DATABASE_NAME

    settings = config.load(args)
    database = settings.state_path / DATABASE_NAME
    if not database.exists():
        raise JournalError(f"no journal at {database}; has the agent run here? Point --state-dir (or "
                           "journal.state_dir in the configuration) at the agent's state directory")
    # Inspection never writes: no schema, migration, mode change or file, so it also works on a read-only mount.
    return Journal.open_readonly(settings.state_path)


def _command_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _transition_dict(row: Any) -> dict[str, Any]:
    document = dataclasses.asdict(row)
    document["detail"] = json.loads(row.detail)
    return document


def cmd_journal_list(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        rows = [_command_dict(r) for r in journal.commands(limit=args.limit or None, name=args.name,
                                                           state=args.state)]
        predecessor = journal.predecessor()
    finally:
        journal.close()
    if predecessor is not None:
        # On stderr, so that --json output stays one JSON document.
        sys.stderr.write(f"Note: this journal was started on {predecessor.moved_at} because the previous one "
                         f"was unusable ({predecessor.reason}); it was moved aside to {predecessor.path}\n")
    if args.json:
        render.as_json(rows, out)
    else:
        render.table(rows, LIST_COLUMNS, out)
    return 0


def cmd_journal_show(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        command = _command_dict(journal.get(args.id))
        transitions = [_transition_dict(t) for t in journal.transitions(args.id)]
    finally:
        journal.close()
    if args.json:
        render.as_json({**command, "transitions": transitions}, out)
        return 0
    render.fields([
        ("command", command["id"]), ("name", command["name"]), ("machine", command["machine"]),
        ("state", command["state"]), ("request", command["request_id"]), ("domain", command["domain_path"]),
        ("digest", command["digest"]), ("attempts", command["attempts"]), ("received", command["received_at"]),
        ("finished", command["finished_at"]),
        ("reply", None if command["reply_code"] is None
         else f"{command['reply_code']} {command['reply_message']!r}"),
        ("replied", command["replied_at"]), ("reply removed", command["reply_removed_at"]),
    ], out)
    out.write("\n")
    rows = [{**t, "detail": json.dumps(t["detail"], sort_keys=True) if t["detail"] else None}
            for t in transitions]
    render.table(rows, TRANSITION_COLUMNS, out)
    return 0


def cmd_journal_export(args: argparse.Namespace, out: TextIO) -> int:
    journal = _open_journal(args)
    try:
        commands = [{**_command_dict(r), "transitions": [_transition_dict(t) for t in journal.transitions(r.id)]}
                    for r in reversed(journal.commands())]
    finally:
        journal.close()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            render.as_json(commands, fh, lines=True)
    else:
        render.as_json(commands, out, lines=True)
    return 0


def cmd_journal_verify(args: argparse.Namespace, out: TextIO) -> int:
    from agent.errors import JournalCorrupt

    journal = _open_journal(args)
    try:
        result = journal.verify()
    finally:
        journal.close()
    if args.json:
        render.as_json(dataclasses.asdict(result), out)
    elif result.ok:
        out.write(f"journal verified: {result.rows} transitions, every hash chain intact\n")
    if not result.ok:
        more = ""
        if result.problem_count > 1:
            more = f" (and {result.problem_count - 1} more; --json lists up to 20)"
        raise JournalCorrupt(f"journal verification failed: {result.problem}{more}; the journal was changed "
                             "outside the agent or damaged, keep a copy for investigation")
    return 0


# -- host ---------------------------------------------------------------------------------------------

def cmd_host(args: argparse.Namespace, out: TextIO) -> int:
    from agent.host import Host
    from agent.xenstore import XenStore

    address = args.xenstore or config.Config().xenstore_address
    request = args.request(args)
    with XenStore(address, args.domain_path) as xenstore:
        reply = _send(Host(xenstore), request, args.timeout)
    if args.json:
        render.as_json(reply, out)
    else:
        render.fields([("returncode", reply.get("returncode")), ("message", reply.get("message"))], out)
    return 0 if reply.get("returncode") in ("0", "D0") else 1


@dataclasses.dataclass(frozen=True)
class PasswordRequest:
    password: str = dataclasses.field(repr=False)
    derivation: str


def _password_request(args: argparse.Namespace) -> PasswordRequest:
    given = args.new_password
    if given == FROM_STDIN:
        if sys.stdin.isatty():
            import getpass

            given = getpass.getpass("New password: ")
        else:
            given = sys.stdin.readline().rstrip("\r\n")
    if not given:
        raise AgentError("no password given; pass NEWPASS, or write it to standard input")
    return PasswordRequest(given, args.digest)


def _send(host: Host, request: str | tuple[str, Any] | PasswordRequest, timeout: float) -> dict[str, Any]:
    """A raw body as given, a password set (keyinit + password), or a (name, value) call."""
    if isinstance(request, str):
        return host.raw(request, timeout=timeout)
    if isinstance(request, PasswordRequest):
        return host.set_password(request.password, request.derivation, timeout=timeout)
    return host.call(request[0], request[1], timeout=timeout)


# -- sandbox ------------------------------------------------------------------------------------------

def cmd_sandbox(args: argparse.Namespace, out: TextIO) -> int:
    from agent.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="openstack-agent-sandbox-") as scratch:
        directory = Path(args.dir or scratch)
        with Sandbox(directory, domid=args.domid) as sandbox:
            env = sandbox.xenstored.env
            out.write(f"Sandbox: a real xenstored and the agent, in {directory}\n\n"
                      f"  export XENSTORED_PATH={env['XENSTORED_PATH']}\n"
                      f"  openstack-agent host --domain-path {sandbox.domain_path} version\n"
                      f"  openstack-agent journal list --state-dir {sandbox.state_dir}\n"
                      f"  agent log: {sandbox.agent_log}\n\n")
            out.flush()
            if args.demo:
                return _demo(sandbox, out)
            out.write("Press Ctrl-C to stop.\n")
            out.flush()
            try:
                while sandbox.agent_exited() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                out.write("\nStopping the sandbox.\n")
                return 0
            raise HostCallError(f"the agent exited with status {sandbox.agent_exited()}; "
                                f"see {sandbox.agent_log}")


def _demo(sandbox: Any, out: TextIO) -> int:
    from agent.host import Host
    from agent.journal import Journal
    from agent.xenstore import XenStore

    calls: list[tuple[str, Any]] = [
        ("version", ("version", "agent")),
        ("features", ("features", "")),
        ("keyinit + password", PasswordRequest(DEMO_PASSWORD, "sha256")),
        ("unknown command", ("reboot", "")),
        ("body that is not JSON", "this is not JSON"),
        ("body without a name", '{"value": "agent"}'),
    ]
    with XenStore(sandbox.xenstored.address, sandbox.domain_path) as xenstore:
        host = Host(xenstore)
        for label, request in calls:
            reply = _send(host, request, 10.0)
            out.write(f"host -> {label:<22} agent -> {reply['returncode']:>3} {reply['message']}\n")
    shadow = (sandbox.root / "etc/shadow").read_text().splitlines()[0].split(":")
    out.write(f"\nroot's shadow entry in the guest root {sandbox.root}: {shadow[1][:20]}...\n"
              f"(the demo password was {DEMO_PASSWORD!r}; the journal holds only digests of it)\n")
    out.write("\nThe journal (openstack-agent journal list):\n\n")
    state = ["--state-dir", str(sandbox.state_dir)]
    code = main(["journal", "list", *state], out)
    journal = Journal.open_readonly(sandbox.state_dir)
    password_id = journal.commands(name="password")[0].id
    journal.close()
    out.write(f"\nThe password command (openstack-agent journal show {password_id}):\n\n")
    return code or main(["journal", "show", str(password_id), *state], out)


# -- diagram ------------------------------------------------------------------------------------------

def cmd_diagram(args: argparse.Namespace, out: TextIO) -> int:
    from agent.diagram import mermaid
    from agent.machines import COMMANDS

    names = [args.command] if args.command else list(COMMANDS)
    for name in names:
        if name not in COMMANDS:
            raise AgentError(f"no machine named {name!r}; choose one of {', '.join(COMMANDS)}")
        out.write(f"%% {name}\n{mermaid(COMMANDS[name])}\n")
    return 0
