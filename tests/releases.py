"""Real release bundles for the tests: the checkout as it is, and copies of it with a fault built in.

Each is built exactly as release engineering builds one (``release.build`` with ``--version``); the faulty
ones carry a start-up fault (``agent.faults.startup_fault``), so that their ``run`` crashes at start, or
never gets ready.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent import __version__, release

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Bundles:
    base: Path  # this checkout, at its own version
    good: Path  # this checkout as 0.2.0
    crash: Path  # 0.3.0, exits at once
    hang: Path  # 0.4.0, never signals ready


def build_all(directory: Path) -> Bundles:
    out = directory / "bundles"
    assert __version__ not in ("0.2.0", "0.3.0", "0.4.0")
    return Bundles(
        base=release.build(out, ROOT),
        good=release.build(out, ROOT, "0.2.0"),
        crash=release.build(out, ROOT, "0.3.0", startup_fault="crash"),
        hang=release.build(out, ROOT, "0.4.0", startup_fault="hang"),
    )
