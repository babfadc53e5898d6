"""Distribution packages of a release bundle: a ``.deb`` built with ``dpkg-deb`` and an ``.rpm`` with ``rpmbuild``.

Both carry the bundle itself, as ``/usr/lib/openstack-agent/openstack-agent-<version>.tar.gz``, and
``/usr/lib/openstack-agent/setup`` (``packaging/debian/setup``), which the maintainer scripts call: on
install it runs the bundle's own ``openstack-agent install BUNDLE --service`` from a throw-away environment
made of the bundle's wheels, so that nothing is fetched at install time; on removal it runs the installed
release's ``openstack-agent uninstall``.

What the bundle's manifest says decides the rest: the version is the package's, the wheels' Python is the one
the package depends on (a release only installs on the Python it was built for), and the platform is the
package's architecture unless every wheel is pure. The templates (control file, maintainer scripts, rpm spec)
live in the source checkout's ``packaging/``, like everything else release engineering builds from.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path, PurePosixPath

from agent import release
from agent.errors import ReleaseError

#: Where the packages put the bundle and the setup script.
LIBDIR = PurePosixPath("usr/lib/openstack-agent")
MAINTAINER_SCRIPTS = ("postinst", "prerm", "postrm")
#: ``sysconfig.get_platform()`` machine names, as Debian and rpm name those architectures.
DEB_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf",
                     "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}
RPM_ARCHITECTURES = {"x86_64": "x86_64", "aarch64": "aarch64", "i686": "i686", "armv7l": "armv7hl",
                     "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_MAINTAINER = re.compile(r"[^<>\n]+ <[^<>@\s]+@[^<>@\s]+>")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def python_range(manifest: release.Manifest) -> tuple[str, str]:
    """The Python a bundle installs on, as a version and the next one: ``cp311`` gives ("3.11", "3.12")."""
    found = re.fullmatch(r"cp3([0-9]+)", manifest.python)
    if found is None:
        raise ReleaseError(f"the bundle is for {manifest.python!r}, not a CPython 3 this package can depend on")
    minor = int(found.group(1))
    return f"3.{minor}", f"3.{minor + 1}"


def is_pure(manifest: release.Manifest) -> bool:
    """Whether every wheel in the bundle runs on any machine (platform tag ``any``)."""
    wheels = [PurePosixPath(name).name for name in manifest.files if name.endswith(".whl")]
    return all(name.removesuffix(".whl").rsplit("-", 1)[-1] == "any" for name in wheels)


def deb_architecture(manifest: release.Manifest) -> str:
    """The Debian architecture of a bundle: ``all`` when its wheels are pure, else its platform's."""
    return "all" if is_pure(manifest) else _architecture(manifest, DEB_ARCHITECTURES, "Debian")


def rpm_architecture(manifest: release.Manifest) -> str:
    """The rpm architecture of a bundle: ``noarch`` when its wheels are pure, else its platform's."""
    return "noarch" if is_pure(manifest) else _architecture(manifest, RPM_ARCHITECTURES, "rpm")


def _architecture(manifest: release.Manifest, names: dict[str, str], system: str) -> str:
    system_name, _, machine = manifest.platform.partition("-")
    if system_name != "linux" or machine not in names:
        raise ReleaseError(f"the bundle's wheels are built for {manifest.platform}, which has no {system} "
                           f"architecture here (known: {', '.join(f'linux-{m}' for m in names)})")
    return names[machine]


def pip_wheel(manifest: release.Manifest) -> str:
    """The bundle member holding pip's wheel, which the setup script runs pip from."""
    found = sorted(name for name in manifest.files if PurePosixPath(name).name.startswith("pip-"))
    if not found:
        raise ReleaseError("the bundle carries no pip wheel, which its package needs to install it offline; "
                           "rebuild it with 'openstack-agent release build'")
    return found[-1]


def render(template: Path, values: dict[str, str]) -> str:
    """A template from ``packaging/`` with its ``@NAME@`` placeholders filled; every one must be known."""
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReleaseError(f"cannot read the packaging template {template}: {exc.strerror}; pass --source "
                           "with an openstack-agent checkout") from None
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = sorted(set(_PLACEHOLDER.findall(text)))
    if left:
        raise ReleaseError(f"the packaging template {template} has placeholders no one fills: {', '.join(left)}")
    return text


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ReleaseError(f"{name} is not installed; install {package} to build this package")
    return path


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout


