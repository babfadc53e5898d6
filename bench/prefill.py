"""Pre-fill an agent journal offline with answered, delivered `version` commands, through the agent's own API.

Each command is written as the agent journals a `version` request: ``Journal.receive`` (state received),
``Journal.transition`` "answer" to "done" with its reply, ``Journal.mark_replied`` (delivered), and its reply's
collection from data/guest (``retention.mark_replies_removed``), as housekeeping leaves every command but the
newest few minutes' in a journal that has run a while; so that the journal's chain, seals, counts and indexes
are the agent's own. ``--batch`` commands share one transaction
(``Journal.batch``, group commit) when the journal has it; otherwise each write commits on its own (slow).
Appends to an existing journal. No agent may run on the directory meanwhile.

Usage: python bench/prefill.py STATE_DIR COMMANDS [--batch 10000] [--domain /local/domain/9]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
import uuid
from pathlib import Path

from agent import __version__
from agent.journal import Journal, retention

BODY = json.dumps({"name": "version", "value": "agent"}).encode()


def fill(journal: Journal, commands: int, domain: str) -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    reply = {"returncode": "0", "message": __version__}
    delivered: list[int] = []
    for _ in range(commands):
        record = journal.receive(str(uuid.uuid4()), domain, "version", "version", digest, json.dumps("agent"),
                                 detail={"digest": digest[:16]})
        record = journal.transition(record, "answer", "done", detail={"asked": "agent"}, reply=reply)
        delivered.append(journal.mark_replied(record).id)
    retention.mark_replies_removed(journal, delivered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("commands", type=int)
    parser.add_argument("--batch", type=int, default=10_000, help="commands per transaction")
    parser.add_argument("--domain", default="/local/domain/9")
    args = parser.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(args.state_dir)
    batch = getattr(journal, "batch", None)
    if batch is None:
        print("prefill: this journal has no batch(); every write commits on its own", file=sys.stderr)
    started, done = time.perf_counter(), 0
    try:
        while done < args.commands:
            count = min(args.batch, args.commands - done)
            with batch() if batch is not None else contextlib.nullcontext():
                fill(journal, count, args.domain)
            done += count
            if args.commands >= 100_000 and done % 100_000 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"prefill: {done}/{args.commands} commands ({rate:.0f}/s)", file=sys.stderr, flush=True)
    finally:
        journal.close()


if __name__ == "__main__":
    main()
