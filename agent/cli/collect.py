"""``collect-logs``: one .tar.gz with everything a bug report about the agent needs.

The archive holds the journal export, ``journal verify --json``, ``status --json``, the effective
configuration (``config show --json``), a listing of the install root, the agent's log file when
``daemon.log_file`` is set, the service's recent log from journalctl where systemd runs it, and
``MANIFEST.txt``, which says what each member is and what could not be collected and why. A part that fails is
recorded there and the archive is made anyway: a bug report is most needed when something is broken.

The commands run in this process through ``agent.cli.app.main``, so every part reads exactly as the command
would, and only reads: the journal is opened read-only, nothing is locked. No part holds a secret: the journal
keeps digests of secret values, and its export leaves out the key exchanges' table, the one place a secret
lives while an exchange is open.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent import __version__, config
from agent.cli import output
from agent.errors import PlatformError, where

if TYPE_CHECKING:
    from agent.cli.app import Subparsers

#: Where systemd keeps its runtime state when it is the init system (sd_booted(3) looks here too).
SYSTEMD_RUNTIME = Path("/run/systemd/system")
UNIT = "openstack-agent.service"
SERVICE_LOG_LINES = 2000
#: Seconds systemctl and journalctl may take before the part is recorded as failed.
TOOL_TIMEOUT = 60.0
#: The tail of the agent's log file that is kept: a log that was never rotated must not make the archive huge.
MAX_LOG_BYTES = 50 * 1024 * 1024
#: Flags the journal commands take (the rest of the configuration means nothing to them).
JOURNAL_FLAGS = ("--config=", "--root=", "--state-dir=")
MANIFEST = "MANIFEST.txt"
#: Whether the Windows service's own log file (beside the agent's) is a part too.
WINDOWS = sys.platform == "win32"


@dataclasses.dataclass(frozen=True)
class Part:
    """One member's outcome: its content, or None with why it is absent or failed."""

    member: str
    what: str
    data: bytes | None
    result: str
    #: What the command wrote on stderr (errors, notes), kept in the manifest.
    stderr: str = ""


def register(commands: Subparsers) -> None:
    parser = commands.add_parser("collect-logs", help="one archive of what a bug report needs", description=(
        "Write one .tar.gz (mode 0600) with the journal export, 'journal verify --json', 'status --json', the "
        "effective configuration ('config show --json'), the release layout, the agent's log file (when "
        "daemon.log_file is set) and the service's recent log (journalctl, where systemd runs it), plus a "
        "MANIFEST.txt saying what is inside and what could not be collected. Only reads; never a secret."))
    parser.add_argument("--out", metavar="FILE",
                        help="the archive to write (default: openstack-agent-logs-<UTC time>.tar.gz here)")
    config.add_flags(parser)
    parser.set_defaults(handler=cmd_collect_logs)


