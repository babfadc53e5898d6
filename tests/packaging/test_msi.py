"""The MSI built from packaging/windows/openstack-agent.wxs with Debian's wixl, its tables read back with msiinfo.

The payload is a stand-in for the one-folder build (an ``openstack-agent.exe`` that is not a program, and a few
files under ``_internal``): what is checked is the installer's database, which does not depend on what the
files hold. Windows Installer itself cannot run here, so what the tables make it do is read from them by its
documented rules: ServiceInstall's StartType 2 is SERVICE_AUTO_START; ServiceControl's Event is a mask of
msidbServiceControlEvent* (1 start, 2 stop, 8 delete on install; 16, 32, 128 on uninstall); an Upgrade row
matches an installed product of its UpgradeCode whose version is within VersionMin and VersionMax (inclusive
with msidbUpgradeAttributesVersionMinInclusive 256 and VersionMaxInclusive 512); its ActionProperty receives
the product codes found, and RemoveExistingProducts removes them unless the row is OnlyDetect (2).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.packaging import WINDOWS, load_wxs

pytestmark = pytest.mark.skipif(
    not (shutil.which("wixl") and shutil.which("msiinfo")),
    reason="wixl and msiinfo are not installed (Debian packages wixl and msitools; scripts/bootstrap installs them)")

SOURCE = WINDOWS / "openstack-agent.wxs"
SERVICE = "OpenStackAgent"
PAYLOAD = ["openstack-agent.exe", "_internal/python311.dll", "_internal/base_library.zip",
           "_internal/agent/migrations/env.py", "_internal/agent/migrations/versions/0001_journal.py",
           "_internal/win32/win32service.pyd"]

SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_AUTO_START = 2
SERVICE_ERROR_NORMAL = 1
START_ON_INSTALL, STOP_ON_INSTALL, DELETE_ON_INSTALL = 1, 2, 8
START_ON_UNINSTALL, STOP_ON_UNINSTALL, DELETE_ON_UNINSTALL = 16, 32, 128
ONLY_DETECT, MIN_INCLUSIVE, MAX_INCLUSIVE = 2, 256, 512
#: The UpgradeCode of the earlier Windows agent's MSI (OpenStackAgent, built with py2exe2msi).
EARLIER_AGENT = "{BF9C41BE-9C81-42CD-A1CB-A8C17699A2F1}"
COMPONENT_64BIT = 256
#: A type 50 custom action (an executable named by a property), deferred and not impersonated.
EXE_FROM_PROPERTY, DEFERRED, NO_IMPERSONATE = 50, 1024, 2048

Table = list[dict[str, str]]


def table(msi: Path, name: str) -> Table:
    """The rows of table ``name``, as msiinfo exports it: column names, types, keys, then tab-separated rows."""
    text = subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True, text=True,
                          check=True).stdout
    lines = text.split("\r\n") if "\r\n" in text else text.splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[3:] if line]


def one(rows: Table, **match: str) -> dict[str, str]:
    found = [row for row in rows if all(row[key] == value for key, value in match.items())]
    assert len(found) == 1, f"{len(found)} rows match {match}: {rows}"
    return found[0]


def build_msi(directory: Path, version: str) -> Path:
    """The MSI of ``version`` over a stand-in payload in ``directory``, built as the source's comment says."""
    payload = directory / "openstack-agent"
    for name in PAYLOAD:
        (payload / name).parent.mkdir(parents=True, exist_ok=True)
        (payload / name).write_bytes(f"stand-in for {name}".encode())
    fragment = directory / "payload.wxs"
    fragment.write_text(load_wxs().fragment(payload), encoding="utf-8")
    msi = directory / f"openstack-agent-{version}.msi"
    # wixl looks sources up relative to its working directory, so SourceDir is relative to it.
    result = subprocess.run(["wixl", "-a", "x64", "-D", f"Version={version}", "-D", "SourceDir=openstack-agent",
                             "-o", str(msi), str(SOURCE), str(fragment)], cwd=directory, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    return msi


@pytest.fixture(scope="module")
def msis(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The MSI of a version, built once per version for the module."""
    built: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in built:
            built[version] = build_msi(tmp_path_factory.mktemp(f"msi-{version}"), version)
        return built[version]

    return get


@pytest.fixture
def msi(msis: Callable[[str], Path]) -> Path:
    return msis("0.1.0")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def detects(row: dict[str, str], installed: str) -> bool:
    """Whether the Upgrade ``row`` matches an installed product of its UpgradeCode at version ``installed``."""
    attributes, version = int(row["Attributes"]), version_tuple(installed)
    if row["VersionMin"]:
        low = version_tuple(row["VersionMin"])
        if version < low or (version == low and not attributes & MIN_INCLUSIVE):
            return False
    if row["VersionMax"]:
        high = version_tuple(row["VersionMax"])
        if version > high or (version == high and not attributes & MAX_INCLUSIVE):
            return False
    return True


def property_value(msi: Path, name: str) -> str:
    return one(table(msi, "Property"), Property=name)["Value"]


def sequence(msi: Path) -> dict[str, int]:
    return {row["Action"]: int(row["Sequence"]) for row in table(msi, "InstallExecuteSequence")}


def test_service_is_installed_automatic_as_localsystem_running_service_run(msi: Path) -> None:
    """ServiceInstall: OpenStackAgent, own process, automatic start, LocalSystem, 'service run', with the exe."""
    service = one(table(msi, "ServiceInstall"), Name=SERVICE)
    assert int(service["ServiceType"]) == SERVICE_WIN32_OWN_PROCESS
    assert int(service["StartType"]) == SERVICE_AUTO_START
    assert int(service["ErrorControl"]) == SERVICE_ERROR_NORMAL
    assert service["StartName"] == "LocalSystem" and service["Password"] == ""
    assert service["Arguments"] == "service run"
    component = one(table(msi, "Component"), Component=service["Component_"])
    executable = one(table(msi, "File"), File=component["KeyPath"])
    assert executable["FileName"] == "openstack-agent.exe" and component["Directory_"] == "INSTALLDIR"


def test_service_is_started_on_install_and_stopped_and_removed_on_uninstall(msi: Path) -> None:
    """ServiceControl: start on install, stop on install and uninstall, delete on uninstall only, waiting."""
    control = one(table(msi, "ServiceControl"), Name=SERVICE)
    event = int(control["Event"])
    assert event == START_ON_INSTALL | STOP_ON_INSTALL | STOP_ON_UNINSTALL | DELETE_ON_UNINSTALL
    assert not event & (DELETE_ON_INSTALL | START_ON_UNINSTALL)
    assert control["Wait"] == "1"
    service = one(table(msi, "ServiceInstall"), Name=SERVICE)
    assert control["Component_"] == service["Component_"], "the service would not be removed with its executable"


def test_upgrade_table_finds_older_versions_and_refuses_downgrades(msi: Path) -> None:
    """Upgrade: with the product's UpgradeCode, older versions are removed, newer ones only detected and refused."""
    upgrade_code = property_value(msi, "UpgradeCode")
    rows = [row for row in table(msi, "Upgrade") if row["UpgradeCode"] == upgrade_code]
    removes = one(rows, ActionProperty="WIX_UPGRADE_DETECTED")
    assert not int(removes["Attributes"]) & ONLY_DETECT
    assert [detects(removes, version) for version in ("0.0.9", "0.1.0", "0.1.1")] == [True, False, False]
    downgrade = one(rows, ActionProperty="WIX_DOWNGRADE_DETECTED")
    assert int(downgrade["Attributes"]) & ONLY_DETECT
    assert [detects(downgrade, version) for version in ("0.0.9", "0.1.0", "0.1.1")] == [False, False, True]
    assert one(table(msi, "LaunchCondition"), Condition="NOT WIX_DOWNGRADE_DETECTED")
    secure = property_value(msi, "SecureCustomProperties").split(";")
    assert {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"} <= set(secure)


def test_the_earlier_windows_agent_is_found_and_removed(msi: Path) -> None:
    """Upgrade: the earlier Windows agent's MSI (its own UpgradeCode, from its setup.py) is found at any version
    and removed by RemoveExistingProducts, its property secured for the elevated part of the install; the only
    other rows are this product's own."""
    rows = table(msi, "Upgrade")
    earlier = one(rows, UpgradeCode=EARLIER_AGENT)
    assert (earlier["ActionProperty"], earlier["VersionMax"], earlier["Remove"]) == ("EARLIERAGENTFOUND", "", "")
    assert not int(earlier["Attributes"]) & ONLY_DETECT
    assert [detects(earlier, version) for version in ("0.0.0", "0.1.0", "1.0.0", "99.0.0")] == [True] * 4
    assert {row["UpgradeCode"] for row in rows} == {EARLIER_AGENT, property_value(msi, "UpgradeCode")}
    assert "EARLIERAGENTFOUND" in property_value(msi, "SecureCustomProperties").split(";")
    assert "RemoveExistingProducts" in sequence(msi)


def test_older_product_is_removed_before_anything_is_installed(msi: Path) -> None:
    """RemoveExistingProducts runs after FindRelatedProducts and InstallValidate, before InstallInitialize, so the
    old service is stopped and deleted before the new one is installed."""
    order = sequence(msi)
    assert order["FindRelatedProducts"] < order["InstallValidate"] < order["RemoveExistingProducts"]
    assert order["RemoveExistingProducts"] < order["InstallInitialize"] < order["InstallServices"]


def test_newer_msi_replaces_the_older(msis: Callable[[str], Path]) -> None:
    """Two versions share the UpgradeCode, have their own ProductCode, and the newer's Upgrade table finds the older
    for removal while the older's would refuse to go over the newer."""
    older, newer = msis("0.1.0"), msis("0.2.0")
    assert property_value(older, "UpgradeCode") == property_value(newer, "UpgradeCode")
    assert property_value(older, "ProductCode") != property_value(newer, "ProductCode")
    assert property_value(older, "ProductVersion") == "0.1.0" and property_value(newer, "ProductVersion") == "0.2.0"
    found = [row for row in table(newer, "Upgrade")
             if row["UpgradeCode"] == property_value(older, "UpgradeCode") and detects(row, "0.1.0")]
    assert [(row["ActionProperty"], int(row["Attributes"]) & ONLY_DETECT) for row in found] == [
        ("WIX_UPGRADE_DETECTED", 0)]
    refused = [row["ActionProperty"] for row in table(older, "Upgrade")
               if row["UpgradeCode"] == property_value(newer, "UpgradeCode") and detects(row, "0.2.0")]
    assert refused == ["WIX_DOWNGRADE_DETECTED"]


def test_versions_keep_their_component_guids(msis: Callable[[str], Path]) -> None:
    """The same files have the same components and GUIDs in both versions (Windows Installer's component rules)."""
    def components(msi: Path) -> set[tuple[str, str]]:
        return {(row["Component"], row["ComponentId"]) for row in table(msi, "Component")}

    assert components(msis("0.1.0")) == components(msis("0.2.0"))


def test_layout_is_the_build_under_program_files_openstack_agent(msi: Path) -> None:
    """Every payload file is installed at its path under ProgramFiles64Folder\\OpenStack\\Agent, 64-bit, in the
    one feature."""
    directories = {row["Directory"]: row for row in table(msi, "Directory")}

    def path(directory: str) -> str:
        row = directories[directory]
        name = row["DefaultDir"].split(":")[-1]
        return name if not row["Directory_Parent"] else f"{path(row['Directory_Parent'])}/{name}"

    assert path("INSTALLDIR") == "SourceDir/./OpenStack/Agent"
    assert directories["OpenStackFolder"]["Directory_Parent"] == "ProgramFiles64Folder"
    components = {row["Component"]: row for row in table(msi, "Component")}
    installed = {}
    for file in table(msi, "File"):
        relative = path(components[file["Component_"]]["Directory_"]).removeprefix("SourceDir/./OpenStack/Agent")
        installed[f"{relative}/{file['FileName']}".lstrip("/")] = file
    assert sorted(installed) == sorted(PAYLOAD)
    assert all(int(row["Attributes"]) & COMPONENT_64BIT for row in components.values())
    features = table(msi, "FeatureComponents")
    assert {row["Feature_"] for row in features} == {"Agent"}
    assert sorted(row["Component_"] for row in features) == sorted(components)


def test_service_recovery_is_set_once_the_service_is_installed(msi: Path) -> None:
    """sc.exe sets restart-on-failure, also for a service that stops with an error, as LocalSystem between
    InstallServices and StartServices, never on removal."""
    actions = {row["Action"]: row for row in table(msi, "CustomAction")}
    recovery = actions["ServiceRecovery"]
    assert int(recovery["Type"]) == EXE_FROM_PROPERTY | DEFERRED | NO_IMPERSONATE
    assert recovery["Target"].startswith(f"failure {SERVICE} reset= ")
    assert "actions= restart/" in recovery["Target"]
    assert actions[recovery["Source"]]["Target"] == "[SystemFolder]sc.exe"
    steps = {row["Action"]: row for row in table(msi, "InstallExecuteSequence")}
    order = {action: int(row["Sequence"]) for action, row in steps.items()}
    assert order["CostFinalize"] < order[recovery["Source"]] < order["InstallInitialize"]
    on_errors = actions["ServiceRecoveryOnErrors"]
    assert (int(on_errors["Type"]), on_errors["Source"]) == (EXE_FROM_PROPERTY | DEFERRED | NO_IMPERSONATE,
                                                             recovery["Source"])
    assert on_errors["Target"] == f"failureflag {SERVICE} 1"
    assert order["InstallServices"] < order["ServiceRecovery"] < order["ServiceRecoveryOnErrors"] < order[
        "StartServices"]
    for action in (recovery["Source"], "ServiceRecovery", "ServiceRecoveryOnErrors"):
        assert steps[action]["Condition"] == 'NOT REMOVE~="ALL"'


def test_the_event_source_is_registered_with_the_shipped_message_file(msi: Path) -> None:
    """Registry: the OpenStackAgent source of the Application log, in HKLM (Root 2), with TypesSupported 7 (a
    REG_DWORD, '#') and EventMessageFile (a string) naming win32service.pyd where the MSI installs it; both
    written and removed with the service's component."""
    rows = [row for row in table(msi, "Registry")
            if row["Key"] == rf"SYSTEM\CurrentControlSet\Services\EventLog\Application\{SERVICE}"]
    values = {row["Name"]: row for row in rows}
    assert sorted(values) == ["EventMessageFile", "TypesSupported"]
    assert {row["Root"] for row in rows} == {"2"}
    assert values["TypesSupported"]["Value"] == "#7"
    assert values["EventMessageFile"]["Value"] == r"[INSTALLDIR]_internal\win32\win32service.pyd"
    service = one(table(msi, "ServiceInstall"), Name=SERVICE)
    assert {row["Component_"] for row in rows} == {service["Component_"]}
    directories = {row["Directory"]: row for row in table(msi, "Directory")}
    components = {row["Component"]: row for row in table(msi, "Component")}
    pyd = one(table(msi, "File"), FileName="win32service.pyd")
    where = components[pyd["Component_"]]["Directory_"]
    names = []
    while where != "INSTALLDIR":
        names.append(directories[where]["DefaultDir"].split(":")[-1])
        where = directories[where]["Directory_Parent"]
    assert "\\".join([*reversed(names), pyd["FileName"]]) == r"_internal\win32\win32service.pyd"


def test_nothing_is_installed_under_programdata(msi: Path) -> None:
    """The MSI owns no directory, file or removal under %ProgramData%: the journal there survives an uninstall."""
    assert all("CommonAppDataFolder" not in (row["Directory"], row["Directory_Parent"])
               for row in table(msi, "Directory"))
    assert table(msi, "RemoveFile") == []
