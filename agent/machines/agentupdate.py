"""agentupdate: install a new release and restart into it, or roll back; the machine spans two processes.

The running (old) release downloads the bundle, verifies it (the protocol's MD5, the manifest's SHA-256
values, an Ed25519 signature when policy asks), stages it into ``releases/<version>/``, switches the
``current`` link and asks the supervisor for a restart. The new release, started by the supervisor,
finds the command in ``restarting``, confirms it has stayed up for ``update.probation`` seconds after
signalling ready, and commits: it replies "0" naming itself and marks itself good. If it crashes or never
gets ready, the supervisor marks it bad and switches back; the old release then finds the command in
``restarting`` or ``confirming`` under a version that is not the target, and rolls back: it replies "500"
with the supervisor's reason. Every state is journaled before its work, so any interruption resumes.

    received --download--> downloading --verify--> verifying --stage--> staging --switch--> switching
    switching --restart--> restarting --confirm--> confirming --commit--> committed
    restarting, confirming --rollback--> rolling_back --finish_rollback--> rolled_back
    received, verifying --nothing_to_do--> done        (the requested release is already running)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.errors import CommandFailed, DownloadInterrupted, ReleaseError, RestartRequested
from agent.journal import releases
from agent.machines.base import RESUME, Command, Event

if TYPE_CHECKING:
    from agent.install import Layout
    from agent.release import Bundle

# agent.download, agent.release and agent.install (ssl, http.client, tarfile, zipfile: 3.5 MB of a daemon's
# 30) are imported by the states that use them: a guest that is never updated does not carry them.

log = logging.getLogger(__name__)

STATES = ["received", "downloading", "verifying", "staging", "switching", "restarting", "confirming", "committed",
          "rolling_back", "rolled_back", "done"]
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "download", "source": "received", "dest": "downloading"},
    {"trigger": "verify", "source": "downloading", "dest": "verifying"},
    {"trigger": "stage", "source": "verifying", "dest": "staging"},
    {"trigger": "switch", "source": "staging", "dest": "switching"},
    {"trigger": "restart", "source": "switching", "dest": "restarting"},
    {"trigger": "confirm", "source": "restarting", "dest": "confirming"},
    {"trigger": "commit", "source": "confirming", "dest": "committed"},
    {"trigger": "rollback", "source": ["restarting", "confirming"], "dest": "rolling_back"},
    {"trigger": "finish_rollback", "source": "rolling_back", "dest": "rolled_back"},
    {"trigger": "nothing_to_do", "source": ["received", "verifying"], "dest": "done"},
]
#: "committed" is the update's success, reached by the release it installed.
TERMINAL = frozenset({"committed", "rolled_back", "done"})
RECOVERY = {
    "received": RESUME,
    "downloading": RESUME,  # continues the .part file with Range/If-Range
    "verifying": RESUME,
    "staging": RESUME,  # a release without its .complete marker is installed again
    "switching": RESUME,  # switching links is idempotent
    "restarting": RESUME,  # the target release confirms; any other rolls back
    "confirming": RESUME,
    "rolling_back": RESUME,
}

DOWNLOAD_ATTEMPTS = 3
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
USAGE = 'Invalid agentupdate value: expected "<url>,<md5>" or {"url": "<url>", "md5sum": "<md5>"}'


def parse_value(value: Any) -> tuple[str, str]:
    """(url, md5) from either form nova and the earlier agents used."""
    if isinstance(value, dict):
        url, md5 = value.get("url"), value.get("md5sum")
    elif isinstance(value, str) and "," in value:
        url, _, md5 = value.rpartition(",")
    else:
        raise CommandFailed("500", USAGE)
    if not isinstance(url, str) or not isinstance(md5, str) or not _MD5.fullmatch(md5.strip()):
        raise CommandFailed("500", USAGE)
    return url.strip(), md5.strip().lower()


@dataclasses.dataclass(frozen=True)
class UpdateData:
    """The update's working data: the bundle asked for, and the release it turned out to be."""

    url: str = ""
    md5: str = ""
    #: The release being installed, as the bundle's manifest names it (set by verification).
    version: str = ""


