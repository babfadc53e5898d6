"""Release bundles: what build puts in them (wheels and the service's files), signatures, and the archives
verification refuses."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import __version__, release
from agent.cli import main
from agent.errors import ReleaseError
from tests.releases import ROOT


def write_keys(directory: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_bundle_holds_manifest_and_every_wheel(bundles) -> None:
    """A bundle names its version, Python and platform, and lists the agent's, its dependencies' and pip's
    wheels with their SHA-256."""
    bundle = release.open_bundle(bundles.good)
    manifest = bundle.manifest
    assert (manifest.version, manifest.python, manifest.platform) == ("0.2.0", release.python_tag(),
                                                                       release.platform_tag())
    names = {Path(n).name.split("-")[0].lower() for n in manifest.files}
    assert {"openstack_agent", "transitions", "cryptography", "pyxs", "sqlalchemy", "alembic", "pip"} <= names
    assert release.open_bundle(bundles.base).version == __version__


def test_signed_bundle_verifies_only_with_its_key(bundles, tmp_path: Path) -> None:
    """--sign adds an Ed25519 signature of the manifest; verify accepts its key and refuses another."""
    private, public = write_keys(tmp_path, "release")
    _other_private, other_public = write_keys(tmp_path, "other")
    signed = release.build(tmp_path / "out", Path(__file__).resolve().parents[1], "0.2.1", sign_key=private)
    bundle = release.open_bundle(signed, [release.load_public_key(public)], require_signature=True)
    assert bundle.signed_by == release.fingerprint(release.load_public_key(public))
    with pytest.raises(ReleaseError, match="does not verify with any trusted key"):
        release.open_bundle(signed, [release.load_public_key(other_public)], require_signature=True)
    assert main(["release", "verify", str(signed), "--key", str(public)], io.StringIO()) == 0
    assert main(["release", "verify", str(signed), "--key", str(other_public)], io.StringIO()) == 10


def test_unsigned_bundle_under_policy(bundles, tmp_path: Path) -> None:
    """When policy requires a signature, an unsigned bundle is refused with that reason."""
    _private, public = write_keys(tmp_path, "release")
    with pytest.raises(ReleaseError, match="not signed, and policy requires a signature"):
        release.open_bundle(bundles.good, [release.load_public_key(public)], require_signature=True)


def copy_with(bundle: Path, target: Path, extra: tarfile.TarInfo | None = None, data: bytes = b"",
              replace: str | None = None) -> Path:
    """A copy of ``bundle`` with one more member, or with one member's content replaced."""
    with tarfile.open(bundle, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            content = source.extractfile(member)
            payload = content.read() if content else b""
            if member.name == replace:
                payload = payload[:-10] + b"x" * 10
            member.size = len(payload)
            out.addfile(member, io.BytesIO(payload))
        if extra is not None:
            extra.size = len(data) if extra.isfile() else 0
            out.addfile(extra, io.BytesIO(data) if extra.isfile() else None)
    return target


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(("extra", "reason"), [
    (member("/etc/cron.d/evil"), "absolute path"),
    (member("wheels/../../evil"), "leaves its directory"),
    (member("wheels/link.whl", tarfile.SYMTYPE, "/etc/shadow"), "a link"),
    (member("wheels/hard.whl", tarfile.LNKTYPE, "manifest.json"), "a link"),
    (member("wheels/dev", tarfile.CHRTYPE), "device or special file"),
    (member("wheels/fifo", tarfile.FIFOTYPE), "device or special file"),
])
def test_dangerous_archives_are_refused(bundles, tmp_path: Path, extra: tarfile.TarInfo, reason: str) -> None:
    """Traversal, links and devices are refused, by verification and by extraction, before anything is
    written."""
    crafted = copy_with(bundles.good, tmp_path / "crafted.tar.gz", extra, b"payload")
    with pytest.raises(ReleaseError, match=reason):
        release.open_bundle(crafted)
    with pytest.raises(ReleaseError, match=reason):
        release.extract(release.Bundle(crafted, release.open_bundle(bundles.good).manifest, None), tmp_path / "x")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*"))


def test_unlisted_file_is_refused(bundles, tmp_path: Path) -> None:
    """A file the manifest does not list (and so no digest covers) makes the bundle invalid."""
    crafted = copy_with(bundles.good, tmp_path / "crafted.tar.gz", member("wheels/unlisted.whl"), b"payload")
    with pytest.raises(ReleaseError, match=r"files its manifest does not list: wheels/unlisted\.whl"):
        release.open_bundle(crafted)


def test_altered_wheel_is_detected(bundles, tmp_path: Path) -> None:
    """A wheel whose bytes differ from the manifest's SHA-256 fails verification."""
    wheel = next(n for n in release.open_bundle(bundles.good).manifest.files if "openstack_agent" in n)
    altered = copy_with(bundles.good, tmp_path / "altered.tar.gz", replace=wheel)
    with pytest.raises(ReleaseError, match="does not match the manifest"):
        release.open_bundle(altered)


def test_not_a_bundle(tmp_path: Path) -> None:
    """A file that is not a bundle is named as such."""
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(ReleaseError, match="is not a readable release bundle"):
        release.open_bundle(junk)


def test_verify_cli_prints_the_manifest_summary(bundles) -> None:
    """'release verify --json' prints version, target Python and platform, file count and signer."""
    out = io.StringIO()
    assert main(["release", "verify", str(bundles.good), "--json"], out) == 0
    summary = json.loads(out.getvalue())
    assert summary["version"] == "0.2.0" and summary["signed_by"] is None and summary["files"] >= 8


@pytest.mark.parametrize("version", ["1.2.3-beta", "../1", "1..2", ""])
def test_build_refuses_a_bad_version(tmp_path: Path, version: str) -> None:
    """Versions are dotted numbers (what nova compares, and a safe directory name)."""
    with pytest.raises(ReleaseError, match="invalid release version"):
        release.build(tmp_path, Path(__file__).resolve().parents[1], version)


@pytest.mark.parametrize(("name", "origin"), release.SERVICE_FILES.items())
def test_bundle_carries_the_service_files(bundles, name: str, origin: str) -> None:
    """The unit, the annotated configuration and the README travel in the bundle as the checkout has them,
    under the manifest's digests."""
    bundle = release.open_bundle(bundles.base)
    assert f"service/{name}" in bundle.manifest.files
    assert release.read_member(bundle, f"service/{name}") == (ROOT / origin).read_bytes()


@pytest.mark.parametrize("name", [f"service/{n}" for n in release.SERVICE_FILES])
def test_altered_service_file_is_detected(bundles, tmp_path: Path, name: str) -> None:
    """A service file whose bytes differ from the manifest's SHA-256 fails verification, and reading it from a
    bundle replaced after it was checked fails too."""
    altered = copy_with(bundles.good, tmp_path / "altered.tar.gz", replace=name)
    with pytest.raises(ReleaseError, match="does not match the manifest"):
        release.open_bundle(altered)
    swapped = release.Bundle(altered, release.open_bundle(bundles.good).manifest, None)
    with pytest.raises(ReleaseError, match=re.escape(f"{name} in altered.tar.gz no longer matches")):
        release.read_member(swapped, name)


def test_build_refuses_a_source_without_the_unit(tmp_path: Path) -> None:
    """A checkout without packaging/openstack-agent.service cannot make a bundle that installs itself."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*cache*",
                                                                "openstack-agent.service"))
    with pytest.raises(ReleaseError, match=re.escape("lacks packaging/openstack-agent.service, which every bundle")):
        release.build(tmp_path / "out", source)


@pytest.mark.parametrize(("built_for", "kind", "here", "refusal"), [
    ("linux-x86_64", release.KIND_WHEELS, "win-amd64", "a Linux bundle cannot be installed on Windows (release "
                                                       "1.2.3 was built for linux-x86_64)"),
    ("win-amd64", release.FROZEN, "linux-x86_64", "a Windows bundle cannot be installed on Linux (release 1.2.3 "
                                                  "was built for win-amd64)"),
    ("win-amd64", release.KIND_WHEELS, "win-amd64", "release 1.2.3's bundle holds wheels, which need Python and "
                                                    "pip; on Windows a release is the frozen build"),
    ("win-amd64", release.FROZEN, "win32", None),
    ("linux-x86_64", release.FROZEN, "linux-aarch64", None),
    ("linux-x86_64", release.KIND_WHEELS, "linux-x86_64", None),
])
def test_a_bundle_is_for_its_system(built_for: str, kind: str, here: str, refusal: str | None) -> None:
    """A bundle installs only on the system its platform names, and on Windows only as a frozen build."""
    manifest = release.Manifest("1.2.3", "cp311", built_for, {}, kind)
    assert release.Manifest.from_bytes(manifest.to_bytes()) == manifest
    if refusal is None:
        release.check_system(manifest, here)
    else:
        with pytest.raises(ReleaseError, match=re.escape(refusal)):
            release.check_system(manifest, here)


@pytest.mark.parametrize(("kind", "read"), [(None, release.KIND_WHEELS), ("venv", None)])
def test_manifest_kind(kind: str | None, read: str | None) -> None:
    """A manifest without a kind (bundles built before frozen ones) holds wheels; an unknown kind is refused."""
    document = json.loads(release.Manifest("1.2.3", "cp311", "linux-x86_64", {}).to_bytes())
    del document["kind"]
    if kind is not None:
        document["kind"] = kind
    data = json.dumps(document).encode()
    if read is not None:
        assert release.Manifest.from_bytes(data).kind == read
    else:
        with pytest.raises(ReleaseError, match="names the kind 'venv'; this release knows wheels and frozen"):
            release.Manifest.from_bytes(data)


def test_frozen_bundle_refuses_links(tmp_path: Path) -> None:
    """A frozen build holding a symbolic link is refused when it is bundled, naming the link."""
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / release.FROZEN_PROGRAM).write_text("program")
    (folder / "escape").symlink_to("/etc/passwd")
    with pytest.raises(ReleaseError, match="escape is a link or a special file"):
        release.build_frozen(tmp_path / "out", folder, "0.5.0")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReleaseError, match=r"is not a frozen build: it has no openstack-agent\.exe"):
        release.build_frozen(tmp_path / "out", empty, "0.5.0")
