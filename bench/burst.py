"""Bursts of `version` requests: a backlog waiting at start, and a live flood.

    backlog  REQUESTS requests are written to data/host while the agent is stopped (its state directory
             already holds a journal), then the agent is started: time from its launch to the first reply,
             and to the moment every reply is present (goal <= 1.0 s for 1,000)
    flood    with the agent running and ready, FLOOD requests are written as fast as WRITERS clients can (one
             pyxs connection each, in threads): drain rate = requests answered per second from the first
             write to the last reply (goal >= 2,000 req/s). Two floors are printed for the same flood: the
             bare echo responder (one request at a time), and the batched echo (``bench/echo_batched.py``:
             the agent's own grouped, pipelined XenStore calls without the journal), the floor for a
             responder that batches as the agent does.

Replies are seen through one watch on data/guest (``common.ReplyWatcher``), never by polling each request,
which would slow the agent. The replies are left in place (a flood's host does not clean up).

Usage: python bench/burst.py [REQUESTS] [FLOOD] [WRITERS]    (defaults 1000 5000 1)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Figure,
    ReplyWatcher,
    bench_xenstored,
    conditions,
    new_domain,
    new_ids,
    prefill,
    print_report,
    start_agent,
    start_echo,
    stop,
    write_requests,
)

GOAL_BACKLOG = 1.0
GOAL_RATE = 2000.0
READY_TIMEOUT = 30.0


def backlog(requests: int) -> tuple[float, float, bool]:
    """(launch to first reply, launch to all replies, all came)."""
    with bench_xenstored() as (daemon, directory):
        domain = new_domain(daemon, 1)
        state = directory / "state"
        prefill(state, 10)  # a journal already there, as on any start but the first
        watcher = ReplyWatcher(daemon, domain)
        ids = new_ids(requests)
        watcher.expect(ids)
        write_requests(daemon, domain, ids)
        started = time.perf_counter()
        agent = start_agent(daemon, domain, state, directory / "agent.log")
        try:
            complete = watcher.wait(ids, timeout=max(60.0, requests / 50))
        finally:
            stop(agent)
            watcher.close()
    times = sorted(watcher.seen.values())
    return times[0] - started, times[-1] - started, complete


def flood(responder: str, requests: int, writers: int) -> tuple[float, float, bool]:
    """(requests answered per second from first write to last reply, the writers' own rate, all came)."""
    with bench_xenstored() as (daemon, directory):
        domain = new_domain(daemon, 2)
        if responder == "agent":
            process = start_agent(daemon, domain, directory / "state", directory / "agent.log")
        else:
            process = start_echo(daemon, domain, batched=responder == "batched")
        watcher = ReplyWatcher(daemon, domain)
        try:
            # Ready: it has answered a request. The echo does not scan data/host at start, so a request
            # written before its watch is set is never answered: write one every 0.2 s until one is.
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                ready = new_ids(1)
                watcher.expect(ready)
                write_requests(daemon, domain, ready)
                if watcher.wait(ready, 0.2):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {responder} did not answer within {READY_TIMEOUT:g} s")
            ids = new_ids(requests)
            watcher.expect(ids)
            first, last_write = write_requests(daemon, domain, ids, writers=writers)
            complete = watcher.wait(ids, timeout=max(60.0, requests / 50))
        finally:
            stop(process)
            watcher.close()
    last_reply = max(watcher.seen[i] for i in ids if i in watcher.seen)
    answered = sum(1 for i in ids if i in watcher.seen)
    return answered / (last_reply - first), requests / (last_write - first), complete


def run(requests: int = 1000, flood_size: int = 5000, writers: int = 1) -> tuple[list[Figure], str]:
    first, everything, complete = backlog(requests)
    agent_rate, written, agent_complete = flood("agent", flood_size, writers)
    echo_rate, echo_written, echo_complete = flood("echo", flood_size, writers)
    batched_rate, batched_written, batched_complete = flood("batched", flood_size, writers)
    missing = "" if complete else "NOT all replies came"
    figures = [
        Figure(f"backlog of {requests}: agent launch to first reply", f"{first:.3f} s"),
        Figure(f"backlog of {requests}: agent launch to all replies", f"{everything:.3f} s", f"<= {GOAL_BACKLOG} s",
               complete and everything <= GOAL_BACKLOG, missing),
        Figure(f"flood of {flood_size}: agent drain rate", f"{agent_rate:,.0f} req/s", f">= {GOAL_RATE:,.0f} req/s",
               agent_complete and agent_rate >= GOAL_RATE,
               f"writers wrote {written:,.0f} req/s" + ("" if agent_complete else "; NOT all replies came")),
        Figure(f"flood of {flood_size}: echo floor drain rate", f"{echo_rate:,.0f} req/s",
               note=f"writers wrote {echo_written:,.0f} req/s" + ("" if echo_complete else "; NOT all replies came")),
        Figure(f"flood of {flood_size}: batched echo floor drain rate", f"{batched_rate:,.0f} req/s",
               note=f"writers wrote {batched_written:,.0f} req/s"
               + ("" if batched_complete else "; NOT all replies came")),
    ]
    return figures, conditions(backlog=requests, backlog_journal="10 commands", flood=flood_size,
                               writer_clients=writers, flood_journal="fresh", replies="left in place",
                               detection="one watch on data/guest")


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    flood_size = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    writers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    figures, run_conditions = run(requests, flood_size, writers)
    print_report("bursts of version requests", figures, run_conditions)


if __name__ == "__main__":
    main()
