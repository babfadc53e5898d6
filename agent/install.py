"""The install layout: releases side by side, and the ``current`` and ``previous`` pointers.

    <install root>/releases/<version>/   one release, installed offline: a virtual environment (a bundle of
                                         wheels), or the frozen program's folder, ``openstack-agent.exe`` and
                                         ``_internal/`` (a frozen bundle, or the Windows service's own
                                         build copied from where the MSI put it: no Python, no pip, no venv)
    <install root>/current -> releases/<version>
    <install root>/previous -> releases/<version>
    <install root>/downloads/            bundles being downloaded (``.part``) or downloaded

    <install root>/shipped-agent.toml    the annotated configuration the last ``install --service`` shipped

``current`` and ``previous`` are symbolic links on POSIX and pointer files on Windows (``agent.pointers``
says why); either is switched atomically, so that after a power cut ``current`` is either the old release or
the new one, never missing. A release directory counts only once its ``.complete`` marker exists: staging that
was interrupted is redone. A release's program is its frozen ``openstack-agent.exe`` when it has one, else its
venv's ``bin/openstack-agent``.

The service (``install --service``, ``uninstall``) is the bundle's systemd unit in /etc/systemd/system, its
annotated configuration in /etc/openstack-agent (never replacing an operator's) and its README in
/usr/share/doc/openstack-agent, all inside ``--root`` when one is given. ``systemctl`` enables and disables
it; it starts or stops it only when systemd runs this machine and no ``--root`` is given, so that an image
build (a chroot, a directory) is set up offline and the service starts at the image's first boot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agent import pointers, release
from agent.config import DEFAULT_STATE_DIR, rooted
from agent.errors import PlatformError, ReleaseError
from agent.lock import StateLock

log = logging.getLogger(__name__)

COMPLETE = ".complete"
#: Room asked for beyond the unpacked wheels: installed files take several times a wheel's size.
SPACE_FACTOR = 4
SPACE_MARGIN = 64 * 1024 * 1024


fsync_directory = pointers.fsync_directory


class Layout:
    """One install root; ``pointers`` the kind of its pointers where it has none yet (``agent.pointers``)."""

    def __init__(self, root: Path, pointers_kind: str | None = None) -> None:
        self.root = root
        self.releases = root / pointers.RELEASES
        self.downloads = root / "downloads"
        self.pointers = pointers.Pointers(root, pointers_kind)

    def release_dir(self, version: str) -> Path:
        return self.releases / release.check_version(version)

    def installed(self, version: str) -> bool:
        return (self.release_dir(version) / COMPLETE).exists()

    def link(self, name: str) -> str | None:
        """The version ``current`` or ``previous`` points at, or None (a pointer file naming no release raises
        ReleaseError)."""
        return self.pointers.read(name)

    @property
    def current(self) -> str | None:
        return self.link("current")

    @property
    def previous(self) -> str | None:
        return self.link("previous")

    def agent_command(self, name: str = "current") -> Path:
        """The program of the release ``name`` points at."""
        version = self.link(name)
        if version is None:
            raise ReleaseError(f"no {name} release under {self.root}; install one with "
                               "'openstack-agent install BUNDLE'")
        return self.program(version)

    def program(self, version: str) -> Path:
        """What runs release ``version``: its frozen program, or its venv's command."""
        frozen = self.release_dir(version) / release.FROZEN_PROGRAM
        return frozen if frozen.is_file() else self.release_dir(version) / "bin" / "openstack-agent"

    # -- switching --------------------------------------------------------------------------------------

    def switch(self, name: str, version: str) -> None:
        """Point ``name`` at ``version``, atomically, under the pointers' lock (``agent.pointers``)."""
        with self.pointers.switching():
            self._switch(name, version)

    def _switch(self, name: str, version: str) -> None:
        if not self.installed(version):
            raise ReleaseError(f"release {version} is not installed under {self.releases}")
        self.pointers.point(name, version)

    def activate(self, version: str) -> None:
        """Make ``version`` current, keeping the release it replaces as previous (idempotent), under the pointers'
        lock: no other writer switches either in between. A pointer that names no release is replaced: this is
        how it is repaired."""
        with self.pointers.switching():
            try:
                old = self.current
            except ReleaseError as exc:
                log.warning("%s; pointing it at %s", exc, version)
                old = None
            if old == version:
                return
            if old is not None and self.installed(old):
                self._switch("previous", old)
            self._switch("current", version)
        log.info("release %s is now current (previous: %s)", version, old or "none")

    def roll_back(self, bad: str) -> str | None:
        """Point ``current`` back at ``previous`` in place of the release ``bad``, under the pointers' lock: the
        release now current, or None when ``current`` no longer names ``bad`` (another writer, an operator's
        ``install`` say, switched it meanwhile: that release stays, and the pointers are left alone).
        ReleaseError when there is no other installed release to go back to, or the lock cannot be had."""
        with self.pointers.switching():
            if self.current != bad:
                return None
            previous = self.previous
            if previous is None or previous == bad or not self.installed(previous):
                raise ReleaseError(f"there is no previous release to go back to from {bad} under {self.root}")
            self._switch("current", previous)
        return previous

    # -- staging ----------------------------------------------------------------------------------------

    def stage(self, bundle: release.Bundle, image: Path | None = None) -> None:
        """Install a checked bundle into ``releases/<version>/`` offline (idempotent; redoes a partial one).

        ``image`` is the system root the install root lives in when that is not this machine's (``--root``):
        the release's scripts then name their paths as that system will see them once it runs.
        """
        version = bundle.version
        if self.installed(version):
            return
        release.check_system(bundle.manifest)
        frozen = bundle.manifest.kind == release.FROZEN
        if not frozen and bundle.manifest.python != release.python_tag():
            raise ReleaseError(f"release {version} was built for {bundle.manifest.python}, but this guest runs "
                               f"{release.python_tag()}")
        self.releases.mkdir(parents=True, exist_ok=True)
        self._check_space(version, bundle.unpacked_size)
        target = self.release_dir(version)
        if target.exists():
            shutil.rmtree(target)  # an interrupted staging: start it again
        with tempfile.TemporaryDirectory(prefix=".unpack-", dir=self.releases) as unpacked:
            release.extract(bundle, Path(unpacked))
            # The marker, written last, is what makes the release count.
            if frozen:
                # The frozen program's folder runs wherever it lies: moved into place in one rename.
                os.replace(Path(unpacked) / release.FROZEN, target)
            else:
                # Virtual environments are not relocatable, so the release is built where it will live.
                _run([sys.executable, "-m", "venv", "--without-pip", str(target)], "creating the release's venv")
                _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                      "--quiet", "--no-index", "--no-compile", "--find-links",
                      str(Path(unpacked) / release.WHEELS), f"{release.NAME}=={version}", "pip"],
                     f"installing release {version}", offline=True)
        if image is not None and not frozen:
            _relocate(target, Path("/") / target.relative_to(image))
        self._complete(target, version)

    def stage_build(self, folder: Path, version: str) -> None:
        """Install the frozen build in ``folder`` (the Windows service's own, which the MSI installed) as release
        ``version`` (idempotent): copied beside the releases, then moved into place in one rename."""
        if self.installed(version):
            return
        if not (folder / release.FROZEN_PROGRAM).is_file():
            raise ReleaseError(f"{folder} is not a frozen build: it has no {release.FROZEN_PROGRAM}")
        if self.root.resolve().is_relative_to(folder.resolve()):
            raise ReleaseError(f"the install root {self.root} lies inside the build {folder} it would copy; "
                               "configure update.install_root elsewhere")
        self.releases.mkdir(parents=True, exist_ok=True)
        self._check_space(version, sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()))
        target = self.release_dir(version)
        if target.exists():
            shutil.rmtree(target)  # an interrupted copy: start it again
        with tempfile.TemporaryDirectory(prefix=".unpack-", dir=self.releases) as unpacked:
            copy = Path(unpacked) / release.FROZEN
            shutil.copytree(folder, copy)
            os.replace(copy, target)
        self._complete(target, version)

    def _check_space(self, version: str, size: int) -> None:
        needed = size * SPACE_FACTOR + SPACE_MARGIN
        free = shutil.disk_usage(self.releases).free
        if free < needed:
            raise ReleaseError(f"not enough free disk space to install release {version}: {free // 2**20} MiB "
                               f"free under {self.releases}, {needed // 2**20} MiB needed")

    def _complete(self, target: Path, version: str) -> None:
        """Write the marker that makes the release in ``target`` count (last, once everything else is there)."""
        (target / COMPLETE).write_text(f"{version}\n")
        fsync_directory(self.releases)
        log.info("release %s installed in %s", version, target)

    def interpreter(self, version: str) -> str:
        """The Python a release runs, as an absolute path: what its venv's ``bin/python`` finally names."""
        path = self.release_dir(version) / "bin" / "python"
        while path.is_symlink():
            target = Path(os.readlink(path))
            if target.is_absolute():
                return str(target)
            path = path.parent / target
        return str(path)

    def prune(self, keep: int) -> list[str]:
        """Keep ``keep`` releases: current and previous always, then the most recently installed others.

        Returns the versions removed.
        """
        if not self.releases.exists():
            return []
        protected = {v for v in (self.current, self.previous) if v is not None}
        others = sorted((p for p in self.releases.iterdir() if (p / COMPLETE).exists() and p.name not in protected),
                        key=lambda p: (p / COMPLETE).stat().st_mtime, reverse=True)
        removed = []
        for path in others[max(0, keep - len(protected)):]:
            shutil.rmtree(path)
            removed.append(path.name)
        return removed


