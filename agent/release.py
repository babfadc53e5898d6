"""Release bundles: one archive a guest installs offline, checked before anything of it is used.

A bundle ``openstack-agent-<version>.tar.gz`` holds::

    manifest.json       format, name, version, kind, target Python and platform, SHA-256 of every other file
    manifest.json.sig   optional: an Ed25519 signature of manifest.json's exact bytes (base64)

and, by its kind (the manifest's ``kind``; a manifest without one is of the kind ``wheels``):

    wheels/*.whl        ``wheels``: the agent's wheel, its dependencies' wheels, and pip's (so each release
                        can install the next one), installed into a venv
    service/            ``wheels``: what ``install --service`` puts in place: the systemd unit, the annotated
                        configuration and the README the unit's Documentation= names (from the checkout's
                        packaging/ and README.md), so that a guest needs the bundle alone
    frozen/             ``frozen``: a frozen one-folder build (PyInstaller's ``openstack-agent.exe`` and
                        ``_internal/``), copied as it is: what a Windows guest installs, having no Python

A bundle is for the system its manifest's platform names: ``check_system`` refuses a Linux bundle on Windows
and the reverse, and a bundle of wheels on Windows.

``build`` makes one from a source checkout, optionally under another version number (the documented way
to make test and candidate releases) and, for the update tests only, with a start-up fault built in
(``agent.faults.startup_fault``); it refuses a source that holds a fault marker itself, so that no other
release can carry one. ``open_bundle`` refuses anything but regular files and directories with plain
relative names (no absolute paths, ``..``, links or devices) before it reads a byte, then checks the
manifest, the signature (required when policy says so) and every file's digest; ``read_member`` reads one
file again and checks it against its digest once more, for whoever uses it after the bundle was opened.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from agent import faults, jsontext
from agent.errors import ReleaseError

if TYPE_CHECKING:  # cryptography is imported where keys are used: the daemon need not carry it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

NAME = "openstack-agent"
FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
WHEELS = "wheels"
SERVICE = "service"
#: The kinds of bundle (the manifest's ``kind``); FROZEN is also the folder of a frozen bundle's build.
KIND_WHEELS = "wheels"
FROZEN = "frozen"
KINDS = (KIND_WHEELS, FROZEN)
#: A frozen build's program, in its folder and in the release directory.
FROZEN_PROGRAM = "openstack-agent.exe"
#: The system a platform tag (``sysconfig.get_platform()``) names, by its prefix, in words.
SYSTEMS = {"win": "Windows", "linux": "Linux", "freebsd": "FreeBSD", "macosx": "macOS"}
#: The service's files in a bundle (``service/<name>``) and where each comes from in a checkout.
SERVICE_FILES = {"openstack-agent.service": "packaging/openstack-agent.service",
                 "agent.toml": "packaging/agent.toml",
                 "README.md": "README.md"}
MAX_MANIFEST = 1024 * 1024
#: A manifest nests two levels (the files' digests); deeper text is refused before it is parsed.
MANIFEST_DEPTH = 8
#: Versions are dotted numbers: what nova compares with LooseVersion, and a safe directory name.
VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}")
_VERSION_LINE = re.compile(r'^__version__ = "[^"]*"$', re.MULTILINE)
_SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                        ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")


def python_tag() -> str:
    """The interpreter a bundle's compiled wheels are for, such as ``cp311``."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def platform_tag() -> str:
    return sysconfig.get_platform()


def check_version(version: str) -> str:
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"invalid release version {version!r}: use dotted numbers such as 1.2.3")
    return version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def system_of(platform: str) -> str:
    """The system a platform tag names, in words: ``win-amd64`` is Windows, ``linux-x86_64`` Linux."""
    for prefix, system in SYSTEMS.items():
        if platform.startswith(prefix):
            return system
    return platform


def check_system(manifest: Manifest, platform: str | None = None) -> None:
    """Refuse a bundle that cannot run on this system (``platform``: this one's tag unless given)."""
    here = system_of(platform or platform_tag())
    theirs = system_of(manifest.platform)
    if theirs != here:
        raise ReleaseError(f"a {theirs} bundle cannot be installed on {here} (release {manifest.version} was "
                           f"built for {manifest.platform})")
    if here == "Windows" and manifest.kind != FROZEN:
        raise ReleaseError(f"release {manifest.version}'s bundle holds wheels, which need Python and pip; on "
                           f"Windows a release is the frozen build ({FROZEN_PROGRAM}): install its bundle")


