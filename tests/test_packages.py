"""The distribution packages of a release bundle: the .deb installed into a throw-away root with the real dpkg,
and the rpm built with the real rpmbuild."""

from __future__ import annotations

import io
import json
import platform
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from agent import __version__, packages, release
from agent.cli import main
from agent.cli.status import NOT_RUNNING
from agent.errors import ReleaseError
from tests.releases import ROOT

MAINTAINER = "Release Engineering <release@example.org>"
DEB_ARCH = packages.DEB_ARCHITECTURES[platform.machine()]
RPM_ARCH = packages.RPM_ARCHITECTURES[platform.machine()]
LIBDIR = "usr/lib/openstack-agent"


@pytest.fixture(scope="session")
def deb(bundles: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb of this checkout's bundle."""
    return packages.build_deb(bundles.base, tmp_path_factory.mktemp("deb"), ROOT, MAINTAINER)


@pytest.fixture(scope="session")
def rpm(bundles: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rpm of this checkout's bundle."""
    return packages.build_rpm(bundles.base, tmp_path_factory.mktemp("rpm"), ROOT)


def manifest(platform_name: str, *wheels: str, python: str = "cp311") -> release.Manifest:
    return release.Manifest("1.2.3", python, platform_name, {f"wheels/{w}": "0" * 64 for w in wheels})


def capture(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


# -- what the packages are ------------------------------------------------------------------------------

@pytest.mark.parametrize(("platform_name", "wheels", "deb_arch", "rpm_arch"), [
    ("linux-x86_64", ["a-1-py3-none-any.whl", "b-2-cp311-abi3-manylinux_2_34_x86_64.whl"], "amd64", "x86_64"),
    ("linux-aarch64", ["b-2-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"], "arm64", "aarch64"),
    ("linux-ppc64le", ["b-2-cp311-cp311-manylinux2014_ppc64le.whl"], "ppc64el", "ppc64le"),
    ("linux-x86_64", ["a-1-py3-none-any.whl", "pyxs-0.4.1-py2.py3-none-any.whl"], "all", "noarch"),
])
def test_architecture_follows_the_wheels(platform_name: str, wheels: list[str], deb_arch: str,
                                         rpm_arch: str) -> None:
    """A bundle with a compiled wheel gets its platform's architecture; one of pure wheels gets all/noarch."""
    bundle = manifest(platform_name, *wheels)
    assert (packages.deb_architecture(bundle), packages.rpm_architecture(bundle)) == (deb_arch, rpm_arch)


def test_an_unknown_platform_is_refused() -> None:
    """A compiled bundle for a platform Debian has no name for is refused, naming the platforms it knows."""
    with pytest.raises(ReleaseError, match=r"built for freebsd-13.2-amd64, which has no Debian architecture here "
                                           r"\(known: linux-x86_64, linux-aarch64, "):
        packages.deb_architecture(manifest("freebsd-13.2-amd64", "b-2-cp311-cp311-freebsd_13_2_amd64.whl"))


@pytest.mark.parametrize(("python", "expected"), [("cp311", ("3.11", "3.12")), ("cp39", ("3.9", "3.10"))])
def test_the_python_is_the_wheels(python: str, expected: tuple[str, str]) -> None:
    """The package depends on the Python minor version the bundle's wheels are for, and no other."""
    assert packages.python_range(manifest("linux-x86_64", python=python)) == expected


def test_deb_control(deb: Path) -> None:
    """The .deb's control names the bundle's version, the architecture of its wheels and the Python they need."""
    fields = capture("dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture", "Maintainer",
                     "Depends", "Section", "Priority")
    assert fields == (f"Package: openstack-agent\nVersion: {__version__}\nArchitecture: {DEB_ARCH}\n"
                      f"Maintainer: {MAINTAINER}\nDepends: python3 (>= 3.11), python3 (<< 3.12)\n"
                      "Section: admin\nPriority: optional\n")
    assert deb.name == f"openstack-agent_{__version__}_{DEB_ARCH}.deb"


def test_deb_contents(deb: Path, bundles: Any) -> None:
    """The .deb holds the bundle unchanged, the setup script and the copyright, owned by root, nothing else."""
    listing = [line.split() for line in capture("dpkg-deb", "--contents", str(deb)).splitlines()]
    assert [(mode, owner, path) for mode, owner, _, _, _, path in listing] == [
        ("drwxr-xr-x", "root/root", "./"),
        ("drwxr-xr-x", "root/root", "./usr/"),
        ("drwxr-xr-x", "root/root", "./usr/lib/"),
        ("drwxr-xr-x", "root/root", f"./{LIBDIR}/"),
        ("-rw-r--r--", "root/root", f"./{LIBDIR}/openstack-agent-{__version__}.tar.gz"),
        ("-rwxr-xr-x", "root/root", f"./{LIBDIR}/setup"),
        ("drwxr-xr-x", "root/root", "./usr/share/"),
        ("drwxr-xr-x", "root/root", "./usr/share/doc/"),
        ("drwxr-xr-x", "root/root", "./usr/share/doc/openstack-agent/"),
        ("-rw-r--r--", "root/root", "./usr/share/doc/openstack-agent/copyright"),
    ]


def test_deb_scripts_are_sane(deb: Path, tmp_path: Path) -> None:
    """Every maintainer script is sh with set -e and parses; the setup script has every placeholder filled and
    installs from the bundle alone; md5sums covers the payload."""
    subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(tmp_path)], check=True)
    control = tmp_path / "DEBIAN"
    assert sorted(p.name for p in control.iterdir()) == ["control", "md5sums", "postinst", "postrm", "prerm"]
    scripts = [control / name for name in packages.MAINTAINER_SCRIPTS] + [tmp_path / LIBDIR / "setup"]
    for script in scripts:
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e" in text and not re.search("@[A-Z_]+@", text)
        subprocess.run(["sh", "-n", str(script)], check=True)
    setup = scripts[-1].read_text()
    assert f"VERSION={__version__}\n" in setup and "--no-index" in setup and "://" not in setup
    with tarfile.open(tmp_path / LIBDIR / f"openstack-agent-{__version__}.tar.gz") as bundle:
        assert setup.split("PIP_WHEEL=")[1].split("\n")[0] in bundle.getnames()
    subprocess.run(["md5sum", "--check", "--quiet", str(control / "md5sums")], cwd=tmp_path, check=True)


# -- installed into a throw-away root -------------------------------------------------------------------

def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dpkg acting on ``root`` only: its database, its log, and the maintainer scripts told to act on it.

    --force-script-chrootless: dpkg would otherwise chroot into ``root`` to run the maintainer scripts, and
    an empty root has no shell or Python; the scripts honour $DPKG_ROOT, which is what this mode sets."""
    return subprocess.run(["dpkg", f"--root={root}", f"--log={root}/var/log/dpkg.log", "--force-script-chrootless",
                           *args], capture_output=True, text=True, check=False)


def empty_root(path: Path, with_python: bool) -> Path:
    """A root with an empty dpkg database; ``with_python`` copies in this machine's python3 entry, the one the
    maintainer scripts run, so that dpkg checks the package's Depends against it (no --force-depends)."""
    database = path / "var/lib/dpkg"
    for directory in (database / "info", database / "updates", path / "var/log"):
        directory.mkdir(parents=True)
    (database / "available").touch()
    if with_python:
        (database / "info" / "python3.list").touch()  # its files are the machine's, not the root's
    (database / "status").write_text(capture("dpkg-query", "--status", "python3") + "\n" if with_python else "")
    return path


def package_state(root: Path) -> str:
    result = subprocess.run(["dpkg-query", f"--root={root}", "--show", "--showformat=${db:Status-Abbrev}",
                             "openstack-agent"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def files_under(root: Path) -> list[str]:
    """What is left of the agent under ``root``, dpkg's own database aside."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if not p.is_dir() and not p.relative_to(root).as_posix().startswith(("var/lib/dpkg", "var/log")))


def test_deb_needs_its_python(deb: Path, tmp_path: Path) -> None:
    """Without the Python its wheels are for, dpkg leaves the package unconfigured and installs no release."""
    root = empty_root(tmp_path / "root", with_python=False)
    result = dpkg(root, "--install", str(deb))
    assert result.returncode == 1
    assert "openstack-agent depends on python3 (>= 3.11); however:\n  Package python3 is not installed." in (
        result.stderr)
    assert package_state(root) == "iU"
    assert not (root / "opt").exists()


def test_deb_installs_removes_and_purges(deb: Path, tmp_path: Path) -> None:
    """dpkg -i installs the bundle's release as the enabled service inside the root (twice gives the same),
    -r leaves the journal alone (the configuration too, had it been changed), -P removes it too."""
    root = empty_root(tmp_path / "root", with_python=True)
    install = dpkg(root, "--install", str(deb))
    assert install.returncode == 0, install.stderr
    layout_after_install = files_under(root)
    assert (root / "opt/openstack-agent/current").readlink() == Path("releases") / __version__
    assert (root / "opt/openstack-agent/releases" / __version__ / ".complete").is_file()
    assert (root / "etc/openstack-agent/agent.toml").is_file()
    assert (root / "etc/systemd/system/openstack-agent.service").is_file()
    assert (root / "etc/systemd/system/multi-user.target.wants/openstack-agent.service").is_symlink()
    out = io.StringIO()
    assert main(["status", "--root", str(root), "--json"], out) == NOT_RUNNING
    reported = json.loads(out.getvalue())["releases"]
    assert (reported["current"], reported["installed"], reported["verdicts"][__version__]["state"]) == (
        __version__, [__version__], "good")
    assert package_state(root) == "ii"

    again = dpkg(root, "--install", str(deb))
    assert again.returncode == 0, again.stderr
    assert files_under(root) == layout_after_install
    assert sorted(p.name for p in (root / "opt/openstack-agent/releases").iterdir()) == [__version__]

    remove = dpkg(root, "--remove", "openstack-agent")
    assert remove.returncode == 0, remove.stderr
    assert package_state(root) == "rc"
    left = files_under(root)
    assert "var/lib/openstack-agent/journal.sqlite3" in left
    assert [p for p in left if not p.startswith("var/lib/openstack-agent/")] == []

    purge = dpkg(root, "--purge", "openstack-agent")
    assert purge.returncode == 0, purge.stderr
    assert package_state(root) == "unknown"
    assert files_under(root) == []
    assert not (root / "opt/openstack-agent").exists()


# -- rpm ------------------------------------------------------------------------------------------------

def test_rpm_files_and_requires(rpm: Path) -> None:
    """The rpm carries the bundle and the setup script, at the bundle's version and architecture, and needs
    the Python its wheels are for."""
    assert rpm.name == f"openstack-agent-{__version__}-1.{RPM_ARCH}.rpm"
    assert capture("rpm", "-qpl", str(rpm)).splitlines() == [
        f"/{LIBDIR}", f"/{LIBDIR}/openstack-agent-{__version__}.tar.gz", f"/{LIBDIR}/setup"]
    assert capture("rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{ARCH} %{LICENSE}", str(rpm)) == (
        f"openstack-agent {__version__} {RPM_ARCH} Apache-2.0")
    requires = capture("rpm", "-qpR", str(rpm)).splitlines()
    assert {"python3 >= 3.11", "python3 < 3.12", "tar"} <= set(requires)


def test_rpm_scripts(rpm: Path) -> None:
    """%post installs the carried release as the service; %preun uninstalls only when the package is erased."""
    assert capture("rpm", "-qp", "--scripts", str(rpm)) == (
        "postinstall scriptlet (using /bin/sh):\n"
        "# Installs and upgrades alike: the new release becomes current, the configuration is kept.\n"
        f"/{LIBDIR}/setup install\n"
        "preuninstall scriptlet (using /bin/sh):\n"
        "# Erase only ($1 is 0); on an upgrade the next release's %post has already installed it.\n"
        "if [ \"$1\" -eq 0 ]; then\n"
        f"    /{LIBDIR}/setup uninstall\n"
        "fi\n")
