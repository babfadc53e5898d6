"""agentupdate end to end: the supervisor, real bundles from a loopback HTTP server, real process kills.

Each test installs this checkout's bundle as the current release inside a throw-away root and runs the
supervisor from it, as the systemd unit does; the host side then sends agentupdate as nova does. The update and
its rollback also run with pointer files for ``current`` and ``previous``, the Windows layout.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import __version__, pointers, release
from agent.host import Host
from agent.protocol import GUEST_DIR, HOST_DIR, encode
from agent.xenstore import XenStore
from tests import layouts
from tests.conftest import Service, open_journal, verdict_of, wait_for
from tests.layouts import frozen_build

#: The fixtures that run a test on either kind of pointers when it is parametrised over ``layout_kind``.
service = layouts.service
layout_kind = layouts.layout_kind

STATES = ["received", "downloading", "verifying", "staging", "switching", "restarting", "confirming", "committed"]


def serve(file_server: Any, bundle: Path, name: str | None = None) -> str:
    """Publish ``bundle`` on the loopback server; return nova's agentupdate value, "<url>,<md5>"."""
    target = file_server.directory / (name or bundle.name)
    shutil.copy(bundle, target)
    return f"{file_server.url(target.name)},{hashlib.md5(target.read_bytes()).hexdigest()}"


def versions(host: Host) -> str:
    return host.call("version", "agent", timeout=30)["message"]


def update_path(state_dir: Path) -> list[str]:
    """The states the latest agentupdate command went through."""
    journal = open_journal(state_dir)
    command = journal.commands(name="agentupdate")[0]
    return [t.dest for t in journal.transitions(command.id) if t.trigger not in ("recover", "deliver")]


@pytest.mark.parametrize(("form", "layout_kind"), [("text", pointers.SYMLINK), ("object", pointers.SYMLINK),
                                                   ("text", pointers.FILE)])
def test_good_update(service: Service, bundles, file_server, host: Host, state_dir: Path, form: str,
                     layout_kind: str) -> None:
    """The new release answers version, the journal shows every state, and the pointers moved (links, or
    pointer files as on Windows)."""
    service.start()
    assert versions(host) == __version__
    value: Any = serve(file_server, bundles.good)
    if form == "object":
        url, md5 = value.rsplit(",", 1)
        value = {"url": url, "md5sum": md5}
    assert host.call("agentupdate", value, timeout=30) == {"returncode": "0",
                                                           "message": "Updated to openstack-agent 0.2.0"}
    assert versions(host) == "0.2.0"
    assert update_path(state_dir) == STATES
    assert (service.layout.current, service.layout.previous) == ("0.2.0", __version__)
    assert service.layout.pointers.kind == layout_kind
    journal = open_journal(state_dir)
    assert verdict_of(journal, "0.2.0") == ("good", "")
    assert journal.verify().ok
    assert not list(service.layout.downloads.iterdir()), "the downloaded bundle was kept"


def test_md5_mismatch(service: Service, bundles, file_server, host: Host) -> None:
    """A bundle whose MD5 differs from nova's is refused with the earlier agents' wording."""
    service.start()
    url, md5 = serve(file_server, bundles.good).rsplit(",", 1)
    wrong = "0" * 32
    assert host.call("agentupdate", f"{url},{wrong}", timeout=30) == {
        "returncode": "500", "message": f"MD5 sums do not match ({md5} != {wrong})"}
    assert versions(host) == __version__


