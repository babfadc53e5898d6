"""Tests of the Windows build and installer sources under packaging/windows."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = ROOT / "packaging" / "windows"


def load_wxs() -> ModuleType:
    """packaging/windows/wxs.py, which is a script beside the sources it serves rather than part of a package."""
    spec = importlib.util.spec_from_file_location("packaging_windows_wxs", WINDOWS / "wxs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
