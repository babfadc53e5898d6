"""What the command-line tests share: a journal at fixed times, and ``run``, which captures a command's output."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

from agent.cli import main
from agent.journal import Journal
from agent.journal import times as journal_times


@pytest.fixture
def journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal with one answered version command and one rejected request, at fixed times."""
    clock = (f"2026-11-23T10:00:0{n}.000000Z" for n in itertools.count())
    monkeypatch.setattr(journal_times, "utcnow", lambda: next(clock))
    journal = Journal.open(tmp_path / "state")
    version = journal.receive("req-a", "/local/domain/5", "version", "version", "a" * 64, '"agent"',
                              detail={"digest": "aaaa"})
    version = journal.transition(version, "answer", "done", reply={"returncode": "0", "message": "0.1.0"})
    journal.mark_replied(version)
    rejected = journal.receive("req-b", "/local/domain/5", None, "rejected", "b" * 64, None,
                               detail={"rejected": "500"})
    journal.transition(rejected, "fail", "failed", detail={"error": "RequestRejected"},
                       reply={"returncode": "500", "message": "Request is malformed"})
    journal.close()
    return tmp_path / "state"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()
