"""packaging/windows/openstack-agent.spec, run as PyInstaller runs it, with stand-ins for PyInstaller's build steps.

A spec is Python executed with ``Analysis``, ``PYZ``, ``EXE`` and ``COLLECT`` (and ``SPECPATH``, the spec's
folder) defined; the stand-ins record what the spec asks of them, which is checked against the repository: a
one-folder build, the agent's entry point, the data it reads at run time, and the hidden imports it needs.
"""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.packaging import ROOT, WINDOWS

SPEC = WINDOWS / "openstack-agent.spec"
#: pywin32 module names the agent's strings hold for another reason: sys.platform's value on Windows, and the
#: attribute of pywintypes.error read by name.
NOT_IMPORTS = {"win32", "winerror"}


class Step:
    """A PyInstaller build step: keeps its arguments; an Analysis also has the lists later steps are given."""

    def __init__(self, kind: str, calls: list[Step], *args: Any, **kwargs: Any) -> None:
        self.kind, self.args, self.kwargs = kind, args, kwargs
        self.pure, self.scripts, self.binaries, self.datas = ([f"{kind}.{name}"] for name in
                                                              ("pure", "scripts", "binaries", "datas"))
        calls.append(self)


@pytest.fixture(scope="module")
def steps() -> dict[str, Step]:
    """The spec's build steps by kind, each called once."""
    calls: list[Step] = []
    names: dict[str, Any] = {"SPECPATH": str(WINDOWS), "__file__": str(SPEC)}
    for kind in ("Analysis", "PYZ", "EXE", "COLLECT"):
        names[kind] = lambda *args, kind=kind, **kwargs: Step(kind, calls, *args, **kwargs)
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), names)
    assert sorted(step.kind for step in calls) == ["Analysis", "COLLECT", "EXE", "PYZ"]
    return {step.kind: step for step in calls}


def pywin32_modules() -> set[str]:
    """The modules pywin32 provides, as its stubs (types-pywin32, in the test extra) name them."""
    try:
        files = importlib.metadata.files("types-pywin32") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("types-pywin32 is not installed: scripts/bootstrap installs the test extra")
    modules = set()
    for file in files:
        parts = file.parts
        if parts[0].endswith("-stubs") and file.suffix == ".pyi":
            names = [parts[0].removesuffix("-stubs"), *parts[1:-1], file.stem]
            modules.add(".".join(names[:-1] if names[-1] == "__init__" else names))
    return modules


def strings(source: str) -> set[str]:
    """The string constants of the Python ``source``."""
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_it_is_a_one_folder_console_build(steps: dict[str, Step]) -> None:
    """EXE leaves the binaries out (exclude_binaries) and COLLECT gathers them with the data beside
    openstack-agent.exe, a console program."""
    analysis, exe, collect = steps["Analysis"], steps["EXE"], steps["COLLECT"]
    assert exe.kwargs["exclude_binaries"] is True
    assert exe.kwargs["name"] == "openstack-agent" and exe.kwargs["console"] is True
    assert steps["PYZ"] in exe.args and analysis.scripts in exe.args
    assert analysis.binaries not in exe.args and analysis.datas not in exe.args
    assert collect.args == (exe, analysis.binaries, analysis.datas)
    assert collect.kwargs["name"] == "openstack-agent"
    assert steps["PYZ"].args == (analysis.pure,)


def test_entry_script_is_the_agent_command(steps: dict[str, Step]) -> None:
    """The one script analysed is agent/__main__.py, which runs agent.cli.main, and the repository is on the path."""
    scripts = steps["Analysis"].args[0]
    assert [Path(script) for script in scripts] == [ROOT / "agent" / "__main__.py"]
    tree = ast.parse((ROOT / "agent" / "__main__.py").read_text())
    imports = [(node.module, [alias.name for alias in node.names]) for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom)]
    assert imports == [("agent.cli", ["main"])]
    assert [Path(path) for path in steps["Analysis"].kwargs["pathex"]] == [ROOT]


def test_migrations_ship_as_files_where_the_installed_package_has_them(steps: dict[str, Step]) -> None:
    """Every migration source and the package data pyproject.toml ships with them are collected, into the
    folders of the package pyproject.toml maps migrations/ to (agent.migrations)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = {ROOT / folder: package.replace(".", "/") for package, folder in project["package-dir"].items()}
    collected: dict[Path, str] = {}
    for pattern, destination in steps["Analysis"].kwargs["datas"]:
        matches = [Path(match) for match in glob.glob(pattern)]
        assert matches, f"{pattern} matches no file in the repository"
        collected.update((match, destination) for match in matches)
    expected = {path: package_dirs[path.parent] for path in (ROOT / "migrations").rglob("*.py")}
    for name in project["package-data"]["agent.migrations"]:
        expected[ROOT / "migrations" / name] = "agent/migrations"
    assert collected == expected


def test_pywin32_hidden_imports_are_pywin32_modules(steps: dict[str, Step]) -> None:
    """win32timezone (which pywin32's services import from C) is a hidden import, as are the service's modules and
    the job object's (win32job, win32api), and every pywin32-looking hidden import is a module pywin32 has."""
    hidden = set(steps["Analysis"].kwargs["hiddenimports"])
    assert "win32timezone" in hidden
    known = pywin32_modules()
    looks_like_pywin32 = {name for name in hidden if name.split(".")[0] in {n.split(".")[0] for n in known}}
    assert looks_like_pywin32 <= known
    assert {"win32service", "servicemanager", "pywintypes", "win32job", "win32api"} <= looks_like_pywin32


def test_every_pywin32_module_the_agent_loads_by_name_is_a_hidden_import(steps: dict[str, Step]) -> None:
    """A pywin32 module an agent module names in a string (to import it lazily) is bundled: PyInstaller's
    analysis sees only import statements."""
    known = pywin32_modules()
    named = {name: path.relative_to(ROOT).as_posix() for path in sorted((ROOT / "agent").rglob("*.py"))
             for name in strings(path.read_text(encoding="utf-8")) & known - NOT_IMPORTS}
    assert named, "no agent module loads pywin32 by name: the check would prove nothing"
    missing = {name: where for name, where in named.items() if name not in steps["Analysis"].kwargs["hiddenimports"]}
    assert not missing, f"add to PYWIN32 in {SPEC.name}: {missing}"


def test_what_the_migrations_import_is_bundled(steps: dict[str, Step]) -> None:
    """The modules the migration scripts import (they are data, never analysed) are hidden imports, and the
    agent's among them exist."""
    hidden = set(steps["Analysis"].kwargs["hiddenimports"])
    for path in (ROOT / "migrations").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in names:
                assert name in hidden, f"{path.name} imports {name}, which the spec does not bundle"
                if name.startswith("agent."):
                    assert (ROOT / Path(*name.split("."))).with_suffix(".py").is_file()
    assert {"alembic", "sqlalchemy", "agent.journal.models"} <= hidden
