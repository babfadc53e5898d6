"""The install layout: releases side by side, and the ``current`` and ``previous`` links.

    <install root>/releases/<version>/   one virtual environment per release, installed offline
    <install root>/current -> releases/<version>
    <install root>/previous -> releases/<version>
    <install root>/downloads/            bundles being downloaded (``.part``) or downloaded

A link is switched atomically: created under a temporary name, renamed over the old one, and the directory
fsynced, so that after a power cut ``current`` is either the old release or the new one, never missing. A
release directory counts only once its ``.complete`` marker exists: staging that was interrupted is redone.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agent import release
from agent.errors import ReleaseError

log = logging.getLogger(__name__)

COMPLETE = ".complete"
#: Room asked for beyond the unpacked wheels: installed files take several times a wheel's size.
SPACE_FACTOR = 4
SPACE_MARGIN = 64 * 1024 * 1024


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Layout:
    """One install root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.downloads = root / "downloads"

    def release_dir(self, version: str) -> Path:
        return self.releases / release.check_version(version)

    def installed(self, version: str) -> bool:
        return (self.release_dir(version) / COMPLETE).exists()

    def link(self, name: str) -> str | None:
        """The version the link ``current`` or ``previous`` points at, or None."""
        try:
            target = os.readlink(self.root / name)
        except OSError:
            return None
        return Path(target).name

    @property
    def current(self) -> str | None:
        return self.link("current")

    @property
    def previous(self) -> str | None:
        return self.link("previous")

    def agent_command(self, name: str = "current") -> Path:
        return self.root / name / "bin" / "openstack-agent"

    # -- switching --------------------------------------------------------------------------------------

    def switch(self, name: str, version: str) -> None:
        """Point link ``name`` at ``version``: a new link under a temporary name, renamed into place."""
        if not self.installed(version):
            raise ReleaseError(f"release {version} is not installed under {self.releases}")
        temporary = self.root / f".{name}.new"
        temporary.unlink(missing_ok=True)
        os.symlink(Path("releases") / version, temporary)
        os.replace(temporary, self.root / name)
        fsync_directory(self.root)

    def activate(self, version: str) -> None:
        """Make ``version`` current, keeping the release it replaces as previous (idempotent)."""
        old = self.current
        if old == version:
            return
        if old is not None and self.installed(old):
            self.switch("previous", old)
        self.switch("current", version)
        log.info("release %s is now current (previous: %s)", version, old or "none")

    # -- staging ----------------------------------------------------------------------------------------

    def stage(self, bundle: release.Bundle) -> None:
        """Install a checked bundle into ``releases/<version>/`` offline (idempotent; redoes a partial one)."""
        version = bundle.version
        if self.installed(version):
            return
        if bundle.manifest.python != release.python_tag():
            raise ReleaseError(f"release {version} was built for {bundle.manifest.python}, but this guest runs "
                               f"{release.python_tag()}")
        self.releases.mkdir(parents=True, exist_ok=True)
        needed = bundle.unpacked_size * SPACE_FACTOR + SPACE_MARGIN
        free = shutil.disk_usage(self.releases).free
        if free < needed:
            raise ReleaseError(f"not enough free disk space to install release {version}: {free // 2**20} MiB "
                               f"free under {self.releases}, {needed // 2**20} MiB needed")
        target = self.release_dir(version)
        if target.exists():
            shutil.rmtree(target)  # an interrupted staging: start it again
        with tempfile.TemporaryDirectory(prefix=".unpack-", dir=self.releases) as unpacked:
            release.extract(bundle, Path(unpacked))
            # Virtual environments are not relocatable, so the release is built where it will live; the
            # marker, written last, is what makes it count.
            _run([sys.executable, "-m", "venv", "--without-pip", str(target)], "creating the release's venv")
            _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                  "--quiet", "--no-index", "--no-compile", "--find-links", str(Path(unpacked) / release.WHEELS),
                  f"{release.NAME}=={version}", "pip"], f"installing release {version}", offline=True)
        (target / COMPLETE).write_text(f"{version}\n")
        fsync_directory(self.releases)
        log.info("release %s installed in %s", version, target)

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


def _run(argv: list[str], what: str, offline: bool = False) -> None:
    env = dict(os.environ)
    if offline:
        # Only the bundle's wheels: no index, no configured find-links or constraints of the image.
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed: {(result.stderr or result.stdout).strip()[-500:]}")


def install(bundle: release.Bundle, layout: Layout) -> str:
    """A first (or manual) installation: stage the bundle and make it current."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.stage(bundle)
    layout.activate(bundle.version)
    return bundle.version