@dataclasses.dataclass(frozen=True)
class Manifest:
    version: str
    python: str
    platform: str
    files: dict[str, str]
    kind: str = KIND_WHEELS

    def to_bytes(self) -> bytes:
        document = {"format": FORMAT, "name": NAME, "version": self.version, "kind": self.kind,
                    "python": self.python, "platform": self.platform, "files": dict(sorted(self.files.items()))}
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            document = jsontext.loads(data, MANIFEST_DEPTH)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ReleaseError(f"the bundle's manifest is not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("name") != NAME:
            raise ReleaseError(f"the bundle's manifest is not an {NAME} manifest of format {FORMAT}")
        files = document.get("files")
        fields = [document.get(k) for k in ("version", "python", "platform")]
        if not all(isinstance(f, str) for f in fields) or not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ReleaseError("the bundle's manifest lacks its version, python, platform or files")
        version, python, platform = (str(f) for f in fields)
        kind = document.get("kind", KIND_WHEELS)
        if kind not in KINDS:
            raise ReleaseError(f"the bundle's manifest names the kind {kind!r}; this release knows "
                               f"{' and '.join(KINDS)}")
        return cls(check_version(version), python, platform, dict(files), kind)


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A bundle whose members, manifest, signature and digests were checked."""

    path: Path
    manifest: Manifest
    #: Fingerprint of the trusted key that signed it, or None when unsigned.
    signed_by: str | None

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def unpacked_size(self) -> int:
        with tarfile.open(self.path, "r:gz") as archive:
            return sum(m.size for m in archive.getmembers())


# -- keys -----------------------------------------------------------------------------------------------

def fingerprint(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ReleaseError(f"cannot read the public key {path}: {exc.strerror}") from None
    except ValueError:
        raise ReleaseError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError(f"{path} is not an Ed25519 public key")
    return key


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    return [load_public_key(path) for path in paths]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ReleaseError(f"cannot read the signing key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise ReleaseError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path} is not an Ed25519 private key (openssl genpkey -algorithm ed25519)")
    return key


# -- building -------------------------------------------------------------------------------------------

def source_version(source: Path) -> str:
    text = (source / "agent" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]*)"$', text, re.MULTILINE)
    if found is None:
        raise ReleaseError(f"{source} is not an {NAME} checkout: agent/__init__.py has no __version__")
    return found.group(1)


def build(out_dir: Path, source: Path, version: str | None = None, sign_key: Path | None = None,
          startup_fault: str | None = None) -> Path:
    """Build the bundle of ``source`` (a checkout), as ``version`` when given; return its path.

    The wheels are built from a copy of the source without its build/, dist/ and caches, so that nothing an
    earlier build left there gets in. ``startup_fault`` ("crash" or "hang") builds a release that fails at
    start, for the tests of update rollbacks: the copy gets the marker ``agent.faults.startup_fault`` looks
    for, and the agent's wheel is checked to carry that fault and no other. The command line does not offer
    it.
    """
    source = source.resolve()
    if not (source / "pyproject.toml").is_file():
        raise ReleaseError(f"{source} is not a source checkout (no pyproject.toml); pass --source")
    marker = source / "agent" / faults.STARTUP_FAULT
    if marker.exists():
        raise ReleaseError(f"{marker} is a start-up fault marker, which makes a release crash or hang at "
                           "start; remove it")
    if startup_fault is not None and startup_fault not in faults.STARTUP_FAULTS:
        raise ReleaseError(f"no start-up fault {startup_fault!r}; choose one of {', '.join(faults.STARTUP_FAULTS)}")
    if version is not None:
        check_version(version)
    key = load_private_key(sign_key) if sign_key else None
    with tempfile.TemporaryDirectory(prefix="openstack-agent-release-") as scratch:
        work = Path(scratch)
        # Built in place, the wheel would also get what an earlier build left in build/: modules removed
        # since, a fault marker deleted since.
        copy = work / "source"
        shutil.copytree(source, copy, ignore=_SOURCE_IGNORE, symlinks=True)
        if version is not None:
            init = copy / "agent" / "__init__.py"
            init.write_text(_VERSION_LINE.sub(f'__version__ = "{version}"', init.read_text()))
        if startup_fault is not None:
            (copy / "agent" / faults.STARTUP_FAULT).write_text(f"{startup_fault}\n", encoding="utf-8")
        version = check_version(source_version(copy))
        for origin in SERVICE_FILES.values():
            if not (copy / origin).is_file():
                raise ReleaseError(f"{source} lacks {origin}, which every bundle carries for 'install --service'")
        wheels = work / WHEELS
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
                                 str(copy), "pip"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ReleaseError(f"building the wheels failed: {result.stderr.strip()[-500:]}")
        own = [p for p in wheels.iterdir() if p.name.startswith(f"openstack_agent-{version}-")]
        if not own:
            raise ReleaseError(f"pip built no wheel for {NAME} {version}")
        if shipped_fault(own[0]) != startup_fault:
            raise ReleaseError(f"the wheel of {NAME} {version} does not carry the start-up fault asked for "
                               f"({startup_fault or 'none'}); refusing to bundle it")
        service = work / SERVICE
        service.mkdir()
        for name, origin in SERVICE_FILES.items():
            shutil.copyfile(copy / origin, service / name)
        files = {f"{WHEELS}/{p.name}": sha256_file(p) for p in sorted(wheels.iterdir())}
        files.update({f"{SERVICE}/{name}": sha256_file(service / name) for name in SERVICE_FILES})
        return _write_bundle(out_dir, Manifest(version, python_tag(), platform_tag(), files), work, key)


def build_frozen(out_dir: Path, folder: Path, version: str, platform: str | None = None,
                 sign_key: Path | None = None) -> Path:
    """Bundle a frozen one-folder build (``folder`` holds ``openstack-agent.exe`` and ``_internal/``) as release
    ``version`` for ``platform`` (this system's tag unless given: a frozen build runs only where it was built);
    return its path. The folder's regular files go in as they are; a link or special file is refused."""
    check_version(version)
    if not (folder / FROZEN_PROGRAM).is_file():
        raise ReleaseError(f"{folder} is not a frozen build: it has no {FROZEN_PROGRAM}")
    key = load_private_key(sign_key) if sign_key else None
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ReleaseError(f"{path} is a link or a special file; a frozen build holds files and folders only")
        if path.is_file():
            files[f"{FROZEN}/{path.relative_to(folder).as_posix()}"] = sha256_file(path)
    manifest = Manifest(version, python_tag(), platform or platform_tag(), files, FROZEN)
    return _write_bundle(out_dir, manifest, folder, key, strip=FROZEN)


def _write_bundle(out_dir: Path, manifest: Manifest, base: Path, key: Ed25519PrivateKey | None,
                  strip: str | None = None) -> Path:
    """Write the bundle of ``manifest``, whose files lie under ``base`` (without their first part ``strip``)."""
    data = manifest.to_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{NAME}-{manifest.version}.tar.gz"
    partial = target.with_name(target.name + ".part")
    with tarfile.open(partial, "w:gz") as archive:
        _add_bytes(archive, MANIFEST, data)
        if key is not None:
            _add_bytes(archive, SIGNATURE, base64.b64encode(key.sign(data)) + b"\n")
        for name in manifest.files:
            source = base / (name.removeprefix(f"{strip}/") if strip else name)
            archive.add(source, arcname=name, recursive=False)
    partial.replace(target)
    return target


def shipped_fault(wheel: Path) -> str | None:
    """The start-up fault an agent wheel carries (``agent.faults``), or None: what the release will do."""
    with zipfile.ZipFile(wheel) as contents:
        name = f"agent/{faults.STARTUP_FAULT}"
        return contents.read(name).decode().strip() if name in contents.namelist() else None


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


# -- checking -------------------------------------------------------------------------------------------

def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if member.name.startswith("/") or path.is_absolute() or "\\" in member.name:
        raise ReleaseError(f"the bundle holds an absolute path ({member.name!r}); refusing it")
    if ".." in path.parts:
        raise ReleaseError(f"the bundle holds a path that leaves its directory ({member.name!r}); refusing it")
    if member.issym() or member.islnk():
        raise ReleaseError(f"the bundle holds a link ({member.name!r}); refusing it")
    if not (member.isfile() or member.isdir()):
        raise ReleaseError(f"the bundle holds a device or special file ({member.name!r}); refusing it")


def open_bundle(path: Path, trusted_keys: list[Ed25519PublicKey] | tuple[Ed25519PublicKey, ...] = (),
                require_signature: bool = False) -> Bundle:
    """Check a bundle without extracting it: members, manifest, signature, digests."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = archive.getmembers()
            for member in members:
                _check_member(member)
            by_name = {PurePosixPath(m.name).as_posix(): m for m in members if m.isfile()}
            manifest_bytes = _read(archive, by_name, MANIFEST, MAX_MANIFEST)
            if manifest_bytes is None:
                raise ReleaseError(f"the bundle has no {MANIFEST}; is it an {NAME} release bundle?")
            # The signature is checked before the manifest is parsed: an untrusted manifest gets no further.
            signature = _read(archive, by_name, SIGNATURE, 1024)
            signed_by = _check_signature(manifest_bytes, signature, trusted_keys, require_signature)
            manifest = Manifest.from_bytes(manifest_bytes)
            expected = {MANIFEST, *([SIGNATURE] if signature is not None else []), *manifest.files}
            extra = sorted(set(by_name) - expected)
            if extra:
                raise ReleaseError(f"the bundle holds files its manifest does not list: {', '.join(extra[:3])}")
            for name, digest in manifest.files.items():
                data = _read(archive, by_name, name, None)
                if data is None:
                    raise ReleaseError(f"the bundle lacks {name}, which its manifest lists")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ReleaseError(f"SHA-256 of {name} does not match the manifest; the bundle is corrupt "
                                       "or was altered")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ReleaseError(f"{path.name} is not a readable release bundle: {exc}") from None
    return Bundle(path, manifest, signed_by)


def _read(archive: tarfile.TarFile, by_name: dict[str, tarfile.TarInfo], name: str,
          limit: int | None) -> bytes | None:
    member = by_name.get(name)
    if member is None:
        return None
    if limit is not None and member.size > limit:
        raise ReleaseError(f"{name} in the bundle is larger than {limit} bytes")
    extracted = archive.extractfile(member)
    return extracted.read() if extracted is not None else None


def _check_signature(manifest: bytes, signature: bytes | None, trusted_keys: list[Ed25519PublicKey] | tuple[
        Ed25519PublicKey, ...], required: bool) -> str | None:
    if signature is None:
        if required:
            raise ReleaseError("the bundle is not signed, and policy requires a signature from a trusted key")
        return None
    from cryptography.exceptions import InvalidSignature

    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except ValueError:
        raise ReleaseError(f"the bundle's {SIGNATURE} is not base64") from None
    for key in trusted_keys:
        try:
            key.verify(raw, manifest)
        except InvalidSignature:
            continue
        return fingerprint(key)
    if required:
        raise ReleaseError("the bundle's signature does not verify with any trusted key")
    return None


def read_member(bundle: Bundle, name: str) -> bytes:
    """The bytes of the bundle's file ``name`` (``service/agent.toml``), checked against the manifest again:
    the archive could have been replaced since ``open_bundle`` read it."""
    digest = bundle.manifest.files.get(name)
    if digest is None:
        raise ReleaseError(f"release {bundle.version}'s bundle carries no {name} (bundles built before the "
                           "service files travelled in them do not); use a bundle built by this release")
    try:
        with tarfile.open(bundle.path, "r:gz") as archive:
            members = {PurePosixPath(m.name).as_posix(): m for m in archive.getmembers() if m.isfile()}
            data = _read(archive, members, name, MAX_MANIFEST)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ReleaseError(f"{bundle.path.name} is not a readable release bundle: {exc}") from None
    if data is None or hashlib.sha256(data).hexdigest() != digest:
        raise ReleaseError(f"{name} in {bundle.path.name} no longer matches its manifest; the bundle was altered "
                           "after it was checked")
    return data


def extract(bundle: Bundle, destination: Path) -> None:
    """Unpack a checked bundle (its members were vetted by ``open_bundle``; the data filter stays on too, where
    the Python has it: Debian 12's 3.11.2, which a guest's first install runs on, predates it)."""
    with tarfile.open(bundle.path, "r:gz") as archive:
        for member in archive.getmembers():
            _check_member(member)
        if hasattr(tarfile, "data_filter"):
            archive.extractall(destination, filter="data")
        else:
            archive.extractall(destination)  # noqa: S202 - every member was checked above
