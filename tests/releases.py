"""Real release bundles for the tests: the checkout as it is, and copies of it with a fault built in.

Each is built exactly as release engineering builds one (``release.build`` with ``--version``); the faulty
ones come from a copy of the source whose ``run`` command crashes at start, or never gets ready.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from agent import __version__, release

ROOT = Path(__file__).resolve().parents[1]
RUN = "def cmd_run(args: argparse.Namespace, out: TextIO) -> int:\n"
FAULTS = {
    "crash": "    raise SystemExit(3)  # a release that crashes at start\n",
    "hang": "    time.sleep(3600)  # a release that never gets ready\n",
}


@dataclasses.dataclass(frozen=True)
class Bundles:
    base: Path  # this checkout, at its own version
    good: Path  # this checkout as 0.2.0
    crash: Path  # 0.3.0, exits at once
    hang: Path  # 0.4.0, never signals ready


def faulty_source(directory: Path, fault: str) -> Path:
    copy = directory / f"source-{fault}"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                              "__pycache__", ".*_cache", ".hypothesis"))
    cli = copy / "agent" / "cli.py"
    text = cli.read_text()
    assert RUN in text, "cmd_run moved: update tests/releases.py"
    cli.write_text(text.replace(RUN, RUN + FAULTS[fault]))
    return copy


def build_all(directory: Path) -> Bundles:
    out = directory / "bundles"
    assert __version__ not in ("0.2.0", "0.3.0", "0.4.0")
    return Bundles(
        base=release.build(out, ROOT),
        good=release.build(out, ROOT, "0.2.0"),
        crash=release.build(out, faulty_source(directory, "crash"), "0.3.0"),
        hang=release.build(out, faulty_source(directory, "hang"), "0.4.0"),
    )
