"""The floor for a responder that batches: the agent's own XenStore calls, no journal.

It takes every watch event already queued (at most ``GROUP``, as the agent does), reads those requests in one
pipelined call, writes their replies in one and deletes the requests in one. What it costs per request is what
xenstored and the XenStore client cost; the agent's batched path adds the journal to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.daemon import GROUP
from agent.xenstore import XenStore


def main(socket_path: str, domain: str) -> None:
    reply = json.dumps({"returncode": "0", "message": "echo"})
    with XenStore("unix:" + socket_path, domain) as xenstore:
        xenstore.watch("data/host", "echo")
        while True:
            event = xenstore.next_event()
            if event is None:
                continue
            paths = [event[0]]
            while len(paths) < GROUP and (event := xenstore.next_event(timeout=0.0)) is not None:
                paths.append(event[0])
            wanted = list(dict.fromkeys(path for path in paths if path.startswith("data/host/")))
            present = [path for path, body in zip(wanted, xenstore.read_many(wanted), strict=True) if body]
            if present:
                xenstore.write_many([("data/guest/" + path.rsplit("/", 1)[1], reply) for path in present])
                xenstore.delete_many(present)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
