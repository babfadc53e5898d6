"""``sandbox``: Debian's real xenstored, a guest domain node and the agent on this machine (``agent.sandbox``).

``--demo`` plays the host: a few calls, good and bad, then the journal they left, printed by the same
``journal list`` and ``journal show`` an operator would run. Without it the sandbox runs until Ctrl-C, SIGINT
or SIGTERM, and then stops everything it started and removes its temporary directory (a --dir is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from agent.cli.host import Call, PasswordSet, Raw, Request
from agent.errors import HostCallError, SandboxError

if TYPE_CHECKING:
    from agent.cli.app import Subparsers

DEMO_PASSWORD = "Sandbox-Passw0rd"  # noqa: S105 - the sandbox demo's public example


def register(commands: Subparsers) -> None:
    sandbox = commands.add_parser("sandbox", help="run a real xenstored and the agent locally", description=(
        "Start Debian's real xenstored (in user space), a guest domain node and the agent serving it. "
        "Prints the environment to use with 'host' and 'journal', then runs until Ctrl-C. With --demo, "
        "makes a few host calls, shows the journal and stops."))
    sandbox.add_argument("--dir", metavar="DIR", help="working directory (default: a new temporary one)")
    sandbox.add_argument("--domid", type=int, default=5, help="the guest's domain id")
    sandbox.add_argument("--demo", action="store_true", help="run the demonstration calls, then stop")
    sandbox.set_defaults(handler=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace, out: TextIO) -> int:
    from agent.sandbox import Sandbox

    with _stopped_by_signals(), tempfile.TemporaryDirectory(prefix="openstack-agent-sandbox-") as scratch:
        directory = _directory(args.dir) if args.dir else Path(scratch)
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
            try:
                # Inside the try: a signal can arrive as soon as the line is out, before the next statement.
                out.write("Press Ctrl-C to stop.\n")
                out.flush()
                while sandbox.agent_exited() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                out.write("\nStopping the sandbox.\n")
                out.flush()
                return 0
            raise HostCallError(f"the agent exited with status {sandbox.agent_exited()}; "
                                f"see {sandbox.agent_log}")


def _directory(given: str) -> Path:
    """The working directory --dir names, created if it is new; a SandboxError naming it if it cannot be."""
    path = Path(given)
    if path.exists() and not path.is_dir():
        reason = "it exists and is not a directory"
    else:
        try:
            path.mkdir(parents=True, exist_ok=True)
            return path
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
    raise SandboxError(f"cannot use {path} as the sandbox's directory: {reason}; give --dir a directory (new or "
                       "existing), or leave --dir out for a temporary one")


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT stop the sandbox as Ctrl-C does: as KeyboardInterrupt, so that every ``with`` on the
    way out stops the agent and xenstored and removes the temporary directory. SIGINT is taken over even when
    it was ignored (a script's '&' or nohup ignores it), so 'kill -INT' works there too. Later signals are
    ignored until the cleanup is over, so that a second Ctrl-C cannot cut it short (each child gets a bounded
    time to stop)."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _demo(sandbox: Any, out: TextIO) -> int:
    from agent.cli.app import main
    from agent.host import Host
    from agent.journal import Journal
    from agent.xenstore import XenStore

    calls: list[tuple[str, Request]] = [
        ("version", Call("version", "agent")),
        ("features", Call("features", "")),
        ("keyinit + password", PasswordSet(DEMO_PASSWORD, "sha256")),
        ("unknown command", Call("reboot", "")),
        ("body that is not JSON", Raw("this is not JSON")),
        ("body without a name", Raw('{"value": "agent"}')),
    ]
    with XenStore(sandbox.xenstored.address, sandbox.domain_path) as xenstore:
        host = Host(xenstore)
        for label, request in calls:
            reply = request.send(host, 10.0)
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
