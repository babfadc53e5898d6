"""The service's commands: ``run`` (the agent), ``supervise`` (what the unit runs), ``install`` (with
``--service``, also the systemd unit) and ``uninstall``; and ``service install|remove|start|stop``, the
Windows service (``agent.winservice``), which on other systems says what to use instead.

``run`` and ``supervise`` set up the process's log (``agent.logs``) from the configuration before they start
anything, so that the agent's and the supervisor's lines go to ``daemon.log_file`` from the first one.
``run`` passes the start-up fault point (``agent.faults.startup_fault``) before anything else: it does
nothing unless the release was built to fail at start, for the update tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent import config, faults, logs
from agent.cli import output
from agent.errors import AgentError, PlatformError, RestartRequested

if TYPE_CHECKING:
    from agent.cli.app import Subparsers
    from agent.winservice import Win32

log = logging.getLogger("agent")

#: Whether this system has the Windows service, which the ``service`` commands manage.
WINDOWS = sys.platform == "win32"
NOT_WINDOWS = ("the 'service' commands manage the Windows service and work only on Windows; on this system the "
               "agent runs under systemd: 'openstack-agent install --service BUNDLE' installs and enables its unit "
               "(openstack-agent.service), then 'systemctl start openstack-agent' or 'systemctl stop "
               "openstack-agent'")
#: Seconds ``service install``, ``start``, ``stop`` and ``remove`` wait for the service to get there.
SERVICE_WAIT = 60.0


def register(commands: Subparsers) -> None:
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
    install.add_argument("--service", action="store_true", help=(
        "also install the bundle's systemd unit in /etc/systemd/system, its annotated configuration in "
        "/etc/openstack-agent/agent.toml (only where there is none) and its README, and enable the service; "
        "it is started (or restarted onto a new release) only when systemd runs this machine and no --root "
        "is given"))
    config.add_flags(install, only=("state_dir", "install_root", "require_signature", "trusted_keys"))
    install.set_defaults(handler=cmd_install)

    uninstall = commands.add_parser("uninstall", help="remove the service and the releases, keeping the journal",
                                    description=(
        "Disable the service (and stop it when systemd runs this machine), remove its unit and README, the "
        "install root's releases and links, and the configuration if it is unchanged from the shipped one. "
        "The journal (the state directory) and a changed configuration are kept unless --purge."))
    uninstall.add_argument("--purge", action="store_true",
                           help="also remove the configuration, changed or not, and the journal")
    config.add_flags(uninstall, only=("state_dir", "install_root"))
    uninstall.set_defaults(handler=cmd_uninstall)

    _register_windows_service(commands)


def _register_windows_service(commands: Subparsers) -> None:
    service = commands.add_parser("service", help="install, remove, start or stop the Windows service",
                                  description=(
        "Manage the Windows service OpenStackAgent (Windows only; on other systems, 'install --service' sets up "
        "the systemd unit)."))
    service.set_defaults(handler=cmd_service)
    actions = service.add_subparsers(title="service commands", metavar="ACTION")
    for name, help_text, handler in (
            ("install", "create the service (automatic start, restarted after a failure) and its event log "
                        "source, or take over the OpenStackAgent service already there (stopped while it is "
                        "reconfigured, and started again if it was running)", cmd_service_install),
            ("remove", "stop the service if it runs, then delete it and its event log source", cmd_service_remove),
            ("start", "start the service and wait until it serves", cmd_service_start),
            ("stop", "stop the service and wait until it has stopped", cmd_service_stop),
            ("run", "run as the service (what the Service Control Manager starts; by hand, use 'openstack-agent "
                    "run')", cmd_service_run)):
        action = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name in ("install", "remove", "start", "stop"):
            action.add_argument("--wait", type=float, default=SERVICE_WAIT, metavar="SECONDS",
                                help=f"how long to wait for the service (default {SERVICE_WAIT:g})")
        action.set_defaults(handler=handler)


def _configure(args: argparse.Namespace) -> config.Config:
    """The configuration from the file and the flags, checked as a whole (its errors naming the file or flag at
    fault), with the process's log set up as it says."""
    from agent.machines import host_commands

    resolved = config.resolve(args)
    config.validate(resolved.config, host_commands(), resolved.sources)
    logs.setup(resolved.config.log_level, resolved.config.log_file)
    return resolved.config


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    faults.startup_fault()
    from agent.daemon import Agent

    agent = Agent(_configure(args), reload=lambda: config.load(args))
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

    settings = _configure(args)
    return Supervisor(settings, config.flags_of(args), reload=lambda: config.load(args)).run()


