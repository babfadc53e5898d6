"""The CLI's one output renderer: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


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
