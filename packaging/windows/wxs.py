"""Write the WiX fragment that lists a one-folder Windows build's files for the agent's MSI.

    python packaging/windows/wxs.py BUILD_FOLDER OUT.wxs

``openstack-agent.wxs`` declares the service's executable itself, with the service that runs it; every other
file of the folder (PyInstaller's ``_internal`` tree) gets a component of its own here, in a directory tree
under ``INSTALLDIR``, and joins the component group ``Payload``. Sources are written as
``$(var.SourceDir)/<path>``, so the fragment does not depend on where the build lies: the MSI is built with
``-D SourceDir=BUILD_FOLDER``.

Identifiers and component GUIDs are derived from each file's path in the folder, so the output is the same
for the same folder, and a file keeps its component GUID from one version to the next (Windows Installer's
component rules). Identifiers are a prefix and a digest: Windows Installer allows 72 characters of letters,
digits, underscores and periods, which a path need not fit. Empty directories are not listed (the build
has none the agent needs).
"""

from __future__ import annotations

import hashlib
import sys
import uuid
import xml.etree.ElementTree as ET  # builds the document only: nothing untrusted is parsed
from pathlib import Path

WIX_NAMESPACE = "http://schemas.microsoft.com/wix/2006/wi"
#: The directory the fragment's tree hangs from, and the group the main source's feature references.
DIRECTORY_REF = "INSTALLDIR"
COMPONENT_GROUP = "Payload"
#: Declared by openstack-agent.wxs with the service, so left out here.
SERVICE_EXECUTABLE = "openstack-agent.exe"
#: Fixed for good: changing it would change every component GUID, which the component rules forbid.
GUID_NAMESPACE = uuid.UUID("5b0c3d64-2f7e-4c57-9a0e-6f1d2a8b9c41")


def identifier(prefix: str, relative: str) -> str:
    """An MSI identifier for the file or directory at ``relative`` (a path with ``/``), the same every time."""
    return f"{prefix}_{hashlib.sha256(relative.encode()).hexdigest()[:32]}"


def component_guid(relative: str) -> str:
    """The component GUID of the file at ``relative``: the same in every build and version of the MSI."""
    return str(uuid.uuid5(GUID_NAMESPACE, relative)).upper()


def payload_files(folder: Path, exclude: str = SERVICE_EXECUTABLE) -> list[str]:
    """The files under ``folder`` as sorted ``/`` paths relative to it, without ``exclude`` at its top."""
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return [name for name in files if name != exclude]


def fragment(folder: Path, exclude: str = SERVICE_EXECUTABLE) -> str:
    """The WiX source of the fragment for the build in ``folder`` (see the module's docstring)."""
    ET.register_namespace("", WIX_NAMESPACE)
    root = ET.Element(_tag("Wix"))
    tree = ET.SubElement(ET.SubElement(root, _tag("Fragment")), _tag("DirectoryRef"), Id=DIRECTORY_REF)
    group = ET.SubElement(ET.SubElement(root, _tag("Fragment")), _tag("ComponentGroup"), Id=COMPONENT_GROUP)
    directories: dict[str, ET.Element] = {"": tree}
    for relative in payload_files(folder, exclude):
        *parents, name = relative.split("/")
        parent = _directory(directories, "/".join(parents))
        component_id = identifier("c", relative)
        component = ET.SubElement(parent, _tag("Component"), Id=component_id, Guid=component_guid(relative),
                                  Win64="yes")
        ET.SubElement(component, _tag("File"), Id=identifier("f", relative), Name=name, KeyPath="yes",
                      Source=f"$(var.SourceDir)/{relative}")
        ET.SubElement(group, _tag("ComponentRef"), Id=component_id)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _directory(directories: dict[str, ET.Element], relative: str) -> ET.Element:
    """The element of the directory at ``relative``, with its parents, made on first use."""
    if relative not in directories:
        parent, _, name = relative.rpartition("/")
        directories[relative] = ET.SubElement(_directory(directories, parent), _tag("Directory"),
                                              Id=identifier("d", relative), Name=name)
    return directories[relative]


def _tag(name: str) -> str:
    return f"{{{WIX_NAMESPACE}}}{name}"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[0]).is_dir():
        print("usage: wxs.py BUILD_FOLDER OUT.wxs (BUILD_FOLDER: the one-folder build, with "
              f"{SERVICE_EXECUTABLE} at its top)", file=sys.stderr)
        return 2
    folder, out = Path(argv[0]), Path(argv[1])
    if not (folder / SERVICE_EXECUTABLE).is_file():
        print(f"error: {folder} has no {SERVICE_EXECUTABLE}: is it the one-folder build?", file=sys.stderr)
        return 1
    out.write_text(fragment(folder), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
