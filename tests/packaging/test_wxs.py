"""packaging/windows/wxs.py: the WiX fragment listing a one-folder build's files for the MSI."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.packaging import load_wxs

wxs = load_wxs()
NS = {"w": wxs.WIX_NAMESPACE}
#: Windows Installer's Identifier data type.
MSI_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,71}")
DEEP = "_internal/" + "/".join(["a-directory-with-a-long-name"] * 6) + "/a file with spaces and a long name.pyd"
FILES = ["openstack-agent.exe", "_internal/python311.dll", "_internal/agent/migrations/env.py",
         "_internal/agent/migrations/versions/0001_journal.py", "base_library.zip", DEEP]


def build(folder: Path, files: list[str] = FILES) -> Path:
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(name.encode())
    return folder


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode())


def installed_paths(root: ET.Element) -> dict[str, ET.Element]:
    """Each File element by the path the fragment puts it at under INSTALLDIR."""
    found: dict[str, ET.Element] = {}

    def walk(node: ET.Element, prefix: str) -> None:
        for child in node:
            if child.tag == f"{{{wxs.WIX_NAMESPACE}}}Directory":
                walk(child, f"{prefix}{child.get('Name')}/")
            elif child.tag == f"{{{wxs.WIX_NAMESPACE}}}Component":
                for file in child.findall("w:File", NS):
                    found[prefix + str(file.get("Name"))] = file

    directory_ref = root.find("w:Fragment/w:DirectoryRef", NS)
    assert directory_ref is not None and directory_ref.get("Id") == "INSTALLDIR"
    walk(directory_ref, "")
    return found


def test_every_file_but_the_executable_is_listed_where_it_lies(tmp_path: Path) -> None:
    """Each file of the build but openstack-agent.exe is under INSTALLDIR at its own path, from $(var.SourceDir)."""
    files = installed_paths(parse(wxs.fragment(build(tmp_path))))
    assert sorted(files) == sorted(name for name in FILES if name != "openstack-agent.exe")
    for path, file in files.items():
        assert file.get("Source") == f"$(var.SourceDir)/{path}"
        assert file.get("KeyPath") == "yes"


def test_each_file_has_a_64_bit_component_in_the_payload_group(tmp_path: Path) -> None:
    """One component per file, 64-bit, and the group Payload references each of them once."""
    root = parse(wxs.fragment(build(tmp_path)))
    components = root.findall(".//w:Component", NS)
    assert [len(component.findall("w:File", NS)) for component in components] == [1] * (len(FILES) - 1)
    assert {component.get("Win64") for component in components} == {"yes"}
    group = root.find("w:Fragment/w:ComponentGroup", NS)
    assert group is not None and group.get("Id") == "Payload"
    assert sorted(ref.get("Id") for ref in group) == sorted(component.get("Id") for component in components)


def test_identifiers_are_valid_msi_identifiers_and_unique(tmp_path: Path) -> None:
    """Every Id fits Windows Installer's identifier rules (72 characters at most), even for a deep long path."""
    root = parse(wxs.fragment(build(tmp_path)))
    ids = [str(element.get("Id")) for element in root.iter() if element.get("Id") and element.tag.split("}")[1]
           in ("Directory", "Component", "File")]
    assert all(MSI_IDENTIFIER.fullmatch(value) for value in ids), ids
    assert len(ids) == len(set(ids))


def test_output_and_guids_are_the_same_for_the_same_folder(tmp_path: Path) -> None:
    """The same build gives the same fragment, and a file keeps its component GUID wherever the build lies."""
    first, second = build(tmp_path / "one"), build(tmp_path / "two")
    assert wxs.fragment(first) == wxs.fragment(second)
    guids = [component.get("Guid") for component in parse(wxs.fragment(first)).findall(".//w:Component", NS)]
    assert len(set(guids)) == len(guids)
    assert all(str(uuid.UUID(str(guid))).upper() == guid for guid in guids)


def test_a_new_file_leaves_the_other_components_alone(tmp_path: Path) -> None:
    """Adding a file to the build adds its component and changes no other component's Id or GUID."""
    def components(folder: Path) -> set[tuple[str | None, str | None]]:
        return {(c.get("Id"), c.get("Guid")) for c in parse(wxs.fragment(folder)).findall(".//w:Component", NS)}

    before = components(build(tmp_path))
    after = components(build(tmp_path, ["_internal/new.dll"]))
    assert before < after and len(after - before) == 1


@pytest.mark.parametrize(("files", "status", "message"), [
    (["_internal/python311.dll"], 1, "has no openstack-agent.exe"),
    (None, 2, "usage"),
])
def test_main_refuses_a_folder_that_is_not_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      files: list[str] | None, status: int, message: str) -> None:
    """A folder without the executable, or a missing folder, is refused with a message and writes nothing."""
    folder = build(tmp_path / "build", files) if files else tmp_path / "missing"
    out = tmp_path / "payload.wxs"
    assert wxs.main([str(folder), str(out)]) == status
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_main_writes_the_fragment(tmp_path: Path) -> None:
    """The command line writes the same fragment as the function."""
    folder, out = build(tmp_path / "build"), tmp_path / "payload.wxs"
    assert wxs.main([str(folder), str(out)]) == 0
    assert out.read_text(encoding="utf-8") == wxs.fragment(folder)