def signed_copy(bundle: Path, key: Ed25519PrivateKey, target: Path) -> Path:
    """``bundle`` with an Ed25519 signature of its manifest added (what 'release build --sign' writes)."""
    with tarfile.open(bundle, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            out.addfile(member, io.BytesIO(data))
            if member.name == release.MANIFEST:
                signature = base64.b64encode(key.sign(data)) + b"\n"
                info = tarfile.TarInfo(release.SIGNATURE)
                info.size = len(signature)
                out.addfile(info, io.BytesIO(signature))
    return target


@pytest.mark.parametrize(("signer", "reply"), [
    (None, "Update refused: the bundle is not signed, and policy requires a signature from a trusted key"),
    ("stranger", "Update refused: the bundle's signature does not verify with any trusted key"),
    ("trusted", "Updated to openstack-agent 0.2.0"),
])
def test_signature_policy(service: Service, bundles, file_server, host: Host, system_root: Path,
                          tmp_path: Path, signer: str | None, reply: str) -> None:
    """With update.require_signature, only a bundle signed by a trusted key is installed."""
    keys = {"trusted": Ed25519PrivateKey.generate(), "stranger": Ed25519PrivateKey.generate()}
    (system_root / "trusted.pub").write_bytes(keys["trusted"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    bundle = bundles.good if signer is None else signed_copy(bundles.good, keys[signer], tmp_path / "s.tar.gz")
    service.start("--require-signature", "true", "--trusted-keys", "/trusted.pub")
    answer = host.call("agentupdate", serve(file_server, bundle, "openstack-agent-0.2.0.tar.gz"), timeout=30)
    assert answer["message"] == reply
    assert versions(host) == ("0.2.0" if signer == "trusted" else __version__)


def test_cut_download_resumes(service: Service, bundles, file_server, host: Host) -> None:
    """A download cut by the server resumes with Range and If-Range, and the update completes."""
    service.start()
    value = serve(file_server, bundles.good)
    file_server.cut_next = 1_000_000
    assert host.call("agentupdate", value, timeout=30)["returncode"] == "0"
    statuses = [(entry[1], entry[3]) for entry in file_server.log]
    assert statuses == [(None, 200), ("bytes=1000000-", 206)]


def test_download_resumes_after_the_agent_is_killed_mid_transfer(service: Service, bundles, file_server,
                                                                 guest: XenStore, host: Host) -> None:
    """The agent killed while the bundle is half downloaded: the restarted agent asks for the rest."""
    service.start()
    value = serve(file_server, bundles.good)
    md5 = value.rsplit(",", 1)[1]
    file_server.pause = 0.2
    request = str(uuid.uuid4())
    guest.write(f"{HOST_DIR}/{request}", encode({"name": "agentupdate", "value": value}))
    part = service.layout.downloads / f"{md5}.tar.gz.part"
    wait_for(lambda: part.exists() and part.stat().st_size > 1_000_000, timeout=30)
    os.kill(service.agent_pid(), signal.SIGKILL)
    file_server.pause = 0.0
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/{request}"), timeout=90))
    assert reply == {"returncode": "0", "message": "Updated to openstack-agent 0.2.0"}
    (_, first_range, _, first_status), (_, resumed_range, if_range, resumed_status) = file_server.log[:2]
    assert (first_range, first_status) == (None, 200)
    assert resumed_status == 206 and resumed_range and if_range
    assert int(resumed_range.removeprefix("bytes=").rstrip("-")) >= 1_000_000


@pytest.mark.parametrize(("bundle", "why", "layout_kind"), [
    ("crash", "crashed 3 times within 60 s (last exit status 3)", pointers.SYMLINK),
    ("hang", "did not signal ready within 4 s", pointers.SYMLINK),
    ("crash", "crashed 3 times within 60 s (last exit status 3)", pointers.FILE),
])
def test_bad_release_is_rolled_back_and_never_retried(service: Service, bundles, file_server, host: Host,
                                                      state_dir: Path, bundle: str, why: str,
                                                      layout_kind: str) -> None:
    """A release that crashes at start, or never gets ready, is marked bad and rolled back (pointer files
    too); the old release replies "500" with why, and a second request for it is refused at once."""
    service.start("--ready-deadline", "4")
    version = {"crash": "0.3.0", "hang": "0.4.0"}[bundle]
    value = serve(file_server, getattr(bundles, bundle))
    assert host.call("agentupdate", value, timeout=60) == {
        "returncode": "500",
        "message": f"Update to openstack-agent {version} failed and was rolled back to {__version__}: {why}"}
    assert versions(host) == __version__
    assert (service.layout.current, service.layout.pointers.kind) == (__version__, layout_kind)
    assert verdict_of(open_journal(state_dir), version) == ("bad", why)
    assert update_path(state_dir)[-2:] == ["rolling_back", "rolled_back"]
    served_before = len(file_server.log)
    assert host.call("agentupdate", value, timeout=30) == {
        "returncode": "500", "message": f"openstack-agent {version} is marked bad ({why}); it is not retried"}
    assert len(file_server.log) == served_before, "the bad release was downloaded again"
    assert update_path(state_dir)[-2:] == ["received", "failed"]


def test_request_for_the_running_version(service: Service, bundles, file_server, host: Host) -> None:
    """Asking for the release already running is answered at once, without staging or restarting."""
    service.start()
    assert host.call("agentupdate", serve(file_server, bundles.base), timeout=30) == {
        "returncode": "0", "message": f"openstack-agent {__version__} is already running"}


def test_traversal_archive_is_refused(service: Service, bundles, file_server, host: Host, tmp_path: Path) -> None:
    """A bundle carrying a path out of its directory is refused before anything is extracted."""
    crafted = tmp_path / "evil.tar.gz"
    with tarfile.open(bundles.good, "r:gz") as source, tarfile.open(crafted, "w:gz") as out:
        for member in source.getmembers():
            out.addfile(member, source.extractfile(member))
        evil = tarfile.TarInfo("wheels/../../../etc/cron.d/evil")
        evil.size = 4
        out.addfile(evil, io.BytesIO(b"evil"))
    service.start()
    answer = host.call("agentupdate", serve(file_server, crafted), timeout=30)
    assert answer == {"returncode": "500", "message": "Update refused: the bundle holds a path that leaves its "
                                                      "directory ('wheels/../../../etc/cron.d/evil'); refusing it"}


def test_a_bundle_for_another_system_is_refused(service: Service, file_server, host: Host, tmp_path: Path) -> None:
    """A Windows (frozen) bundle sent to a Linux guest is refused after verification, before anything is
    staged, saying so."""
    bundle = release.build_frozen(tmp_path / "out", frozen_build(tmp_path / "dist", "0.5.0"), "0.5.0",
                                  platform="win-amd64")
    service.start()
    assert host.call("agentupdate", serve(file_server, bundle), timeout=30) == {
        "returncode": "500", "message": "Update refused: a Windows bundle cannot be installed on Linux (release "
                                        "0.5.0 was built for win-amd64)"}
    assert not service.layout.release_dir("0.5.0").exists()
    assert versions(host) == __version__


@pytest.mark.parametrize("whole_service", [False, True], ids=["agent", "service"])
@pytest.mark.parametrize("state", STATES[1:])
def test_sigkill_at_every_state(service: Service, bundles, file_server, guest: XenStore, host: Host,
                                state_dir: Path, state: str, whole_service: bool) -> None:
    """Killed on entering ``state`` (the agent, or the supervisor with it), the update resumes and completes
    once the service runs again; the VM ends with a working agent of the new release."""
    point = f"{'service:' if whole_service else ''}enter:{state}"
    service.start("--crash-at", point)
    request = str(uuid.uuid4())
    guest.write(f"{HOST_DIR}/{request}", encode({"name": "agentupdate", "value": serve(file_server, bundles.good)}))
    if whole_service:
        assert service.process is not None
        assert service.process.wait(60) == -signal.SIGKILL
        service.start()
    reply = json.loads(wait_for(lambda: guest.read(f"{GUEST_DIR}/{request}"), timeout=90))
    assert reply == {"returncode": "0", "message": "Updated to openstack-agent 0.2.0"}
    assert versions(host) == "0.2.0"
    assert update_path(state_dir).count("committed") == 1
    assert open_journal(state_dir).verify().ok
