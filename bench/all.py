"""Every bench at quick sizes (or full ones), then one table: figure | measured | goal | conditions.

Quick: roundtrip 300 calls; burst 1,000 backlog and 5,000 flood; resources 1,000 / 10,000 commands, a
journal of 10,000, 10 s idle; journal_scale 50,000 commands; update 1 run. Full: the benches' defaults
(journal_scale 1,000,000, cached in the temp dir; several minutes each). The machine's conditions are printed
once under the table; each row's conditions column is its bench's run line.

Usage: python bench/all.py [--full] [--skip NAME ...]    (NAME: roundtrip burst resources journal_scale update)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import burst
import journal_scale
import resources
import roundtrip
import update
from common import Figure, print_report

Bench = Callable[[], tuple[list[Figure], str]]

QUICK: dict[str, Bench] = {
    "roundtrip": lambda: roundtrip.run(300),
    "burst": lambda: burst.run(1000, 5000),
    "resources": lambda: resources.run(1000, 10_000, 10_000, idle=10.0),
    "journal_scale": lambda: journal_scale.run(50_000, calls=200),
    "update": lambda: update.run(1),
}
FULL: dict[str, Bench] = {
    "roundtrip": lambda: roundtrip.run(),
    "burst": lambda: burst.run(),
    "resources": lambda: resources.run(),
    "journal_scale": lambda: journal_scale.run(),
    "update": lambda: update.run(),
}


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the benches' full sizes")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(QUICK))
    args = parser.parse_args()
    rows: list[tuple[Figure, str]] = []
    machine = ""
    for name, bench in (FULL if args.full else QUICK).items():
        if name in args.skip:
            continue
        figures, run_conditions = bench()
        print_report(name, figures, run_conditions)
        lines = run_conditions.splitlines()
        machine = "\n".join(line for line in lines if not line.strip().startswith("run:"))
        run_line = next((line.strip().removeprefix("run: ") for line in lines if line.strip().startswith("run:")), "")
        rows += [(figure, f"{name}: {run_line}") for figure in figures]
    print("\n| figure | measured | goal | conditions |\n|---|---|---|---|")
    for figure, run_line in rows:
        verdict = "" if figure.met is None else (" (met)" if figure.met else " (**not met**)")
        note = f"; {figure.note}" if figure.note else ""
        print(f"| {cell(figure.name)} | {cell(figure.measured)} | {cell(figure.goal)}{verdict} | "
              f"{cell(run_line + note)} |")
    print(f"\nmachine and journal:\n{machine}")


if __name__ == "__main__":
    main()