class AgentUpdate(Command):
    NAME = "agentupdate"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    TERMINAL = TERMINAL
    RECOVERY = RECOVERY
    Data = UpdateData
    PLANNED_RESTARTS = frozenset({"restarting"})

    def on_enter_received(self, event: Event) -> None:
        from agent import download

        url, md5 = parse_value(self.request_value())
        if not self.ctx.ports.runtime.supervised:
            raise CommandFailed("500", "agentupdate needs the agent to run under 'openstack-agent supervise', "
                                       "which restarts it into the new release")
        self._reply_on_failure(lambda: download.check_url(url, self.ctx.config.allow_http))
        seen = self._version_of(md5)
        if seen is not None and self._is_running(seen):  # this bundle was seen before: no download
            self.finish("nothing_to_do", "0", f"openstack-agent {seen} is already running",
                        detail={"version": seen})
            return
        self.advance("download", detail={"url": download.url_for_log(url), "md5": md5},
                     data=UpdateData(url, md5))

    def on_enter_downloading(self, event: Event) -> None:
        from agent import download

        data: UpdateData = self.data
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                size = download.download(data.url, self._bundle_path(data), self.ctx.config.download_timeout,
                                         self.ctx.config.max_download_size, self.ctx.config.allow_http)
                break
            except DownloadInterrupted as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise CommandFailed("500", f"Update failed: {exc}") from None
                log.warning("download attempt %d of %d stopped (%s); resuming", attempt, DOWNLOAD_ATTEMPTS, exc)
            except ReleaseError as exc:
                raise CommandFailed("500", f"Update failed: {exc}") from None
        self.advance("verify", detail={"bytes": size})

    def on_enter_verifying(self, event: Event) -> None:
        from agent import release

        data: UpdateData = self.data
        path = self._bundle_path(data)
        got = _md5_file(path)
        if got != data.md5:
            path.unlink(missing_ok=True)  # a retry downloads it again
            # The earlier agents' wording, which operators recognise.
            raise CommandFailed("500", f"MD5 sums do not match ({got} != {data.md5})")
        bundle = self._open(path)
        version = bundle.version
        if self._is_running(version):
            self._discard_download()
            self.finish("nothing_to_do", "0", f"openstack-agent {version} is already running",
                        detail={"version": version})
            return
        self.advance("stage", detail={"version": version, "signed_by": bundle.signed_by,
                                      "sha256": release.sha256_file(path)},
                     data=dataclasses.replace(data, version=version))

    def on_enter_staging(self, event: Event) -> None:
        data: UpdateData = self.data
        bundle = self._open(self._bundle_path(data))
        self._reply_on_failure(lambda: self._layout().stage(bundle))
        self.advance("switch", detail={"release": str(self._layout().release_dir(bundle.version))})

    def on_enter_switching(self, event: Event) -> None:
        layout, version = self._layout(), self._target()
        previous = layout.current
        self._reply_on_failure(lambda: layout.activate(version))
        self.advance("restart", detail={"current": version, "previous": previous})

    def on_enter_restarting(self, event: Event) -> None:
        target = self._target()
        if __version__ == target:
            self.advance("confirm", detail={"running": __version__})
        elif not self.resumed:
            raise RestartRequested(f"restarting into openstack-agent {target} to finish agentupdate")
        else:
            self.advance("rollback", detail={"running": __version__, "target": target})

    def on_enter_confirming(self, event: Event) -> None:
        target = self._target()
        if __version__ != target:
            self.advance("rollback", detail={"running": __version__, "target": target})
            return
        uptime = self.ctx.ports.runtime.uptime()
        probation = self.ctx.config.probation
        if uptime is None or uptime < probation:
            # Health is being ready and then staying up; the supervisor rolls back a release that is not.
            self.wait(probation - (uptime or 0.0))
            return
        self.finish("commit", "0", f"Updated to openstack-agent {target}", detail={"uptime": round(uptime, 1)},
                    records=releases.marks(target, releases.GOOD))

    def on_enter_committed(self, event: Event) -> None:
        """Tidy up once the commit is journaled (a terminal state: a crash here leaves only litter)."""
        target = self._target()
        self._discard_download()
        self.ctx.ports.runtime.committed(target)
        try:
            removed = self._layout().prune(self.ctx.config.keep_releases)
        except OSError as exc:
            log.warning("could not prune old releases: %s", exc)
        else:
            if removed:
                log.info("pruned old releases: %s", ", ".join(removed))

    def on_enter_rolling_back(self, event: Event) -> None:
        target = self._target()
        layout = self._layout()
        if layout.current != __version__ and layout.installed(__version__):
            layout.activate(__version__)  # the supervisor normally did this already
        verdict = releases.verdict(self.ctx.journal, target)
        why = verdict.reason if verdict is not None and verdict.bad else \
            "the new release did not confirm itself healthy"
        self._discard_download()
        self.finish("finish_rollback", "500",
                    f"Update to openstack-agent {target} failed and was rolled back to {__version__}: {why}",
                    detail={"target": target, "running": __version__})

    # -- working data ---------------------------------------------------------------------------------

    def legacy_data(self) -> UpdateData:
        """A command journaled before working data: the bundle from its request, the release from the
        details verification journaled (where releases of that time kept it)."""
        try:
            url, md5 = parse_value(self.request_value())
        except CommandFailed:
            url, md5 = "", ""
        version = ""
        for row in self.ctx.journal.transitions(self.record.id):
            found = json.loads(row.detail).get("version")
            version = found if isinstance(found, str) else version
        return UpdateData(url, md5, version)

    # -- helpers --------------------------------------------------------------------------------------

    def _is_running(self, version: str) -> bool:
        """Whether ``version`` is the release running; a release marked bad is refused."""
        if version == __version__:
            return True
        verdict = releases.verdict(self.ctx.journal, version)
        if verdict is not None and verdict.bad:
            raise CommandFailed("500", f"openstack-agent {version} is marked bad ({verdict.reason}); "
                                       "it is not retried")
        return False

    def _version_of(self, md5: str) -> str | None:
        """The release a bundle with this MD5 turned out to be, by the working data of earlier updates."""
        for earlier in self.ctx.journal.commands(limit=20, name=self.NAME):
            if earlier.id == self.record.id or earlier.data is None:
                continue
            data = json.loads(earlier.data)
            if data.get("md5") == md5 and isinstance(data.get("version"), str) and data["version"]:
                return str(data["version"])
        return None

    def _layout(self) -> Layout:
        from agent.install import Layout

        return Layout(self.ctx.config.install_path)

    def _bundle_path(self, data: UpdateData) -> Path:
        return self._layout().downloads / f"{data.md5}.tar.gz"

    def _target(self) -> str:
        """The version being installed, as verification journaled it."""
        version: str = self.data.version
        if not version:
            raise CommandFailed("500", "Update failed: the journal does not say which release was being installed")
        return version

    def _open(self, path: Path) -> Bundle:
        from agent import release

        try:
            keys = release.load_public_keys(self.ctx.config.trusted_key_paths)
            bundle = release.open_bundle(path, keys, self.ctx.config.require_signature)
            release.check_system(bundle.manifest)  # a Linux bundle on Windows, or the reverse
            return bundle
        except ReleaseError as exc:
            raise CommandFailed("500", f"Update refused: {exc}") from None

    def _discard_download(self) -> None:
        data: UpdateData = self.data
        if data.md5:
            self._bundle_path(data).unlink(missing_ok=True)

    @staticmethod
    def _reply_on_failure(action: Any) -> None:
        """Run ``action``; a ReleaseError becomes the command's "500" reply."""
        try:
            action()
        except ReleaseError as exc:
            raise CommandFailed("500", f"Update failed: {exc}") from None


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the protocol's checksum, not a security control
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