def _publish(built: Path, out_dir: Path) -> Path:
    """Copy a finished package into ``out_dir`` under a temporary name, then rename it into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / built.name
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(built, partial)
    partial.replace(target)
    return target


def _write(path: Path, data: str | bytes, mode: int) -> None:
    # Explicit modes: the files must read the same in the package whatever the builder's umask.
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    path.chmod(mode)


# -- Debian ---------------------------------------------------------------------------------------------

def build_deb(bundle_path: Path, out_dir: Path, source: Path, maintainer: str) -> Path:
    """Build ``openstack-agent_<version>_<arch>.deb`` from a bundle into ``out_dir``; return its path."""
    if not _MAINTAINER.fullmatch(maintainer):
        raise ReleaseError(f"the maintainer {maintainer!r} is not 'Name <email>', as Debian's control file "
                           "needs it")
    dpkg_deb = _tool("dpkg-deb", "dpkg")
    bundle = release.open_bundle(bundle_path)
    manifest = bundle.manifest
    templates = source.resolve() / "packaging" / "debian"
    python, python_next = python_range(manifest)
    values = {"VERSION": bundle.version, "PIP_WHEEL": pip_wheel(manifest)}
    architecture = deb_architecture(manifest)
    with tempfile.TemporaryDirectory(prefix="openstack-agent-deb-") as scratch:
        tree = Path(scratch) / "tree"
        libdir = tree / LIBDIR
        _write(libdir / bundle_path.name, bundle_path.read_bytes(), 0o644)
        _write(libdir / "setup", render(templates / "setup", values), 0o755)
        _write(tree / "usr/share/doc/openstack-agent/copyright",
               render(templates / "copyright", {"DEPENDENCIES": _dependencies(manifest)}), 0o644)
        for directory in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        payload = sorted(p for p in tree.rglob("*") if p.is_file())
        control = tree / "DEBIAN"
        control.mkdir(mode=0o755)
        control.chmod(0o755)
        for script in MAINTAINER_SCRIPTS:
            _write(control / script, render(templates / script, values), 0o755)
        # dpkg checks installed files against md5sums (dpkg --verify, debsums); dpkg-deb does not write it.
        _write(control / "md5sums", "".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  "  # noqa: S324
                                            f"{p.relative_to(tree).as_posix()}\n" for p in payload), 0o644)
        installed_kib = sum(math.ceil(p.stat().st_size / 1024) for p in payload)
        _write(control / "control", render(templates / "control", {
            **values, "ARCHITECTURE": architecture, "MAINTAINER": maintainer,
            "INSTALLED_SIZE": str(installed_kib), "DEPENDS": f"python3 (>= {python}), python3 (<< {python_next})",
        }), 0o644)
        built = Path(scratch) / f"{release.NAME}_{bundle.version}_{architecture}.deb"
        # gzip, not dpkg-deb's xz: the payload is a gzipped bundle already, which xz takes seconds to not shrink.
        _run([dpkg_deb, "--root-owner-group", "-Zgzip", "--build", str(tree), str(built)], "dpkg-deb --build")
        return _publish(built, out_dir)


def _dependencies(manifest: release.Manifest) -> str:
    wheels = sorted(PurePosixPath(name).name for name in manifest.files if name.endswith(".whl"))
    named = [" ".join(w.split("-")[:2]) for w in wheels if not w.startswith("openstack_agent-")]
    return textwrap.fill(", ".join(named) + ".", width=78, initial_indent=" ", subsequent_indent=" ")


# -- rpm ------------------------------------------------------------------------------------------------

def build_rpm(bundle_path: Path, out_dir: Path, source: Path) -> Path:
    """Build ``openstack-agent-<version>-1.<arch>.rpm`` from a bundle into ``out_dir``; return its path."""
    rpmbuild = _tool("rpmbuild", "rpm (Debian) or rpm-build (Fedora, RHEL)")
    bundle = release.open_bundle(bundle_path)
    manifest = bundle.manifest
    packaging = source.resolve() / "packaging"
    spec = packaging / "rpm" / f"{release.NAME}.spec"
    if not spec.is_file():
        raise ReleaseError(f"{spec} does not exist; pass --source with an openstack-agent checkout")
    python, python_next = python_range(manifest)
    setup = render(packaging / "debian" / "setup", {"VERSION": bundle.version, "PIP_WHEEL": pip_wheel(manifest)})
    architecture = rpm_architecture(manifest)
    with tempfile.TemporaryDirectory(prefix="openstack-agent-rpm-") as scratch:
        top = Path(scratch)
        _write(top / "SOURCES" / bundle_path.name, bundle_path.read_bytes(), 0o644)
        _write(top / "SOURCES" / "setup", setup, 0o755)
        defines = {"_topdir": str(top), "_tmppath": str(top / "tmp"), "agent_version": bundle.version,
                   "agent_python": python, "agent_python_next": python_next}
        argv = [rpmbuild, "-bb", "--target", architecture, str(spec)]
        for name, value in defines.items():
            argv[1:1] = ["--define", f"{name} {value}"]
        # rpmbuild reads the builder's ~/.rpmmacros; a home of its own keeps the package the same for everyone.
        env = {**os.environ, "HOME": str(top)}
        _run(argv, "rpmbuild", env)
        built = top / "RPMS" / architecture / f"{release.NAME}-{bundle.version}-1.{architecture}.rpm"
        if not built.is_file():
            raise ReleaseError(f"rpmbuild made no {built.name}")
        return _publish(built, out_dir)