def cmd_collect_logs(args: argparse.Namespace, out: TextIO) -> int:
    settings = config.load(args)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"openstack-agent-logs-{stamp}"
    target = Path(args.out) if args.out else Path(f"{name}.tar.gz")
    if target.exists() or target.is_symlink():
        # Never over something: --out could name the journal itself.
        raise PlatformError(f"{target} already exists; collect-logs never writes over a file: give --out a new "
                            "name, or remove it first")
    flags = config.flags_of(args)
    journal_flags = [f for f in flags if f.startswith(JOURNAL_FLAGS)]
    parts = [
        _guarded("journal-export.jsonl", "openstack-agent journal export",
                 lambda m, w: _cli(m, w, ["journal", "export", *journal_flags])),
        _guarded("journal-verify.json", "openstack-agent journal verify --json",
                 lambda m, w: _cli(m, w, ["journal", "verify", "--json", *journal_flags])),
        _guarded("status.json", "openstack-agent status --json",
                 lambda m, w: _cli(m, w, ["status", "--json", *flags])),
        _guarded("config.json", "openstack-agent config show --json",
                 lambda m, w: _cli(m, w, ["config", "show", "--json", *flags])),
        _guarded("releases.txt", "the install root: links, releases and their versions",
                 lambda m, w: Part(m, w, release_listing(settings.install_path).encode(), "collected")),
        _guarded("agent.log", "the agent's log file (daemon.log_file)",
                 lambda m, w: _log_file(m, w, settings.log_file)),
        _guarded("journalctl.txt", f"journalctl -u {UNIT} --no-pager -n {SERVICE_LOG_LINES} -o short-iso",
                 lambda m, w: _service_log(m, w, settings.root)),
    ]
    if WINDOWS:
        from agent.winlog import service_log_file

        parts.append(_guarded("service.log", "the Windows service's own log file, beside the agent's",
                              lambda m, w: _log_file(m, w, service_log_file(settings.log_file))))
    manifest = render_manifest(parts, stamp)
    members = [(p.member, p.data) for p in parts if p.data is not None] + [(MANIFEST, manifest.encode())]
    _write_archive(target, name, members)
    failed = [p.member for p in parts if p.result.startswith("failed")]
    absent = [p.member for p in parts if p.result.startswith("absent")]
    summary = f"{len(parts) - len(failed) - len(absent)} parts collected"
    if absent:
        summary += f", {len(absent)} absent ({', '.join(absent)})"
    if failed:
        summary += f", {len(failed)} failed ({', '.join(failed)})"
    out.write(f"{target.resolve()}\n{summary}; see {MANIFEST} in the archive\n")
    return 0


def _guarded(member: str, what: str, collect: Callable[[str, str], Part]) -> Part:
    """Collect one part; whatever goes wrong is that part's failure, never the archive's."""
    try:
        return collect(member, what)
    except Exception as exc:  # recorded in the manifest; the other parts go on
        # Where it failed, never its text: an unexpected exception's text could quote anything.
        return Part(member, what, None, f"failed: {type(exc).__name__} at {where(exc)}")


def _cli(member: str, what: str, argv: Sequence[str]) -> Part:
    """Run one of this program's commands in this process; its output is the part."""
    from agent.cli.app import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            code = main(list(argv), stdout)
        except SystemExit as exc:  # argparse refused the arguments (or the command does not exist)
            code = exc.code if isinstance(exc.code, int) else 2
    text, errors = stdout.getvalue(), stderr.getvalue()
    if not text:
        # The last line is the error itself (argparse puts its usage first).
        last = next((line for line in reversed(errors.splitlines()) if line.strip()), "no output")
        return Part(member, what, None, f"failed: exit status {code}: {last.strip()}", errors)
    return Part(member, what, text.encode(), "collected" if code == 0 else f"collected (exit status {code})",
                errors)


def release_listing(install_root: Path) -> str:
    """The install root as the release machinery sees it: links, release directories, their versions."""
    from agent.install import COMPLETE

    if not install_root.is_dir():
        return f"install root {install_root}: absent\n"
    lines = [f"install root {install_root}"]
    for entry in sorted(install_root.iterdir()):
        if entry.is_symlink():
            lines.append(f"{entry.name} -> {os.readlink(entry)}")
        elif entry.is_dir():
            lines.append(f"{entry.name}/")
    releases = install_root / "releases"
    for release in sorted(releases.iterdir()) if releases.is_dir() else []:
        marker = release / COMPLETE
        state = (f"complete (marker says {marker.read_text(errors='replace').strip()})" if marker.is_file()
                 else "incomplete (no .complete marker: an interrupted installation)")
        packages = sorted(p.name.removesuffix(".dist-info").partition("-")[2]
                          for p in release.glob("lib/python*/site-packages/openstack_agent-*.dist-info"))
        lines.append(f"releases/{release.name}: {state}; installed package version "
                     f"{', '.join(packages) or 'not found'}")
    downloads = install_root / "downloads"
    for download in sorted(downloads.iterdir()) if downloads.is_dir() else []:
        lines.append(f"downloads/{download.name}: {download.stat().st_size} bytes")
    return "\n".join(lines) + "\n"