def cmd_install(args: argparse.Namespace, out: TextIO) -> int:
    from agent import install, release
    from agent.journal import Journal, releases

    settings = config.load(args)
    if args.service:
        # Refused before a release is installed, not after.
        install.check_service(settings.install_root, settings.state_dir)
    keys = release.load_public_keys([*settings.trusted_key_paths, *(Path(k) for k in args.key)])
    bundle = release.open_bundle(Path(args.bundle), keys, settings.require_signature)
    layout = install.Layout(settings.install_path)
    before = layout.current
    image = Path(settings.root) if settings.root else None
    version = install.install(bundle, layout, image)
    journal = Journal.open(settings.state_path)
    releases.mark(journal, version, releases.GOOD, "installed by 'openstack-agent install'")
    journal.close()
    out.write(f"openstack-agent {version} installed in {layout.release_dir(version)}; current -> {version}"
              f"{f', previous -> {layout.previous}' if layout.previous else ''}\n")
    python = layout.interpreter(version)
    if image is not None and not config.rooted(settings.root, python).exists():
        # The release is a venv of the Python that ran this install; an image without it cannot start it.
        sys.stderr.write(f"Warning: the release runs {python}, which {image} does not have; install from the "
                         "Python the image has (its /usr/bin/python3), or the agent will not start there\n")
    if args.service:
        output.fields(install.install_service(bundle, layout, settings.root, settings.install_root,
                                              changed_release=before != version, state_dir=settings.state_dir),
                      out)
    return 0


def cmd_uninstall(args: argparse.Namespace, out: TextIO) -> int:
    from agent import install

    settings = config.load(args)
    report = install.uninstall(install.Layout(settings.install_path), settings.root, settings.state_path,
                               args.purge)
    output.fields(report or [("nothing", "openstack-agent is not installed here")], out)
    return 0


def _win32() -> Win32:
    """The pywin32 modules, on Windows; elsewhere the message saying what to use instead."""
    if not WINDOWS:
        raise PlatformError(NOT_WINDOWS)
    from agent.winservice import Win32

    return Win32.load()


def cmd_service(args: argparse.Namespace, out: TextIO) -> int:
    _win32()
    out.write("usage: openstack-agent service {install,remove,start,stop} (see 'openstack-agent service -h')\n")
    return 2


def cmd_service_install(args: argparse.Namespace, out: TextIO) -> int:
    from agent import winservice

    output.fields(winservice.install(_win32(), args.wait), out)
    return 0


def cmd_service_remove(args: argparse.Namespace, out: TextIO) -> int:
    from agent import winservice

    output.fields(winservice.remove(_win32(), args.wait), out)
    return 0


def cmd_service_start(args: argparse.Namespace, out: TextIO) -> int:
    from agent import winservice

    output.fields([("service", winservice.SERVICE_NAME), ("state", winservice.start(_win32(), args.wait))], out)
    return 0


def cmd_service_stop(args: argparse.Namespace, out: TextIO) -> int:
    from agent import winservice

    output.fields([("service", winservice.SERVICE_NAME), ("state", winservice.stop(_win32(), args.wait))], out)
    return 0


def cmd_service_run(args: argparse.Namespace, out: TextIO) -> int:
    from agent import winservice

    winservice.host(_win32())
    return 0
