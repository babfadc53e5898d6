"""The CLI's one output renderer: aligned text tables and fields for people, JSON for scripts.

Every table, field list and ``--json`` document goes through these, so that a value from a request (which
can hold anything) reaches the terminal with its control characters escaped wherever it is shown, and every
``--json`` is the same indented, key-sorted JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def json_flag(parser: argparse.ArgumentParser, help_text: str = "print JSON for scripts") -> None:
    """Give ``parser`` the shared ``--json`` flag (``args.json``), which switches its output to ``as_json``."""
    parser.add_argument("--json", action="store_true", help=help_text)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """Print ``rows`` as a table with a header; None prints as '-'."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def fields(pairs: Sequence[tuple[str, Any]], out: TextIO) -> None:
    """Print ``label  value`` lines with the labels aligned."""
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        out.write(f"{label.ljust(width)}  {_cell(value)}\n")


def as_json(document: Any, out: TextIO, lines: bool = False) -> None:
    """Print ``document`` as indented JSON, or each item as one line with ``lines``."""
    if lines:
        for item in document:
            out.write(json.dumps(item, sort_keys=True) + "\n")
    else:
        out.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        # Requests can name anything; never let a control character reach the terminal.
        return value.encode("unicode_escape").decode("ascii") if not value.isprintable() else value
    return str(value)
