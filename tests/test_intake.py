"""The intake note: the request being taken in is counted across processes until it is journaled."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.intake import Intake


def test_the_same_request_counts_up_across_processes(tmp_path: Path) -> None:
    """A request taken in again by the next process (the last one died on it) is counted, not restarted."""
    first = Intake(tmp_path)
    assert first.inherited is None
    assert first.begin("req", "d1") == 1
    first.close()  # the process died here, before the request was journaled
    second = Intake(tmp_path)
    assert second.inherited == ("req", "d1", 1)
    assert second.begin("req", "d1") == 2
    second.close()
    assert Intake(tmp_path).begin("req", "d1") == 3


def test_retries_within_one_process_are_not_deaths(tmp_path: Path) -> None:
    """Taking the same request in again in the same process (its journal write failed) keeps its count."""
    intake = Intake(tmp_path)
    assert [intake.begin("req", "d1") for _ in range(5)] == [1, 1, 1, 1, 1]
    intake.close()
    assert Intake(tmp_path).begin("req", "d1") == 2


def test_another_request_or_new_content_starts_again(tmp_path: Path) -> None:
    """Only the very request (same id and digest) is counted: a different one is a first attempt."""
    Intake(tmp_path).begin("req", "d1")
    intake = Intake(tmp_path)
    assert intake.begin("req", "d2") == 1
    assert intake.begin("other", "d1") == 1
    intake.close()


def test_an_unreadable_note_is_a_fresh_start(tmp_path: Path) -> None:
    """A damaged note (a power cut mid-write) counts as no note at all, never as an error."""
    (tmp_path / "intake").write_bytes(b'{"request": "req", "dig')
    intake = Intake(tmp_path)
    assert intake.inherited is None
    assert intake.begin("req", "d1") == 1
    assert stat.S_IMODE((tmp_path / "intake").stat().st_mode) == 0o600
    intake.close()
