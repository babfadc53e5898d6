"""The journal's clock and timestamp format, in one place.

Every time the journal records, and every deadline derived from one, comes from ``wall_clock`` here (tests
move it by patching this module). Journal times are UTC ISO-8601 text with microseconds and a trailing Z,
so text order is time order and the text the hash chain covers never depends on a driver's formatting.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """The journal's timestamp format: UTC, microseconds, a trailing Z (text order is time order)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """The inverse of ``iso``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def wall_clock() -> datetime:
    """The wall clock: every journal time and every deadline derived from one comes from here."""
    return datetime.now(UTC)


def utcnow() -> str:
    return iso(wall_clock())
