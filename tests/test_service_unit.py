"""The systemd unit as installed: systemd-analyze verifies it in a throw-away root, its sandbox's exposure
does not grow back, and the README's guest steps install it from the bundle alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from agent import __version__
from tests.releases import ROOT

UNIT = "etc/systemd/system/openstack-agent.service"


def install_service(bundle: Path, root: Path) -> None:
    subprocess.run([sys.executable, "-m", "agent", "install", str(bundle), "--service", "--root", str(root)],
                   check=True, capture_output=True, cwd=ROOT)


def test_systemd_analyze_verify_passes_on_the_installed_unit(bundles, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about the installed unit, its ExecStart checked in the root."""
    root = tmp_path / "root"
    install_service(bundles.base, root)
    # The root needs what the unit refers to: systemd's own units (multi-user.target, sysinit.target) and
    # ExecReload's kill; ExecStart's agent is the installed release's.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy2("/bin/kill", root / "bin/kill")
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", "openstack-agent.service"],
                            capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_sandbox_keeps_its_exposure(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit 5.4 (9.6 without the sandbox): a directive dropped shows."""
    unit = tmp_path / "openstack-agent.service"
    shutil.copy(ROOT / "packaging/openstack-agent.service", unit)
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                            text=True, check=False)
    assert "Overall exposure level for openstack-agent.service: 5.4 MEDIUM" in result.stdout


def readme_guest_steps() -> str:
    """The shell block of the README's "Installing in a guest" that installs from the bundle."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Installing in a guest\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return next(block for block in blocks if "tar -xzf" in block)


def test_readme_guest_steps_install_from_the_bundle_alone(bundles, tmp_path: Path) -> None:
    """The README's guest steps, run as written (with --root and temporary directories in tmp_path) away
    from any checkout, install the release, the unit, the configuration and the enable link."""
    root, work = tmp_path / "root", tmp_path / "work"
    work.mkdir()
    bundle = shutil.copy(bundles.base, work / "openstack-agent-X.Y.Z.tar.gz")
    script = readme_guest_steps().replace("/tmp/", f"{tmp_path}/")
    script = re.sub(r"^(.*/openstack-agent install .*)$", rf"\1 --root {root}", script, flags=re.MULTILINE)
    assert f"--root {root}" in script and str(bundle).rsplit("/", 1)[1] in script
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(["sh", "-ex", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert os.readlink(root / "opt/openstack-agent/current") == f"releases/{__version__}"
    assert (root / f"opt/openstack-agent/releases/{__version__}/.complete").exists()
    assert (root / UNIT).read_bytes() == (ROOT / "packaging/openstack-agent.service").read_bytes()
    assert (root / "etc/openstack-agent/agent.toml").read_bytes() == (ROOT / "packaging/agent.toml").read_bytes()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/openstack-agent.service") == f"/{UNIT}"
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "bootstrap").exists()