def _log_file(member: str, what: str, log_file: str) -> Part:
    from agent.status import open_regular

    if not log_file:
        return Part(member, what, None, "absent: daemon.log_file is not set (the agent logs to stderr, which "
                                        "the service manager keeps: see journalctl.txt)")
    path = Path(log_file)
    try:
        # Only the log the agent writes: a regular file, never through a link (the configuration could point
        # at /etc/shadow), never a FIFO that would hold the archive up.
        with os.fdopen(open_regular(path), "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - MAX_LOG_BYTES))
            data = fh.read(MAX_LOG_BYTES)
    except OSError as exc:
        return Part(member, what, None, f"failed: cannot read {path}: {exc.strerror or exc}")
    if size > MAX_LOG_BYTES:
        return Part(member, what, data, f"collected (its last {MAX_LOG_BYTES // 2**20} MiB of {size} bytes)")
    return Part(member, what, data, "collected")


def _service_log(member: str, what: str, root: str) -> Part:
    """journalctl's recent lines of the unit, where systemd runs this system and knows the unit."""
    if root:
        return Part(member, what, None, f"absent: --root {root} given; the service log is this machine's, not "
                                        "the root's")
    if not SYSTEMD_RUNTIME.is_dir():
        return Part(member, what, None, f"absent: systemd is not the init system here (no {SYSTEMD_RUNTIME})")
    known = _tool(["systemctl", "show", "--property=LoadState", "--value", UNIT])
    if isinstance(known, str):
        return Part(member, what, None, f"absent: cannot ask systemd about {UNIT}: {known}")
    if known.returncode != 0:
        return Part(member, what, None, f"absent: systemctl cannot tell whether systemd knows {UNIT}: "
                                        f"{_last_line(known.stderr)}")
    state = known.stdout.decode(errors="replace").strip()
    if state != "loaded":
        return Part(member, what, None, f"absent: systemd does not know {UNIT} (LoadState {state or 'empty'})")
    journal = _tool(["journalctl", "-u", UNIT, "--no-pager", "-n", str(SERVICE_LOG_LINES), "-o", "short-iso"])
    if isinstance(journal, str):
        return Part(member, what, None, f"failed: {journal}")
    if journal.returncode != 0:
        return Part(member, what, None, f"failed: journalctl exit status {journal.returncode}: "
                                        f"{_last_line(journal.stderr)}")
    return Part(member, what, journal.stdout, "collected")


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no message"


def _tool(argv: list[str]) -> subprocess.CompletedProcess[bytes] | str:
    """Run a system tool; its result, or why it could not run."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not installed"
    try:
        return subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=TOOL_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not answer within {TOOL_TIMEOUT:g} s"
    except OSError as exc:
        return f"{argv[0]} could not run: {exc.strerror}"


def render_manifest(parts: Sequence[Part], stamp: str) -> str:
    text = io.StringIO()
    text.write(f"openstack-agent {__version__} collect-logs, {stamp}\n\n")
    output.table([{"member": p.member, "what": p.what, "result": p.result} for p in parts],
                 ("member", "what", "result"), text)
    for part in parts:
        if part.stderr:
            text.write(f"\nstderr of '{part.what}':\n")
            text.writelines(f"  {line}\n" for line in part.stderr.splitlines())
    return text.getvalue()


def _write_archive(target: Path, top: str, members: Sequence[tuple[str, bytes]]) -> None:
    """Write the archive under a temporary name beside ``target`` (0600 from its creation), then rename it."""
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as exc:
        raise PlatformError(f"cannot write the archive {target}: {exc.strerror}; choose another --out") from exc
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as archive:
            now = time.time()
            for member, data in members:
                info = tarfile.TarInfo(f"{top}/{member}")
                info.size, info.mode, info.mtime = len(data), 0o600, int(now)
                archive.addfile(info, io.BytesIO(data))
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PlatformError(f"cannot write the archive {target}: {exc.strerror}; choose another --out") from exc
