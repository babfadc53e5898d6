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

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from agent import __version__, download, notify, release
from agent.errors import CommandFailed, DownloadInterrupted, ReleaseError, RestartRequested
from agent.install import Layout
from agent.machines.base import RESUME, JournaledCommand

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


class AgentUpdate(JournaledCommand):
    NAME = "agentupdate"
    STATES = STATES
    TRANSITIONS = TRANSITIONS
    RECOVERY = RECOVERY
    RESTART_STATES = frozenset({"restarting"})

    def on_enter_received(self) -> None:
        url, md5 = parse_value(self.value)
        if not self.ctx.supervised:
            raise CommandFailed("500", "agentupdate needs the agent to run under 'openstack-agent supervise', "
                                       "which restarts it into the new release")
        self._reply_on_failure(lambda: download.check_url(url, self.ctx.config.allow_http))
        known = self._version_of(md5)
        if known is not None:  # this bundle was seen before: answer without downloading it again
            self._answer_known(known)
        if not self.finished:
            self.advance("download", detail={"url": download.shown_url(url), "md5": md5})

    def on_enter_downloading(self) -> None:
        url, md5 = parse_value(self.value)
        target = self._bundle_path(md5)
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                size = download.download(url, target, self.ctx.config.download_timeout,
                                         self.ctx.config.max_download_size, self.ctx.config.allow_http)
                break
            except DownloadInterrupted as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise CommandFailed("500", f"Update failed: {exc}") from None
                log.warning("download attempt %d of %d stopped (%s); resuming", attempt, DOWNLOAD_ATTEMPTS, exc)
            except ReleaseError as exc:
                raise CommandFailed("500", f"Update failed: {exc}") from None
        self.advance("verify", detail={"bytes": size})

    def on_enter_verifying(self) -> None:
        _url, md5 = parse_value(self.value)
        path = self._bundle_path(md5)
        got = _md5_file(path)
        if got != md5:
            path.unlink(missing_ok=True)  # a retry downloads it again
            # The earlier agents' wording, which operators recognise.
            raise CommandFailed("500", f"MD5 sums do not match ({got} != {md5})")
        bundle = self._open(path)
        version = bundle.version
        self._answer_known(version)
        if self.finished:
            self._discard_download()
            return
        self.advance("stage", detail={"version": version, "signed_by": bundle.signed_by,
                                      "sha256": release.sha256_file(path)})

    def on_enter_staging(self) -> None:
        bundle = self._open(self._bundle_path(parse_value(self.value)[1]))
        self._reply_on_failure(lambda: self._layout().stage(bundle))
        self.advance("switch", detail={"release": str(self._layout().release_dir(bundle.version))})

    def on_enter_switching(self) -> None:
        layout, version = self._layout(), self._target()
        previous = layout.current
        self._reply_on_failure(lambda: layout.activate(version))
        self.advance("restart", detail={"current": version, "previous": previous})

    def on_enter_restarting(self) -> None:
        target = self._target()
        if __version__ == target:
            self.advance("confirm", detail={"running": __version__})
        elif not self.resumed:
            raise RestartRequested(f"restarting into openstack-agent {target} to finish agentupdate")
        else:
            self.advance("rollback", detail={"running": __version__, "target": target})

    def on_enter_confirming(self) -> None:
        target = self._target()
        if __version__ != target:
            self.advance("rollback", detail={"running": __version__, "target": target})
            return
        uptime = self.ctx.uptime()
        probation = self.ctx.config.probation
        if uptime is None or uptime < probation:
            # Health is being ready and then staying up; the supervisor rolls back a release that is not.
            self.resume_after = probation - (uptime or 0.0)
            return
        self.finish("commit", "0", f"Updated to openstack-agent {target}", detail={"uptime": round(uptime, 1)},
                    also=self.ctx.journal.marks_release(target, "good"))
        self._discard_download()
        notify.send(f"{notify.COMMITTED}={target}", f"STATUS=openstack-agent {target} confirmed")
        try:
            removed = self._layout().prune(self.ctx.config.keep_releases)
        except OSError as exc:
            log.warning("could not prune old releases: %s", exc)
        else:
            if removed:
                log.info("pruned old releases: %s", ", ".join(removed))

    def on_enter_rolling_back(self) -> None:
        target = self._target()
        layout = self._layout()
        if layout.current != __version__ and layout.installed(__version__):
            layout.activate(__version__)  # the supervisor normally did this already
        known = self.ctx.journal.release(target)
        why = known[1] if known is not None and known[0] == "bad" else \
            "the new release did not confirm itself healthy"
        self._discard_download()
        self.finish("finish_rollback", "500",
                    f"Update to openstack-agent {target} failed and was rolled back to {__version__}: {why}",
                    detail={"target": target, "running": __version__})

    # -- helpers --------------------------------------------------------------------------------------

    def _answer_known(self, version: str) -> None:
        """Finish at once when ``version`` is the one running, or one marked bad."""
        if version == __version__:
            self.finish("nothing_to_do", "0", f"openstack-agent {version} is already running",
                        detail={"version": version})
            return
        known = self.ctx.journal.release(version)
        if known is not None and known[0] == "bad":
            raise CommandFailed("500", f"openstack-agent {version} is marked bad ({known[1]}); it is not retried")

    def _version_of(self, md5: str) -> str | None:
        """The release a bundle with this MD5 turned out to be, from earlier agentupdate commands."""
        for earlier in self.ctx.journal.commands(limit=20, name=self.NAME):
            details = [json.loads(t.detail) for t in self.ctx.journal.transitions(earlier.id)]
            if earlier.id != self.record.id and any(d.get("md5") == md5 for d in details):
                versions = [d["version"] for d in details if isinstance(d.get("version"), str)]
                if versions:
                    return str(versions[-1])
        return None

    def _layout(self) -> Layout:
        return Layout(self.ctx.config.install_path)

    def _bundle_path(self, md5: str) -> Path:
        return self._layout().downloads / f"{md5}.tar.gz"

    def _target(self) -> str:
        """The version being installed, as journaled when verification read it from the manifest."""
        for row in reversed(self.ctx.journal.transitions(self.record.id)):
            version = json.loads(row.detail).get("version")
            if isinstance(version, str):
                return version
        raise CommandFailed("500", "Update failed: the journal does not say which release was being installed")

    def _open(self, path: Path) -> release.Bundle:
        try:
            keys = release.load_public_keys(self.ctx.config.trusted_key_paths)
            return release.open_bundle(path, keys, self.ctx.config.require_signature)
        except ReleaseError as exc:
            raise CommandFailed("500", f"Update refused: {exc}") from None

    def _discard_download(self) -> None:
        self._bundle_path(parse_value(self.value)[1]).unlink(missing_ok=True)

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
