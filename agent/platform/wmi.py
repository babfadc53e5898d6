"""What the Windows modules share of pywin32 and WMI: importing pywin32 on first use, a WMI object's property,
and a COM error in words.

pywin32 is imported when a Windows module first needs it, never when the module itself is imported: the
agent's modules import (and are tested) where pywin32 is not installed, and the Linux agent never loads it.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.errors import PlatformError


def import_pywin32(name: str) -> Any:
    """The pywin32 module ``name``; PlatformError saying how to install it when pywin32 is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise PlatformError("pywin32 is not installed; install the agent with its Windows dependencies "
                            "(pip install pywin32)") from None


def load(loaded: dict[str, Any], name: str) -> Any:
    """The module ``name``: the one injected in ``loaded`` (a stand-in, in tests), else imported on first use and
    kept there."""
    if name not in loaded:
        loaded[name] = import_pywin32(name)
    return loaded[name]


def prop(instance: Any, name: str) -> Any:
    """The value of a WMI object's property ``name``."""
    return instance.Properties_.Item(name).Value


def com_text(exc: BaseException) -> str:
    """A com_error in words: the WMI description when excepinfo has one."""
    info = getattr(exc, "excepinfo", None)
    if info and len(info) > 2 and info[2]:
        return str(info[2]).strip()
    return str(getattr(exc, "strerror", None) or exc)