def newer(version: str, than: str) -> bool:
    """Whether release ``version`` is newer than ``than``, comparing their dotted numbers (1.10 after 1.9)."""
    def key(v: str) -> tuple[int, ...]:
        parts = [int(part) for part in release.check_version(v).split(".")]
        return tuple(parts + [0] * (4 - len(parts)))  # 1.2 and 1.2.0 are one version
    return key(version) > key(than)


def _relocate(target: Path, seen_as: Path) -> None:
    """Make a venv built at ``target`` work at ``seen_as``: a venv names its own path in its scripts' ``#!`` lines
    and in ``pyvenv.cfg``, and an image built in a directory boots with that directory as ``/``."""
    old, new = str(target).encode(), str(seen_as).encode()
    for path in [*(target / "bin").iterdir(), target / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def _run(argv: list[str], what: str, offline: bool = False) -> None:
    env = dict(os.environ)
    if offline:
        # Only the bundle's wheels: no index, no configured find-links or constraints of the image.
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed: {(result.stderr or result.stdout).strip()[-500:]}")


def install(bundle: release.Bundle, layout: Layout, image: Path | None = None) -> str:
    """A first (or manual) installation: stage the bundle and make it current (``image``: see ``stage``)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.stage(bundle, image)
    layout.activate(bundle.version)
    return bundle.version


# -- the service ----------------------------------------------------------------------------------------

UNIT = "openstack-agent.service"
UNIT_PATH = "/etc/systemd/system/openstack-agent.service"
CONFIG_PATH = "/etc/openstack-agent/agent.toml"
DOC_DIR = "/usr/share/doc/openstack-agent"
#: Kept in the install root so that an operator's configuration is told from the shipped one: only the
#: latter is upgraded by the next ``install --service`` or removed by ``uninstall``.
SHIPPED_CONFIG = "shipped-agent.toml"
#: The install root the bundle's unit names; another one (``update.install_root``) is written into it.
UNIT_INSTALL_ROOT = "/opt/openstack-agent"
_EXEC_START = f"ExecStart={UNIT_INSTALL_ROOT}/current/bin/openstack-agent "
#: An install root systemd takes in ExecStart= as it is: no quoting, no specifiers (%), no variables ($).
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._+/-]*")
#: What the install root holds: ``uninstall`` removes these and keeps (and names) anything else.
_OWN = ("releases", "downloads", "current", "previous", pointers.LOCK, SHIPPED_CONFIG, "supervisor.pid")

#: What install_service and uninstall did, a (verb, what) line each, for the command's output.
Report = list[tuple[str, str]]


def systemd_running() -> bool:
    """Whether systemd manages this machine's services now (``sd_booted``): not in a chroot or a container
    without it, such as an image build."""
    return os.path.isdir("/run/systemd/system")


def install_service(bundle: release.Bundle, layout: Layout, root: str, install_root: str,
                    changed_release: bool, state_dir: str = DEFAULT_STATE_DIR) -> Report:
    """Put the bundle's unit, configuration and README in place and enable the service (idempotent).

    ``root`` is ``--root`` ("" for this machine); ``install_root`` and ``state_dir`` the configured ones, as
    the unit must name them (as flags of ``supervise`` when they are not the defaults, so the service uses
    the releases and the journal this installation made); ``changed_release`` whether this installation
    switched ``current``, so that a running service is restarted onto it.
    """
    systemctl = check_service(install_root, state_dir)
    if layout.pointers.kind != pointers.SYMLINK:
        raise ReleaseError(f"{layout.root} keeps pointer files, but the unit starts {install_root}/current/bin/"
                           "openstack-agent through the symbolic link current; install into a new install root")
    unit = release.read_member(bundle, f"{release.SERVICE}/openstack-agent.service").decode()
    if _EXEC_START not in unit:
        raise ReleaseError(f"release {bundle.version}'s unit does not start {_EXEC_START.removeprefix('ExecStart=')}"
                           "; it cannot be pointed at this install root")
    flags = "".join(f" --{flag}={value}" for flag, value, default in (
        ("install-root", install_root, UNIT_INSTALL_ROOT), ("state-dir", state_dir, DEFAULT_STATE_DIR))
        if value != default)
    start = unit.index(_EXEC_START)
    end = unit.index("\n", start)
    exec_start = unit[start:end].replace(_EXEC_START, f"ExecStart={install_root}/current/bin/openstack-agent ")
    unit = unit[:start] + exec_start + flags + unit[end:]
    shipped = release.read_member(bundle, f"{release.SERVICE}/agent.toml")
    readme = release.read_member(bundle, f"{release.SERVICE}/README.md")

    unit_path, doc_path = rooted(root, UNIT_PATH), rooted(root, DOC_DIR) / "README.md"
    unit_verb = _put(unit_path, unit.encode())
    report: Report = [(unit_verb, str(unit_path)), _put_config(rooted(root, CONFIG_PATH), shipped, layout),
                      (_put(doc_path, readme), str(doc_path))]
    _write(layout.root / SHIPPED_CONFIG, shipped)
    report.append(_enable(systemctl, root, restart=changed_release or unit_verb != "unchanged"))
    return report


def check_service(install_root: str, state_dir: str = DEFAULT_STATE_DIR) -> str:
    """What ``install --service`` checks before anything is installed; returns systemctl's path."""
    for what, path in (("install root", install_root), ("state directory", state_dir)):
        if not _PLAIN_PATH.fullmatch(path):
            raise ReleaseError(f"the {what} {path!r} cannot be written into the unit's ExecStart=; use a path of "
                               "letters, digits and ._+-/ only")
    return _systemctl_path()


def _put(path: Path, data: bytes) -> str:
    """Write ``path`` unless it already holds ``data``; say which."""
    try:
        present: bytes | None = path.read_bytes()
    except FileNotFoundError:
        present = None
    if present == data:
        return "unchanged"
    _write(path, data)
    return "installed" if present is None else "updated"


def _put_config(path: Path, shipped: bytes, layout: Layout) -> tuple[str, str]:
    """The annotated configuration, where there is none; an operator's is never replaced."""
    try:
        present = path.read_bytes()
    except FileNotFoundError:
        _write(path, shipped)
        return "installed", f"{path} (the annotated defaults)"
    if present == shipped:
        return "unchanged", str(path)
    try:
        before = (layout.root / SHIPPED_CONFIG).read_bytes()
    except FileNotFoundError:
        before = None
    if present == before:
        # Nobody edited what the last install --service shipped: this release's comments replace it.
        _write(path, shipped)
        return "updated", f"{path} (unchanged since the last install)"
    return "kept", f"{path} (an existing configuration is never replaced; the shipped one is " \
                   f"{layout.root / SHIPPED_CONFIG})"


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole (a temporary file renamed over it), world-readable like the rest of /etc."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as temporary:
        try:
            temporary.write(data)
            temporary.flush()
            os.fsync(temporary.fileno())
            if sys.platform != "win32":  # the systemd service's files; Windows has no mode bits to set
                os.fchmod(temporary.fileno(), 0o644)
        except BaseException:
            os.unlink(temporary.name)
            raise
    os.replace(temporary.name, path)
    fsync_directory(path.parent)


def _enable(systemctl: str, root: str, restart: bool) -> tuple[str, str]:
    if root:
        _systemctl(systemctl, f"--root={os.path.abspath(root)}", "enable", UNIT)
        return "enabled", f"{UNIT} in {root} (not started: that system is not running)"
    if not systemd_running():
        _systemctl(systemctl, "enable", UNIT)
        return "enabled", f"{UNIT} (systemd is not running here, as in an image build: it starts at the next boot)"
    _systemctl(systemctl, "enable", UNIT)
    # A new release or unit reaches a running service only by a restart; otherwise start it if it is not.
    _systemctl(systemctl, "restart" if restart else "start", UNIT)
    return "enabled", f"{UNIT}, and {'restarted' if restart else 'started'} it"


def _systemctl_path() -> str:
    found = shutil.which("systemctl")
    if found is None:
        raise ReleaseError("systemctl is not on PATH: --service sets up a systemd service; on a system without "
                           "systemd, install without --service and start 'openstack-agent supervise' as it starts "
                           "its services")
    return found


def _systemctl(systemctl: str, *argv: str) -> None:
    result = subprocess.run([systemctl, *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PlatformError(f"systemctl {' '.join(argv)} failed: {(result.stderr or result.stdout).strip()[-500:]}")


def uninstall(layout: Layout, root: str, state_dir: Path, purge: bool) -> Report:
    """Disable and remove the service, the releases and links, and the configuration if it is the shipped
    one; keep the journal. ``purge`` also removes a changed configuration and the journal."""
    report: Report = []
    unit_path = rooted(root, UNIT_PATH)
    systemctl = _systemctl_path() if unit_path.exists() else ""
    if systemctl and not root and systemd_running():
        _systemctl(systemctl, "disable", "--now", UNIT)  # stopped first: its supervisor holds the install root
        report.append(("disabled", f"{UNIT}, and stopped it"))
    # Held while the files go: an agent or supervisor started by hand (or starting now) is refused, not
    # left running on removed releases or a removed journal.
    locks = [StateLock(layout.root, "supervisor", what="install root")] if layout.root.is_dir() else []
    if purge and state_dir.is_dir():
        locks.append(StateLock(state_dir, "agent"))
    try:
        for lock in locks:
            lock.acquire()
        if systemctl and not report:
            if root:
                _systemctl(systemctl, f"--root={os.path.abspath(root)}", "disable", UNIT)
                report.append(("disabled", f"{UNIT} in {root}"))
            else:
                _systemctl(systemctl, "disable", UNIT)
                report.append(("disabled", f"{UNIT} (systemd is not running here: nothing to stop)"))
        report += _remove_files(layout, root, state_dir, purge)
    finally:
        for lock in locks:
            lock.release()
    if systemctl and not root and systemd_running():
        _systemctl(systemctl, "daemon-reload")  # so that systemd forgets the removed unit
    return report


def _remove_files(layout: Layout, root: str, state_dir: Path, purge: bool) -> Report:
    report: Report = []
    # Only the README this command put there: a package may own other files in the doc directory (the .deb's
    # copyright), and dpkg removes those itself.
    for path in (rooted(root, UNIT_PATH), rooted(root, DOC_DIR) / "README.md"):
        if _remove(path):
            report.append(("removed", str(path)))
    with contextlib.suppress(OSError):
        rooted(root, DOC_DIR).rmdir()
    config = rooted(root, CONFIG_PATH)
    try:
        shipped: bytes | None = (layout.root / SHIPPED_CONFIG).read_bytes()
    except FileNotFoundError:
        shipped = None
    if config.exists():
        unchanged = shipped is not None and config.read_bytes() == shipped
        if unchanged or purge:
            _remove(config)
            with contextlib.suppress(OSError):
                config.parent.rmdir()  # only when nothing else (a release key, say) is in it
            report.append(("removed", f"{config} ({'unchanged from the shipped one' if unchanged else '--purge'})"))
        else:
            report.append(("kept", f"{config} (changed from the shipped one; --purge removes it)"))
    if layout.root.is_dir():
        report += _remove_install_root(layout)
    if state_dir.is_dir():
        if purge:
            report += _remove_state(state_dir)
        else:
            report.append(("kept", f"{state_dir} (the journal; --purge removes it)"))
    return report


#: What the agent keeps in its state directory; ``--purge`` removes these and nothing else, so a state directory
#: configured as /, /home or a shared directory loses only the agent's files.
STATE_FILES = ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm", "journal.sqlite3.broken-*",
               "agent.pid", "agent.status", "supervisor.pid", "supervisor.sock", "intake*", "network-backups",
               ".agent.status.*")


def _remove_state(state_dir: Path) -> Report:
    removed = [path for pattern in STATE_FILES for path in sorted(state_dir.glob(pattern))]
    for path in removed:
        _remove(path)
    left = sorted(p.name for p in state_dir.iterdir())
    if not left:
        state_dir.rmdir()
        return [("removed", f"{state_dir} (the journal: --purge)")]
    return [("removed", f"the journal and the agent's files in {state_dir} (--purge)"),
            ("kept", f"{state_dir}: {', '.join(left[:5])}{' ...' if len(left) > 5 else ''} (not the agent's)")]


def _remove_install_root(layout: Layout) -> Report:
    versions = sorted(p.name for p in layout.releases.iterdir()) if layout.releases.is_dir() else []
    links = layout.pointers.present()
    for path in [*(layout.root / name for name in _OWN), *layout.pointers.temporaries()]:
        _remove(path)
    others = sorted(p.name for p in layout.root.iterdir())
    removed = ", ".join(filter(None, [f"releases {', '.join(versions)}" if versions else "",
                                      f"links {', '.join(links)}" if links else ""])) or "empty"
    if others:
        return [("removed", f"{layout.root}/: {removed}"),
                ("kept", f"{layout.root} (it also holds {', '.join(others)})")]
    layout.root.rmdir()
    return [("removed", f"{layout.root} ({removed})")]


def _remove(path: Path) -> bool:
    """Remove a file, link or directory tree; whether there was one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        return False
    return True
